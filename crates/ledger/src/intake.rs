//! Accepting orders (`POST /orders`) and the idempotency keys that make retried requests
//! safe.

use crate::reads::StoredOrder;
use crate::sql::{TimestampColumns, TimestampValue};
use crate::{Ledger, LedgerError, Sql, SqlRows, SqlValue};
use orderly_sql::RowReader;
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
    /// Until when the key counts as held by the request that is storing it.
    pub locked_until: Timestamp,
    /// When validation gives up and the order fails.
    pub deadline_at: Timestamp,
    /// Who holds the order's validation job from the start (`None`: nobody, it is due at once
    /// for any worker).
    pub hold: Option<JobHold<'a>>,
}

/// A job created already leased: the synchronous path holds its own order's jobs, so that no
/// worker claims them while the request runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobHold<'a> {
    /// The worker holding the job.
    pub worker: &'a str,
    /// Until when (after that any worker may claim it, as after any expired lease).
    pub until: Timestamp,
}

/// What became of an intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// The order, with its key, and its validation job were stored.
    Created,
    /// The key was already used; nothing was stored. What it holds is returned (boxed: it
    /// carries a whole order).
    KeyTaken(Box<StoredKey>),
    /// Another order has this id; nothing was stored.
    OrderIdTaken,
}

/// An idempotency key as stored, with the order it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key.
    pub key: String,
    /// The fingerprint of the request that first used it.
    pub fingerprint: String,
    /// The order it created, as it was accepted (`processing`, no reason or detail, updated
    /// when created): what the first answer was built from.
    pub order: Order,
    /// Whether the first request finished answering.
    pub completed: bool,
    /// Until when the first request holds it.
    pub locked_until: Timestamp,
    /// When it was first used (when its order was created).
    pub created_at: Timestamp,
}

const INSERT_INTAKE: &str = "INSERT INTO order_intake
    (key, fingerprint, locked_until, order_id, customer, items, created_at, deadline_at,
        lease_owner, lease_until)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Reads a key `?1`: its columns, then its order as accepted, in `order_columns!` order.
const SELECT_KEY: &str = "SELECT o.key_fingerprint, o.key_completed, o.key_locked_until,
        o.id, o.customer, o.items, 'processing', NULL, NULL, o.created_at, o.created_at
    FROM orders AS o WHERE o.idempotency_key = ?1";

/// Prunes keys: `?1` expired before, `?2` how many orders to look at. It looks at the orders
/// after the mark, in acceptance order, and passes those created before `?1` up to the first
/// that was not; the view's trigger clears their keys and moves the mark past them.
const PRUNE_KEYS: &str = "WITH
        mark (seq) AS (SELECT value FROM ledger_marks WHERE name = 'keys_pruned_through'),
        next (seq, created_at, key) AS (
            SELECT seq, created_at, idempotency_key FROM orders
            WHERE seq > (SELECT seq FROM mark) ORDER BY seq LIMIT ?2
        ),
        expired AS (
            SELECT * FROM next WHERE seq < coalesce(
                (SELECT min(seq) FROM next WHERE created_at >= ?1), 9223372036854775807)
        )
    INSERT INTO key_pruning (after_seq, through_seq, cleared)
    SELECT after_seq, through_seq, cleared FROM (
        SELECT (SELECT seq FROM mark) AS after_seq, max(seq) AS through_seq,
            count(key) AS cleared
        FROM expired
    ) WHERE through_seq IS NOT NULL
    RETURNING cleared";

/// How many times an intake is tried when its key vanishes between the failed insert and the
/// read of the key (it expired and was forgotten in between).
const INTAKE_TRIES: usize = 3;

