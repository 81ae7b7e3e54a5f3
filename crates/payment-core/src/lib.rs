//! Orderly's payments, in SQLite: one payment per order, authorized, then captured, voided or
//! refunded, all keyed by the order id.
//!
//! Every operation is one SQL statement and idempotent: a retried or redelivered call returns
//! what the first one did and never charges twice. An order is charged at most once, in full
//! (`captured_cents` is 0 or the amount), and never refunded more than it was charged: the
//! table's `CHECK` constraints say so too. Illegal transitions (capturing a voided payment,
//! refunding one never captured) are typed errors.
//!
//! The saga's compensation is [`Payments::compensate`]: whatever happened, afterwards the
//! order is not charged. It voids an authorization, refunds a capture, and when nothing was
//! authorized yet records a tombstone, so an authorization arriving late is refused: the
//! compensation wins.
//!
//! Declines are deterministic (see [`PaymentPolicy`]): Stripe's declining test card numbers,
//! and amounts over a limit. A malformed card number is the client's error ([`CardError`]),
//! not a decline. Only a card's last four digits are stored.

mod card;
mod payments;
mod schema;

#[cfg(test)]
mod tests;

pub use card::{Amount, AmountError, CardError, CardNumber, DeclineReason, PaymentPolicy};
pub use payments::{Authorization, Operation, Payment, PaymentId, PaymentState};

use orderly_sql::{SchemaError, Sql, SqlRows, SqlValue};
use orders_core::OrderId;

/// Why a payment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A statement failed (the database is busy, unavailable, full, ...): worth retrying.
    #[error("payments could not {operation}")]
    Sql {
        /// What the payment service was doing.
        operation: &'static str,
        /// The failed statement's error.
        #[source]
        source: SchemaError,
    },
    /// A stored row does not hold what the payment service writes.
    #[error("{what} is unreadable: {detail}")]
    Corrupt {
        /// The row at fault.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The order has no payment.
    #[error("order {0} has no payment")]
    UnknownOrder(OrderId),
    /// The order's payment was authorized for another amount or card.
    #[error("order {0} was already authorized for another amount or card")]
    Conflict(OrderId),
    /// The order's payment is voided, refunded or compensated: it cannot be authorized again.
    #[error("order {order_id}'s payment is {state}: it cannot be authorized again")]
    Closed {
        /// The order.
        order_id: OrderId,
        /// Where its payment is.
        state: PaymentState,
    },
    /// The operation is not allowed in the payment's state (capturing a voided payment,
    /// refunding one never captured, ...).
    #[error("cannot {operation} order {order_id}'s payment: it is {state}")]
    IllegalTransition {
        /// The order.
        order_id: OrderId,
        /// What was asked.
        operation: Operation,
        /// Where the payment is.
        state: PaymentState,
    },
}

/// Payments over one SQLite connection.
pub struct Payments<S: Sql> {
    sql: S,
    policy: PaymentPolicy,
}

impl<S: Sql> Payments<S> {
    /// Payments using `sql`, deciding authorizations by `policy`; nothing is run until the
    /// first operation.
    pub fn new(sql: S, policy: PaymentPolicy) -> Self {
        Self { sql, policy }
    }

    /// Runs one statement (migrating first if the schema is missing), any failure being
    /// `operation`'s.
    fn run(
        &self,
        operation: &'static str,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<SqlRows, PaymentError> {
        schema::SCHEMA
            .run(&self.sql, statement, parameters)
            .map_err(|source| PaymentError::Sql { operation, source })
    }
}
