//! Accepting orders (`POST /orders`) and the idempotency keys that make retried requests
//! safe.

use crate::sql::RowReader;
use crate::{Ledger, LedgerError, Sql, SqlRows, SqlValue};
use orders_core::{LineItem, Order, Timestamp};

/// A new order to store, with the idempotency key it came under.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    /// The order, as accepted (its status is stored as `processing` whatever it says).
    pub order: &'a Order,
    /// The request's idempotency key.
    pub key: &'a str,
    /// What identifies the request's content (`NewOrder::fingerprint`).
    pub fingerprint: &'a str,
    /// The JSON body answered to the request, answered again to its retries.
    pub response: &'a str,
    /// Until when the key counts as held by the request that is storing it.
    pub locked_until: Timestamp,
    /// When validation gives up and the order fails.
    pub deadline_at: Timestamp,
}

/// What became of an intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// The key, the order, its validation job and its `accepted` event were stored.
    Created,
    /// The key was already used; nothing was stored. What it holds is returned.
    KeyTaken(StoredKey),
    /// Another order has this id; nothing was stored.
    OrderIdTaken,
}

/// An idempotency key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key.
    pub key: String,
    /// The fingerprint of the request that first used it.
    pub fingerprint: String,
    /// The order it created.
    pub order_id: String,
    /// The JSON body first answered.
    pub response: String,
    /// Whether the first request finished answering.
    pub completed: bool,
    /// Until when the first request holds it.
    pub locked_until: Timestamp,
    /// When it was first used.
    pub created_at: Timestamp,
}

const INSERT_INTAKE: &str = "INSERT INTO order_intake
    (key, fingerprint, response, locked_until, order_id, customer, items, created_at, deadline_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// How many times an intake is tried when its key vanishes between the failed insert and the
/// read of the key (it expired and was forgotten in between).
const INTAKE_TRIES: usize = 3;

impl<S: Sql> Ledger<S> {
    /// Stores a new order in one statement: its idempotency key (not yet completed), the order
    /// (`processing`), its `validate` job (due at once) and an `accepted` event, or nothing.
    pub fn accept(&self, intake: &Intake<'_>) -> Result<IntakeOutcome, LedgerError> {
        const OPERATION: &str = "accept an order";
        let order = intake.order;
        let parameters = [
            SqlValue::text(intake.key),
            SqlValue::text(intake.fingerprint),
            SqlValue::text(intake.response),
            SqlValue::millis(intake.locked_until),
            SqlValue::text(order.id.as_str()),
            SqlValue::optional_text(order.customer.as_ref().map(|customer| customer.as_str())),
            SqlValue::Text(LineItem::to_json(&order.items)),
            SqlValue::millis(order.created_at),
            SqlValue::millis(intake.deadline_at),
        ];
        let mut tries_left = INTAKE_TRIES;
        loop {
            match self.execute(INSERT_INTAKE, &parameters)? {
                Ok(_) => return Ok(IntakeOutcome::Created),
                Err(error) if error.is_unique_violation("idempotency_keys.key") => {
                    if let Some(stored) = self.stored_key(intake.key)? {
                        return Ok(IntakeOutcome::KeyTaken(stored));
                    }
                    tries_left -= 1;
                    if tries_left == 0 {
                        return Err(LedgerError::Sql {
                            operation: OPERATION,
                            source: error,
                        });
                    }
                }
                Err(error) if error.is_unique_violation("orders.id") => {
                    return Ok(IntakeOutcome::OrderIdTaken);
                }
                Err(source) => {
                    return Err(LedgerError::Sql {
                        operation: OPERATION,
                        source,
                    });
                }
            }
        }
    }

    /// The idempotency key `key`, if stored.
    pub fn stored_key(&self, key: &str) -> Result<Option<StoredKey>, LedgerError> {
        let found = self.run(
            "read an idempotency key",
            "SELECT key, fingerprint, order_id, response, completed, locked_until, created_at
            FROM idempotency_keys WHERE key = ?1",
            &[SqlValue::text(key)],
        )?;
        found
            .rows
            .first()
            .map(|row| {
                read_stored_key(row).map_err(|detail| {
                    LedgerError::corrupt(format!("idempotency key {key:?}"), detail)
                })
            })
            .transpose()
    }

    /// Marks the key's first request as answered.
    pub fn complete_key(&self, key: &str) -> Result<(), LedgerError> {
        self.run(
            "complete an idempotency key",
            "UPDATE idempotency_keys SET completed = 1 WHERE key = ?1",
            &[SqlValue::text(key)],
        )
        .map(drop)
    }

    /// Deletes the key if it was first used before `expired_before`; says whether it did.
    pub fn forget_key_if_expired(
        &self,
        key: &str,
        expired_before: Timestamp,
    ) -> Result<bool, LedgerError> {
        let deleted = self.run(
            "forget an expired idempotency key",
            "DELETE FROM idempotency_keys WHERE key = ?1 AND created_at < ?2 RETURNING 1",
            &[SqlValue::text(key), SqlValue::millis(expired_before)],
        )?;
        Ok(!deleted.rows.is_empty())
    }

    /// Deletes up to `limit` keys first used before `expired_before`, oldest first; returns
    /// how many.
    pub fn prune_keys(&self, expired_before: Timestamp, limit: u32) -> Result<u64, LedgerError> {
        let deleted = self.run(
            "prune idempotency keys",
            "DELETE FROM idempotency_keys WHERE key IN (
                SELECT key FROM idempotency_keys WHERE created_at < ?1
                ORDER BY created_at LIMIT ?2
            ) RETURNING 1",
            &[
                SqlValue::millis(expired_before),
                SqlValue::Integer(i64::from(limit)),
            ],
        )?;
        Ok(row_count(&deleted))
    }
}

fn read_stored_key(row: &[SqlValue]) -> Result<StoredKey, String> {
    let mut reader = RowReader::new(row);
    Ok(StoredKey {
        key: reader.text("key")?,
        fingerprint: reader.text("fingerprint")?,
        order_id: reader.text("order_id")?,
        response: reader.text("response")?,
        completed: reader.flag("completed")?,
        locked_until: reader.timestamp("locked_until")?,
        created_at: reader.timestamp("created_at")?,
    })
}

/// How many rows a statement returned.
pub(crate) fn row_count(rows: &SqlRows) -> u64 {
    rows.rows.len() as u64
}
