//! The dead-letter queue (jobs given up on, messages no handler could take) and the admin
//! operations over the whole ledger.

use crate::sql::{TimestampColumns, TimestampValue};
use crate::{Ledger, LedgerError, Sql, SqlValue};
use orderly_sql::RowReader;
use orders_core::Timestamp;

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterSource {
    /// A job the worker gave up on.
    Job,
    /// A message no handler could take.
    Message,
}

/// An entry of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id.
    pub id: i64,
    /// Where it came from.
    pub source: DeadLetterSource,
    /// The job's order (jobs only).
    pub order_id: Option<String>,
    /// The job (jobs only).
    pub job_id: Option<i64>,
    /// The channel the message came on (messages only).
    pub channel: Option<String>,
    /// The message (messages only).
    pub payload: Option<Vec<u8>>,
    /// Why it was given up on.
    pub reason: String,
    /// Calls made for the job (0 for messages).
    pub attempts: u32,
    /// When it was given up on.
    pub created_at: Timestamp,
    /// When it was replayed, if it was.
    pub replayed_at: Option<Timestamp>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The job is queued again, due at once (wake a worker for it).
    Job {
        /// Its order.
        order_id: String,
    },
    /// The message is marked replayed; the caller republishes it.
    Message {
        /// Where to publish it.
        channel: String,
        /// What to publish.
        payload: Vec<u8>,
    },
    /// Nothing was replayed: the job's order was decided meanwhile (its job is gone: a
    /// dead-lettered order fails at its deadline), or is being decided (a sweep holds the job
    /// to fail it at its deadline). The entry is left as it is, not marked replayed: it stays
    /// listed among the entries not replayed, as the record of what was given up on, and
    /// replaying it again gives this answer again. The order's timeline says how it ended.
    OrderSettled {
        /// The job's order.
        order_id: String,
    },
    /// There is no such dead letter.
    NotFound,
    /// It was replayed before (nothing was done).
    AlreadyReplayed {
        /// When.
        at: Timestamp,
    },
}

/// Marks dead letter `?1` replayed at `?2` if it can be replayed: a message, or a job that is
/// still dead, not held by a sweep failing it at its deadline (a live lease), and whose order is
/// not settled: still `processing` for a validation job, not final for a fulfilment job. Marking a job's entry fires `dead_letter_replayed`, which requeues the job.
const MARK_REPLAYED: &str = "UPDATE dead_letters SET replayed_at = ?2
    WHERE id = ?1 AND replayed_at IS NULL
        AND (source = 'message' OR EXISTS (
            SELECT 1 FROM jobs AS j
            WHERE j.id = dead_letters.job_id AND j.state = 'dead'
                AND (j.lease_until IS NULL OR j.lease_until <= ?2)
                AND NOT EXISTS (
                    SELECT 1 FROM orders AS o WHERE o.id = j.order_id AND CASE j.kind
                        WHEN 'validate' THEN o.status <> 'processing'
                        ELSE o.status IN ('confirmed', 'cancelled', 'rejected', 'failed')
                    END
                )
        ))
    RETURNING source, order_id, channel, payload";

/// Reads one dead letter: `?1` id.
const SELECT_ONE: &str = "SELECT id, source, job_id, order_id, channel, payload, reason,
        attempts, created_at, replayed_at
    FROM dead_letters WHERE id = ?1";
/// Lists dead letters, newest first: `?1` limit.
const SELECT_ALL: &str = "SELECT id, source, job_id, order_id, channel, payload, reason,
        attempts, created_at, replayed_at
    FROM dead_letters ORDER BY id DESC LIMIT ?1";
/// Lists dead letters not yet replayed, newest first: `?1` limit.
const SELECT_WAITING: &str = "SELECT id, source, job_id, order_id, channel, payload, reason,
        attempts, created_at, replayed_at
    FROM dead_letters WHERE replayed_at IS NULL ORDER BY id DESC LIMIT ?1";

impl<S: Sql> Ledger<S> {
    /// Enters a message no handler could take; returns the dead letter's id.
    pub fn dead_letter_message(
        &self,
        now: Timestamp,
        channel: &str,
        payload: &[u8],
        reason: &str,
    ) -> Result<i64, LedgerError> {
        let inserted = self.run(
            "dead-letter a message",
            "INSERT INTO dead_letters (source, channel, payload, reason, attempts, created_at)
            VALUES ('message', ?1, ?2, ?3, 0, ?4) RETURNING id",
            &[
                SqlValue::text(channel),
                SqlValue::Blob(payload.to_vec()),
                SqlValue::text(reason),
                SqlValue::millis(now),
            ],
        )?;
        match inserted.rows.first().map(Vec::as_slice) {
            Some([SqlValue::Integer(id)]) => Ok(*id),
            _ => Err(LedgerError::corrupt(
                "a new dead letter",
                "its id is not an integer",
            )),
        }
    }