impl<S: Sql> Ledger<S> {
    /// Stores a new order in one statement: the order (`processing`) with its idempotency key
    /// (not yet completed) and its `validate` job (due at once; leased first if the intake
    /// says who holds it), or nothing.
    pub fn accept(&self, intake: &Intake<'_>) -> Result<IntakeOutcome, LedgerError> {
        const OPERATION: &str = "accept an order";
        let order = intake.order;
        let parameters = [
            SqlValue::text(intake.key),
            SqlValue::text(intake.fingerprint),
            SqlValue::millis(intake.locked_until),
            SqlValue::text(order.id.as_str()),
            SqlValue::optional_text(order.customer.as_ref().map(|customer| customer.as_str())),
            SqlValue::Text(LineItem::to_json(&order.items)),
            SqlValue::millis(order.created_at),
            SqlValue::millis(intake.deadline_at),
            SqlValue::optional_text(intake.hold.map(|hold| hold.worker)),
            intake
                .hold
                .map_or(SqlValue::Null, |hold| SqlValue::millis(hold.until)),
        ];
        let mut tries_left = INTAKE_TRIES;
        loop {
            let error = match self.execute(INSERT_INTAKE, &parameters)? {
                Ok(_) => return Ok(IntakeOutcome::Created),
                Err(error) => error,
            };
            let id_taken = error.is_unique_violation("orders.id");
            if !id_taken && !error.is_unique_violation("orders.idempotency_key") {
                return Err(LedgerError::Sql {
                    operation: OPERATION,
                    source: error,
                });
            }
            // The key is answered for first, whichever constraint SQLite reported: a retried
            // request often brings its order id again.
            if let Some(stored) = self.stored_key(intake.key)? {
                return Ok(IntakeOutcome::KeyTaken(Box::new(stored)));
            }
            if id_taken {
                return Ok(IntakeOutcome::OrderIdTaken);
            }
            tries_left -= 1;
            if tries_left == 0 {
                return Err(LedgerError::Sql {
                    operation: OPERATION,
                    source: error,
                });
            }
        }
    }

    /// The idempotency key `key`, if stored, with its order as accepted.
    pub fn stored_key(&self, key: &str) -> Result<Option<StoredKey>, LedgerError> {
        let found = self.run(
            "read an idempotency key",
            SELECT_KEY,
            &[SqlValue::text(key)],
        )?;
        let Some(row) = found.rows.first() else {
            return Ok(None);
        };
        let mut reader = RowReader::new(row);
        let corrupt = |detail| LedgerError::corrupt(format!("idempotency key {key:?}"), detail);
        let fingerprint = reader.text("key_fingerprint").map_err(corrupt)?;
        let completed = reader.flag("key_completed").map_err(corrupt)?;
        let locked_until = reader.timestamp("key_locked_until").map_err(corrupt)?;
        let order = StoredOrder::read(&mut reader)?.check()?;
        Ok(Some(StoredKey {
            key: key.to_owned(),
            fingerprint,
            created_at: order.created_at,
            order,
            completed,
            locked_until,
        }))
    }

    /// Marks the key's first request as answered.
    pub fn complete_key(&self, key: &str) -> Result<(), LedgerError> {
        self.run(
            "complete an idempotency key",
            "UPDATE orders SET key_completed = 1 WHERE idempotency_key = ?1",
            &[SqlValue::text(key)],
        )
        .map(drop)
    }

    /// Forgets the key (its order stays, without it) if it was first used before
    /// `expired_before`; says whether it did.
    pub fn forget_key_if_expired(
        &self,
        key: &str,
        expired_before: Timestamp,
    ) -> Result<bool, LedgerError> {
        let forgotten = self.run(
            "forget an expired idempotency key",
            "UPDATE orders
            SET idempotency_key = NULL, key_fingerprint = NULL, key_completed = NULL,
                key_locked_until = NULL
            WHERE idempotency_key = ?1 AND created_at < ?2 RETURNING 1",
            &[SqlValue::text(key), SqlValue::millis(expired_before)],
        )?;
        Ok(!forgotten.rows.is_empty())
    }

    /// Forgets the keys first used before `expired_before`, oldest first, looking at no more
    /// than `limit` orders (so the work is bounded however many orders there are), in one
    /// statement; returns how many keys it forgot.
    ///
    /// A mark remembers how far pruning got, in acceptance order; each call goes on from it
    /// and stops at the first order not yet expired. Orders are accepted in that order with
    /// non-decreasing creation times in practice, so it approximates creation order: an order
    /// created earlier than one accepted before it (clocks of instances disagreeing) keeps its
    /// key until that one expires too. A key may so outlive its TTL a little, but is never
    /// forgotten before it expires.
    pub fn prune_keys(&self, expired_before: Timestamp, limit: u32) -> Result<u64, LedgerError> {
        let pruned = self.run(
            "prune idempotency keys",
            PRUNE_KEYS,
            &[
                SqlValue::millis(expired_before),
                SqlValue::Integer(i64::from(limit)),
            ],
        )?;
        match pruned.rows.first().map(Vec::as_slice) {
            None => Ok(0),
            Some(row) => RowReader::new(row)
                .count("cleared")
                .map_err(|detail| LedgerError::corrupt("the key pruning", detail)),
        }
    }
}

/// How many rows a statement returned.
pub(crate) fn row_count(rows: &SqlRows) -> u64 {
    rows.rows.len() as u64
}
