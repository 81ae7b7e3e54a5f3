//! Orderly's shipments, in SQLite: one per order, with a tracking number and a label, moving
//! `label_created` → `in_transit` → `delivered`, or cancelled before it leaves.
//!
//! Tracking numbers and labels are derived from the order id and a [`TrackingSeed`] the
//! caller gives (and the creation time it passes), never from the wall clock or a random
//! source, so a retried creation computes the same shipment. Every operation is one SQL
//! statement and idempotent by order id: a repeat returns what the first call did.
//!
//! [`Shipping::cancel`] is the saga's compensation. It is allowed until the parcel is in
//! transit; for an order with no shipment it records a tombstone, so a creation arriving late
//! is refused: the compensation wins.

mod label;
mod schema;
mod shipments;

#[cfg(test)]
mod tests;

pub use label::{Address, ShipTo, TrackingNumber, TrackingSeed};
pub use shipments::{CancelOutcome, Shipment, ShipmentStatus, StatusUpdate};

use orderly_sql::{SchemaError, Sql, SqlRows, SqlValue};
use orders_core::{LineItem, OrderId};

/// Why a shipping operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    /// A statement failed (the database is busy, unavailable, full, ...): worth retrying.
    #[error("shipping could not {operation}")]
    Sql {
        /// What the shipping service was doing.
        operation: &'static str,
        /// The failed statement's error.
        #[source]
        source: SchemaError,
    },
    /// A stored row does not hold what the shipping service writes.
    #[error("{what} is unreadable: {detail}")]
    Corrupt {
        /// The row at fault.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A shipment carries 1 to [`LineItem::MAX_PER_ORDER`] lines.
    #[error("a shipment carries 1 to {max} lines, this one has {lines}", max = LineItem::MAX_PER_ORDER)]
    InvalidLines {
        /// How many lines were given.
        lines: usize,
    },
    /// The order has no shipment.
    #[error("order {0} has no shipment")]
    UnknownOrder(OrderId),
    /// The order's shipment was created with other lines or another destination.
    #[error("order {0} already has a shipment with other lines or another destination")]
    Conflict(OrderId),
    /// The order's shipment was cancelled (or a cancellation came first): none is created.
    #[error("order {0}'s shipment was cancelled")]
    Cancelled(OrderId),
    /// The shipment cannot move to that status from where it is.
    #[error("order {order_id}'s shipment is {from}: it cannot become {to}")]
    IllegalTransition {
        /// The order.
        order_id: OrderId,
        /// Where the shipment is.
        from: ShipmentStatus,
        /// Where it was asked to go.
        to: ShipmentStatus,
    },
    /// The shipment left already: it can no longer be cancelled.
    #[error("order {order_id}'s shipment is {status}: too late to cancel")]
    TooLateToCancel {
        /// The order.
        order_id: OrderId,
        /// Where the shipment is.
        status: ShipmentStatus,
    },
}

/// Shipments over one SQLite connection.
pub struct Shipping<S: Sql> {
    sql: S,
    seed: TrackingSeed,
}

impl<S: Sql> Shipping<S> {
    /// Shipments using `sql`, their tracking numbers derived with `seed`; nothing is run
    /// until the first operation.
    pub fn new(sql: S, seed: TrackingSeed) -> Self {
        Self { sql, seed }
    }

    /// Runs one statement (migrating first if the schema is missing), any failure being
    /// `operation`'s.
    fn run(
        &self,
        operation: &'static str,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<SqlRows, ShippingError> {
        schema::SCHEMA
            .run(&self.sql, statement, parameters)
            .map_err(|source| ShippingError::Sql { operation, source })
    }
}