    /// Up to `limit` dead letters, newest first; replayed ones only if `include_replayed`.
    pub fn dead_letters(
        &self,
        include_replayed: bool,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, LedgerError> {
        let statement = if include_replayed {
            SELECT_ALL
        } else {
            SELECT_WAITING
        };
        let found = self.run(
            "list dead letters",
            statement,
            &[SqlValue::Integer(i64::from(limit))],
        )?;
        found.rows.iter().map(|row| read_dead_letter(row)).collect()
    }

    /// The dead letter `id`, if there is one (one read).
    pub fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, LedgerError> {
        let found = self.run("read a dead letter", SELECT_ONE, &[SqlValue::Integer(id)])?;
        found
            .rows
            .first()
            .map(|row| read_dead_letter(row))
            .transpose()
    }

    /// Replays a dead letter at `now`. A job goes back to the queue (due now, poison count 0,
    /// lease cleared, a `replayed` event, its original retry window again from now) and the
    /// entry is marked replayed, in one statement; if its order was decided meanwhile nothing
    /// changes ([`ReplayOutcome::OrderSettled`]). A message is marked replayed and returned:
    /// read it with [`Ledger::dead_letter`] and publish it first, then call this to mark it only
    /// once publishing succeeded (marking first would lose it if publishing failed). Only one
    /// of several racing replays of an entry succeeds.
    pub fn replay(&self, id: i64, now: Timestamp) -> Result<ReplayOutcome, LedgerError> {
        let what = || format!("dead letter {id}");
        // Marking it fires the trigger that requeues a job; RETURNING says whether this call
        // was the one that marked it.
        let replayed = self.run(
            "replay a dead letter",
            MARK_REPLAYED,
            &[SqlValue::Integer(id), SqlValue::millis(now)],
        )?;
        if let Some(row) = replayed.rows.first() {
            return read_replayed(row).map_err(|detail| LedgerError::corrupt(what(), detail));
        }
        let Some(letter) = self.dead_letter(id)? else {
            return Ok(ReplayOutcome::NotFound);
        };
        match (letter.replayed_at, letter.source, letter.order_id) {
            (Some(at), _, _) => Ok(ReplayOutcome::AlreadyReplayed { at }),
            (None, DeadLetterSource::Job, Some(order_id)) => {
                Ok(ReplayOutcome::OrderSettled { order_id })
            }
            (None, DeadLetterSource::Job, None) => Err(LedgerError::corrupt(
                what(),
                "a job's entry has no order_id",
            )),
            // A message's entry is always marked unless it already was.
            (None, DeadLetterSource::Message, _) => Err(LedgerError::corrupt(
                what(),
                "the message's entry could not be marked replayed",
            )),
        }
    }

    /// Deletes every order, job, event, idempotency key and dead letter, in one statement.
    pub fn clear_all(&self) -> Result<(), LedgerError> {
        self.run(
            "clear the ledger",
            "INSERT INTO ledger_reset (requested) VALUES (1)",
            &[],
        )
        .map(drop)
    }
}

/// What a replay that marked the entry returned.
fn read_replayed(row: &[SqlValue]) -> Result<ReplayOutcome, String> {
    let mut reader = RowReader::new(row);
    let source = read_source(&mut reader)?;
    let order_id = reader.optional_text("order_id")?;
    let channel = reader.optional_text("channel")?;
    let payload = reader.optional_blob("payload")?;
    match (source, order_id, channel) {
        (DeadLetterSource::Job, Some(order_id), _) => Ok(ReplayOutcome::Job { order_id }),
        (DeadLetterSource::Job, None, _) => Err("a job's entry has no order_id".into()),
        (DeadLetterSource::Message, _, Some(channel)) => Ok(ReplayOutcome::Message {
            channel,
            payload: payload.unwrap_or_default(),
        }),
        (DeadLetterSource::Message, _, None) => Err("a message's entry has no channel".into()),
    }
}

fn read_source(reader: &mut RowReader<'_>) -> Result<DeadLetterSource, String> {
    match reader.text("source")?.as_str() {
        "job" => Ok(DeadLetterSource::Job),
        "message" => Ok(DeadLetterSource::Message),
        other => Err(format!("source should be job or message, found {other:?}")),
    }
}

fn read_dead_letter(row: &[SqlValue]) -> Result<DeadLetter, LedgerError> {
    let mut reader = RowReader::new(row);
    let id = reader
        .integer("id")
        .map_err(|detail| LedgerError::corrupt("a dead letter", detail))?;
    read_dead_letter_columns(id, &mut reader)
        .map_err(|detail| LedgerError::corrupt(format!("dead letter {id}"), detail))
}

/// The rest of a dead letter's row, after its id.
fn read_dead_letter_columns(id: i64, reader: &mut RowReader<'_>) -> Result<DeadLetter, String> {
    Ok(DeadLetter {
        id,
        source: read_source(reader)?,
        job_id: reader.optional_integer("job_id")?,
        order_id: reader.optional_text("order_id")?,
        channel: reader.optional_text("channel")?,
        payload: reader.optional_blob("payload")?,
        reason: reader.text("reason")?,
        attempts: reader.count("attempts")?,
        created_at: reader.timestamp("created_at")?,
        replayed_at: reader.optional_timestamp("replayed_at")?,
    })
}
