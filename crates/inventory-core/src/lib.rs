//! Orderly's stock, in SQLite: how many units of each product (SKU) are available, reserved
//! for orders, shipped, and received in all (initial stock plus restocks), and the
//! reservations orders hold.
//!
//! The fulfilment saga reserves an order's lines, then commits them when the order ships, or
//! releases them when it is cancelled. Each of these is keyed by the order id and idempotent: a
//! retried or redelivered call returns what the first one did and takes nothing twice. A
//! release may arrive before the reserve it compensates (messages overtake each other): it then
//! records a tombstone, and the late reserve is refused, so the compensation wins.
//!
//! For every SKU, `available + reserved + shipped = received` and no count is ever negative:
//! every operation that moves units is one SQL statement (an insert into a view whose
//! `INSTEAD OF` trigger does the work), so it happens entirely or not at all even though Spin's
//! SQLite keeps no transaction open between calls, and `CHECK` constraints refuse any row that
//! would break the rule. Stock is seeded from the [`Catalog`] on demand: an operation that
//! meets a product it does not know yet adds the catalogue's products (those already there are
//! left as they are) and tries once more. The schema is created on demand too.

mod reservations;
mod schema;
mod stock;

#[cfg(test)]
mod tests;

pub use reservations::{Reservation, ReservationState, ReserveOutcome, ReservedLine, Shortage};
pub use stock::{StockLevel, Units, ZeroUnits};

use catalog::Catalog;
use orderly_sql::{SchemaError, Sql, SqlRows, SqlValue};
use orders_core::{LineItem, OrderId};

/// Why an inventory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A statement failed (the database is busy, unavailable, full, ...): worth retrying.
    #[error("the inventory could not {operation}")]
    Sql {
        /// What the inventory was doing.
        operation: &'static str,
        /// The failed statement's error.
        #[source]
        source: SchemaError,
    },
    /// A stored row does not hold what the inventory writes.
    #[error("{what} is unreadable: {detail}")]
    Corrupt {
        /// The row at fault.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No product by this name is stocked, nor in the catalogue.
    #[error("{0:?} is not a product the inventory stocks")]
    UnknownSku(String),
    /// A reservation must have 1 to [`LineItem::MAX_PER_ORDER`] lines.
    #[error("an order reserves 1 to {max} lines, this one has {lines}", max = LineItem::MAX_PER_ORDER)]
    InvalidLines {
        /// How many lines were given.
        lines: usize,
    },
    /// The order already holds a reservation of different lines.
    #[error("order {0} already reserved different lines")]
    LinesConflict(OrderId),
    /// The order's reservation was released (or a release came first): it cannot be reserved
    /// or committed any more.
    #[error("order {0}'s reservation was released")]
    Released(OrderId),
    /// The order's reservation was committed (its stock shipped): it cannot be released.
    #[error("order {0}'s reservation was committed")]
    Committed(OrderId),
    /// The order holds no reservation.
    #[error("order {0} has no reservation")]
    UnknownOrder(OrderId),
}

impl InventoryError {
    fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// The inventory over one SQLite connection, seeded from a catalogue.
pub struct Inventory<S: Sql> {
    sql: S,
    catalog: Catalog,
}

impl<S: Sql> Inventory<S> {
    /// An inventory using `sql`, whose products come from `catalog`; nothing is run until the
    /// first operation.
    pub fn new(sql: S, catalog: Catalog) -> Self {
        Self { sql, catalog }
    }

    /// Runs one statement (migrating first if the schema is missing), any failure being
    /// `operation`'s.
    fn run(
        &self,
        operation: &'static str,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<SqlRows, InventoryError> {
        schema::SCHEMA
            .run(&self.sql, statement, parameters)
            .map_err(|source| InventoryError::Sql { operation, source })
    }
}
