//! The outbox of final orders: every order that became `confirmed` or `cancelled`, in the order
//! it did, entered by the statement that finalised it (see the schema's version 3). Readers
//! keep their own cursor (a `seq`) and read what came after it.

use crate::reads::{StoredOrder, order_columns};
use crate::sql::TimestampColumns;
use crate::{Ledger, LedgerError, Sql, SqlValue};
use orderly_sql::{RowReader, saturating_i64};
use orders_core::{Order, Timestamp};

/// An order that reached its final status, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalOrder {
    /// Its place in the outbox (increasing, never reused): the cursor of whoever read it.
    pub seq: u64,
    /// When it became final.
    pub at: Timestamp,
    /// The order as it is now (final: its status does not change any more).
    pub order: Order,
}

/// Final orders after `?1` (a `seq`), oldest first, at most `?2`.
const FINAL_ORDERS_AFTER: &str = concat!(
    "SELECT f.seq, f.at, ",
    order_columns!(),
    " FROM final_orders AS f JOIN orders AS o ON o.id = f.order_id
    WHERE f.seq > ?1 ORDER BY f.seq LIMIT ?2"
);

impl<S: Sql> Ledger<S> {
    /// Up to `limit` orders (at least 1) that became final after outbox position `after` (0
    /// for all), in the order they did, in one statement.
    pub fn final_orders(&self, after: u64, limit: u32) -> Result<Vec<FinalOrder>, LedgerError> {
        let found = self.run(
            "read final orders",
            FINAL_ORDERS_AFTER,
            &[
                SqlValue::Integer(saturating_i64(after)),
                SqlValue::Integer(i64::from(limit.max(1))),
            ],
        )?;
        found.rows.iter().map(|row| read_final_order(row)).collect()
    }
}

fn read_final_order(row: &[SqlValue]) -> Result<FinalOrder, LedgerError> {
    let mut reader = RowReader::new(row);
    let corrupt = |detail| LedgerError::corrupt("a final_orders row", detail);
    let seq = reader.count("seq").map_err(corrupt)?;
    let at = reader.timestamp("at").map_err(corrupt)?;
    let order = StoredOrder::read(&mut reader)?.check()?;
    Ok(FinalOrder { seq, at, order })
}
