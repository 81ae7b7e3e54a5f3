//! The worker side of the outbox: finding due jobs, claiming them under a lease, and applying
//! what came of them.

use crate::intake::row_count;
use crate::reads::{StoredOrder, order_columns};
use crate::sql::{TimestampColumns, TimestampValue, stored_millis};
use crate::{EventKind, FULFILMENT_JOB, Ledger, LedgerError, Sql, SqlValue};
use orderly_sql::{RowReader, saturating_i64};
use orders_core::{Order, OrderId, OrderStatus, Timestamp};
use serde_json::{Value, json};

/// Whether a worker has anything to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkProbe {
    /// Whether a job of the kind is due and not leased.
    pub due: bool,
    /// Whether the order asked about exists (`None` when none was asked about).
    pub order_known: Option<bool>,
}

/// A job a worker now holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job's id.
    pub job_id: i64,
    /// Its order's id, as stored.
    pub order_id: String,
    /// Its order (`None` if the order row is missing or unreadable).
    pub order: Option<Order>,
    /// Calls made before this claim.
    pub attempts: u32,
    /// How many attempts failed in a way that points at the job itself.
    pub poison_count: u32,
    /// When the job was queued.
    pub created_at: Timestamp,
    /// When validation gives up.
    pub deadline_at: Timestamp,
    /// The worker whose lease had expired when this claim (or a claim whose jobs were then
    /// released untouched) took the job over: it died or stalled mid-job. `None` when the job
    /// was free, or its last holder changed it.
    pub previous_owner: Option<String>,
    /// Why the job was dead-lettered, while it is in the dead-letter queue (only
    /// [`Ledger::claim_expired`] claims such jobs, once their deadline passed).
    pub dead_lettered: Option<String>,
    /// Why the order row is unreadable, if it exists but is.
    pub corrupt: Option<String>,
}

/// What to do with a job after a worker handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Decide the order (`validated`, `rejected` or `failed`) and finish the job. The order
    /// moves only if it is still processing; a `processing` status decides nothing.
    Decide {
        /// The order's final status.
        status: OrderStatus,
        /// A short machine-readable reason code.
        reason: Option<String>,
        /// A human-readable explanation.
        detail: Option<String>,
    },
    /// Try again at `at` (one more attempt counted).
    Retry {
        /// When the job is due again.
        at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// Try again at `at`, counting the failure against the job itself (one more attempt and
    /// one more poison count).
    Poison {
        /// When the job is due again.
        at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// Give up: the job goes to the dead-letter queue.
    DeadLetter {
        /// Why.
        reason: String,
    },
    /// Put the job off until `until` without counting an attempt.
    Defer {
        /// When the job is due again.
        until: Timestamp,
        /// The event to record: [`EventKind::Deferred`] or [`EventKind::BudgetExhausted`].
        kind: EventKind,
        /// Why.
        detail: String,
    },
}

/// What came of one claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// The job.
    pub job_id: i64,
    /// Its order.
    pub order_id: String,
    /// The attempt's number (the claim's `attempts` + 1), `None` when no call was made.
    pub attempt: Option<u32>,
    /// How the call went (`valid`, `rejected`, `http 503`, `timeout`, ...).
    pub outcome: Option<String>,
    /// How long the call took.
    pub latency_ms: Option<u64>,
    /// The worker whose expired lease the claim replaced ([`ClaimedJob::previous_owner`]).
    pub recovered_from: Option<String>,
    /// What to do next.
    pub next: NextStep,
}

/// What an [`Ledger::apply`] call did to orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The orders this call moved to a final status, in the order of the results.
    pub decided: Vec<(String, OrderStatus)>,
    /// Decisions that found their order already decided (and changed nothing).
    pub duplicates: u32,
}

/// The job columns a claim returns, the claimed order as a JSON array, and the column the
/// claim picks jobs by (RETURNING gives rows in no particular order).
macro_rules! claim_returning {
    ($picked_by:literal) => {
        concat!(
            " RETURNING id, order_id, attempts, poison_count, created_at, deadline_at,
                previous_owner,
                CASE state WHEN 'dead' THEN coalesce(last_error, 'no reason recorded') END,
                (SELECT json_array(",
            order_columns!(),
            ") FROM orders AS o WHERE o.id = jobs.order_id), ",
            $picked_by
        )
    };
}

/// Claims due jobs: `?1` kind, `?2` worker, `?3` now, `?4` lease end, `?5` limit. A job whose
/// lease expired names its holder in `previous_owner`; a job released untouched keeps the one it
/// named (its claimer never reported it).
const CLAIM_DUE: &str = concat!(
    "UPDATE jobs SET lease_owner = ?2, lease_until = ?4,
        previous_owner = coalesce(lease_owner, previous_owner)
    WHERE id IN (
        SELECT id FROM jobs
        WHERE kind = ?1 AND state = 'queued' AND due_at <= ?3
            AND (lease_until IS NULL OR lease_until <= ?3)
        ORDER BY due_at, id LIMIT ?5
    )",
    claim_returning!("due_at")
);

/// Claims one order's queued job of a kind, due or not: `?1` kind, `?2` worker, `?3` now,
/// `?4` lease end, `?5` the order's id. Its lease must be free or expired.
const CLAIM_ORDER: &str = concat!(
    "UPDATE jobs SET lease_owner = ?2, lease_until = ?4,
        previous_owner = CASE lease_owner WHEN ?2 THEN previous_owner
            ELSE coalesce(lease_owner, previous_owner) END
    WHERE id IN (
        SELECT id FROM jobs
        WHERE kind = ?1 AND order_id = ?5 AND state = 'queued'
            AND (lease_until IS NULL OR lease_until <= ?3 OR lease_owner = ?2)
        ORDER BY id LIMIT 1
    )",
    claim_returning!("due_at")
);

/// Claims jobs past their deadline, queued or dead-lettered, with the parameters of
/// [`CLAIM_DUE`].
const CLAIM_EXPIRED: &str = concat!(
    "UPDATE jobs SET lease_owner = ?2, lease_until = ?4,
        previous_owner = coalesce(lease_owner, previous_owner)
    WHERE id IN (
        SELECT id FROM jobs
        WHERE kind = ?1 AND state IN ('queued', 'dead') AND deadline_at <= ?3
            AND (lease_until IS NULL OR lease_until <= ?3)
        ORDER BY deadline_at, id LIMIT ?5
    )",
    claim_returning!("deadline_at")
);

/// Applies a batch of results: `?1` batch id, `?2` worker, `?3` now, `?4` the results as a
/// JSON array (see [`result_row`]).
const INSERT_RESULTS: &str = "INSERT INTO job_results (
        batch, worker, now, slot, job_id, order_id, attempt, outcome, latency_ms,
        recovered_from, step, status, reason, detail, due_at, error, counts_attempt,
        event_kind, event_detail, follow_up, follow_up_lease_until
    )
    SELECT ?1, ?2, ?3, value ->> 'slot', value ->> 'job_id', value ->> 'order_id',
        value ->> 'attempt', value ->> 'outcome', value ->> 'latency_ms',
        value ->> 'recovered_from', value ->> 'step', value ->> 'status', value ->> 'reason',
        value ->> 'detail', value ->> 'due_at', value ->> 'error', value ->> 'counts_attempt',
        value ->> 'event_kind', value ->> 'event_detail', value ->> 'follow_up', ?5
    FROM json_each(?4) ORDER BY key";

/// Reads back (and deletes) a batch's outcomes, `?1`, and any left behind by callers that
/// died between their two statements before `?2`.
const TAKE_OUTCOMES: &str = "DELETE FROM apply_outcomes WHERE batch = ?1 OR written_at < ?2
    RETURNING batch, slot, order_id, status, moved";

/// How long a batch's outcomes may wait to be read back before another caller deletes them
/// as left behind.
const ORPHANED_OUTCOME_AGE_MS: u64 = 3_600_000;

/// How many batch ids an `apply` call tries (another caller may be using one).
const BATCH_TRIES: u32 = 8;

impl<S: Sql> Ledger<S> {
    /// In one read statement: whether a job of `kind` is due and not leased at `now`, and
    /// whether `order` (if given) exists.
    pub fn probe_work(
        &self,
        kind: &str,
        now: Timestamp,
        order: Option<&OrderId>,
    ) -> Result<WorkProbe, LedgerError> {
        let found = self.run(
            "look for work",
            "SELECT
                EXISTS (SELECT 1 FROM jobs WHERE kind = ?1 AND state = 'queued' AND due_at <= ?2
                    AND (lease_until IS NULL OR lease_until <= ?2)),
                CASE WHEN ?3 IS NULL THEN NULL
                    ELSE EXISTS (SELECT 1 FROM orders WHERE id = ?3) END",
            &[
                SqlValue::text(kind),
                SqlValue::millis(now),
                SqlValue::optional_text(order.map(OrderId::as_str)),
            ],
        )?;
        let row = found.rows.first().map(Vec::as_slice).unwrap_or_default();
        read_probe(row).map_err(|detail| LedgerError::corrupt("the work probe", detail))
    }

    /// Claims up to `limit` due jobs of `kind` for `worker` until `lease_until`, in one
    /// statement: queued jobs due at `now` whose lease is free or expired, earliest due
    /// first.
    pub fn claim(
        &self,
        kind: &str,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, LedgerError> {
        self.claim_with(CLAIM_DUE, kind, worker, now, lease_until, limit)
    }

    /// Claims up to `limit` jobs of `kind` whose deadline has passed at `now` (due or not) and
    /// whose lease is free or expired, in one statement: queued jobs, and dead-lettered ones
    /// ([`ClaimedJob::dead_lettered`]), whose order stays processing until an operator replays
    /// the job or its deadline passes. Earliest deadline first.
    pub fn claim_expired(
        &self,
        kind: &str,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, LedgerError> {
        self.claim_with(CLAIM_EXPIRED, kind, worker, now, lease_until, limit)
    }

    /// Claims `order_id`'s queued job of `kind` for `worker` until `lease_until`, due or not,
    /// in one statement: the synchronous path takes its own order's job so that no worker
    /// races it (a job `worker` holds already, as intake's [`JobHold`](crate::JobHold) made
    /// it, is claimed again). `None` when the order has no such job or another worker's lease
    /// on it holds.
    pub fn claim_order(
        &self,
        kind: &str,
        order_id: &OrderId,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ClaimedJob>, LedgerError> {
        let claimed = self.run(
            "claim an order's job",
            CLAIM_ORDER,
            &[
                SqlValue::text(kind),
                SqlValue::text(worker),
                SqlValue::millis(now),
                SqlValue::millis(lease_until),
                SqlValue::text(order_id.as_str()),
            ],
        )?;
        match claimed.rows.first() {
            None => Ok(None),
            Some(row) => read_claimed_job(row).map(|(job, _)| Some(job)),
        }
    }

    fn claim_with(
        &self,
        statement: &str,
        kind: &str,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, LedgerError> {
        let claimed = self.run(
            "claim jobs",
            statement,
            &[
                SqlValue::text(kind),
                SqlValue::text(worker),
                SqlValue::millis(now),
                SqlValue::millis(lease_until),
                SqlValue::Integer(i64::from(limit)),
            ],
        )?;
        let mut jobs = claimed
            .rows
            .iter()
            .map(|row| read_claimed_job(row))
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|(job, picked_by)| (*picked_by, job.job_id));
        Ok(jobs.into_iter().map(|(job, _)| job).collect())
    }

    /// Gives jobs `worker` claimed back untouched: their lease is cleared, so they can be
    /// claimed again at once. Jobs another worker holds now are left alone. A job the claim
    /// took over from an expired lease keeps its [`ClaimedJob::previous_owner`], so the next
    /// claim reports it (and the `lease_expired` event is not lost).
    pub fn release_jobs(&self, worker: &str, job_ids: &[i64]) -> Result<(), LedgerError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        self.run(
            "release jobs",
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL
            WHERE lease_owner = ?1 AND id IN (SELECT value FROM json_each(?2))",
            &[
                SqlValue::text(worker),
                SqlValue::Text(Value::from(job_ids.to_vec()).to_string()),
            ],
        )
        .map(drop)
    }

    /// Applies what came of claimed jobs, in one statement (and, when decisions were made,
    /// a second one reading back what they did). Per result: a `lease_expired` event if the
    /// job was recovered, an `attempt` event if a call was made, then the step:
    ///
    /// - `Decide` moves the order only if it is still processing and records the decision,
    ///   or else a `duplicate_ignored` event; the job is deleted if `worker` holds it. An
    ///   order it validates gets its fulfilment job ([`FULFILMENT_JOB`]) in the same
    ///   statement.
    /// - `Retry`, `Poison`, `Defer`, `DeadLetter` change the job (lease cleared) only if
    ///   `worker` holds it, and then record `retry_scheduled`, the deferral's kind, or
    ///   `dead_lettered` (with a dead letter).
    pub fn apply(
        &self,
        worker: &str,
        now: Timestamp,
        results: &[JobResult],
    ) -> Result<Applied, LedgerError> {
        self.apply_with(worker, now, results, None)
    }

    /// [`Ledger::apply`], with the follow-up job a decision queues held by `worker` until
    /// `hold_until` (instead of due for any worker): the synchronous path goes on to its own
    /// order's next job without a worker taking it first.
    pub fn apply_holding_follow_up(
        &self,
        worker: &str,
        now: Timestamp,
        results: &[JobResult],
        hold_until: Timestamp,
    ) -> Result<Applied, LedgerError> {
        self.apply_with(worker, now, results, Some(hold_until))
    }

    fn apply_with(
        &self,
        worker: &str,
        now: Timestamp,
        results: &[JobResult],
        hold_follow_up_until: Option<Timestamp>,
    ) -> Result<Applied, LedgerError> {
        if results.is_empty() {
            return Ok(Applied::default());
        }
        let mut rows = Vec::with_capacity(results.len());
        let mut decisions = 0;
        for result in results {
            let slot = result.next.decides().then_some(decisions);
            decisions += u32::from(slot.is_some());
            rows.push(result_row(result, slot));
        }
        let rows = Value::Array(rows).to_string();
        let mut try_number = 1;
        loop {
            let batch = format!("{worker}/{}/{try_number}", now.millis());
            let inserted = self.execute(
                INSERT_RESULTS,
                &[
                    SqlValue::text(&batch),
                    SqlValue::text(worker),
                    SqlValue::millis(now),
                    SqlValue::text(&rows),
                    hold_follow_up_until.map_or(SqlValue::Null, SqlValue::millis),
                ],
            )?;
            match inserted {
                Ok(_) if decisions == 0 => return Ok(Applied::default()),
                Ok(_) => return self.take_outcomes(&batch, now),
                // Another call is using this batch id: the statement changed nothing.
                Err(error)
                    if try_number < BATCH_TRIES
                        && error
                            .is_unique_violation("apply_outcomes.batch, apply_outcomes.slot") =>
                {
                    try_number += 1;
                }
                Err(source) => {
                    return Err(LedgerError::Sql {
                        operation: "apply job results",
                        source,
                    });
                }
            }
        }
    }

    /// Reads back and deletes what a batch's decisions did.
    fn take_outcomes(&self, batch: &str, now: Timestamp) -> Result<Applied, LedgerError> {
        let orphaned_before = Timestamp(now.millis().saturating_sub(ORPHANED_OUTCOME_AGE_MS));
        let taken = self.run(
            "read back applied decisions",
            TAKE_OUTCOMES,
            &[SqlValue::text(batch), SqlValue::millis(orphaned_before)],
        )?;
        let mut outcomes = Vec::new();
        for row in &taken.rows {
            let outcome = read_outcome(row)
                .map_err(|detail| LedgerError::corrupt("an applied decision", detail))?;
            if outcome.batch == batch {
                outcomes.push(outcome);
            }
        }
        outcomes.sort_by_key(|outcome| outcome.slot);
        let mut applied = Applied::default();
        for outcome in outcomes {
            match outcome.moved {
                Some(true) => applied.decided.push((outcome.order_id, outcome.status)),
                Some(false) => applied.duplicates += 1,
                None => {}
            }
        }
        Ok(applied)
    }

    /// The circuit breaker's bulk deferral: up to `limit` due, unleased, queued jobs of `kind`
    /// (oldest due first) become due at `until`, one more deferral counted. Only jobs starting
    /// a deferral streak get a `deferred` event (so a long outage writes one per job, not one
    /// per pass). Two statements at most; returns how many jobs were deferred. Callers defer in
    /// chunks (calling again while a call returns `limit`), so that no single write holds the
    /// database for long while thousands of jobs wait.
    pub fn defer_due(
        &self,
        kind: &str,
        now: Timestamp,
        until: Timestamp,
        detail: &str,
        limit: u32,
    ) -> Result<u64, LedgerError> {
        let deferred = self.run(
            "defer due jobs",
            "UPDATE jobs
            SET due_at = ?3, deferrals = deferrals + 1, deferred_since = coalesce(deferred_since, ?2)
            WHERE id IN (
                SELECT id FROM jobs
                WHERE kind = ?1 AND state = 'queued' AND due_at <= ?2
                    AND (lease_until IS NULL OR lease_until <= ?2)
                ORDER BY due_at, id
                LIMIT ?4
            )
            RETURNING order_id, deferred_since = ?2",
            &[
                SqlValue::text(kind),
                SqlValue::millis(now),
                SqlValue::millis(until),
                SqlValue::Integer(i64::from(limit)),
            ],
        )?;
        let mut starting_streaks = Vec::new();
        for row in &deferred.rows {
            let mut reader = RowReader::new(row);
            let order_id = reader.text("order_id");
            let starts_streak = reader.flag("starts_streak");
            match (order_id, starts_streak) {
                (Ok(order_id), Ok(true)) => starting_streaks.push(order_id),
                (Ok(_), Ok(false)) => {}
                (Err(detail), _) | (_, Err(detail)) => {
                    return Err(LedgerError::corrupt("a deferred job", detail));
                }
            }
        }
        if !starting_streaks.is_empty() {
            self.run(
                "record deferrals",
                "INSERT INTO order_events (order_id, at, kind, detail)
                SELECT value, ?1, 'deferred', ?2 FROM json_each(?3) ORDER BY key",
                &[
                    SqlValue::millis(now),
                    SqlValue::Text(format!("{detail}; due again at {until}")),
                    SqlValue::Text(Value::from(starting_streaks).to_string()),
                ],
            )?;
        }
        Ok(row_count(&deferred))
    }
}

impl NextStep {
    /// Whether this is a decision (to a final status).
    fn decides(&self) -> bool {
        matches!(self, Self::Decide { status, .. } if status.is_validated_or_refused())
    }
}

/// One `job_results` row as JSON. `slot` numbers the batch's decisions from 0.
fn result_row(result: &JobResult, slot: Option<u32>) -> Value {
    let counts_attempt = result.attempt.is_some()
        || matches!(
            result.next,
            NextStep::Retry { .. } | NextStep::Poison { .. }
        );
    let mut row = json!({
        "slot": slot,
        "job_id": result.job_id,
        "order_id": result.order_id,
        "attempt": result.attempt,
        "outcome": result.outcome,
        "latency_ms": result.latency_ms.map(saturating_i64),
        "recovered_from": result.recovered_from,
        "counts_attempt": counts_attempt,
    });
    let step = match &result.next {
        NextStep::Decide {
            status,
            reason,
            detail,
        } if result.next.decides() => json!({
            "step": "decide",
            "status": status.as_str(),
            "reason": reason,
            "detail": detail,
            // A validated order goes on to be fulfilled.
            "follow_up": (*status == OrderStatus::Validated).then_some(FULFILMENT_JOB),
        }),
        NextStep::Decide { .. } => json!({ "step": "no_decision" }),
        NextStep::Retry { at, error } => json!({
            "step": "retry",
            "due_at": stored_millis(*at),
            "error": error,
            "event_kind": EventKind::RetryScheduled.as_str(),
            "event_detail": format!("{error}; next attempt at {at}"),
        }),
        NextStep::Poison { at, error } => json!({
            "step": "poison",
            "due_at": stored_millis(*at),
            "error": error,
            "event_kind": EventKind::RetryScheduled.as_str(),
            "event_detail": format!("{error} (counted as poison); next attempt at {at}"),
        }),
        NextStep::DeadLetter { reason } => json!({
            "step": "dead_letter",
            "error": reason,
            "event_kind": EventKind::DeadLettered.as_str(),
            "event_detail": reason,
        }),
        NextStep::Defer {
            until,
            kind,
            detail,
        } => json!({
            "step": "defer",
            "due_at": stored_millis(*until),
            "event_kind": kind.as_str(),
            "event_detail": format!("{detail}; due again at {until}"),
        }),
    };
    if let (Value::Object(row), Value::Object(step)) = (&mut row, step) {
        row.extend(step);
    }
    row
}

fn read_probe(row: &[SqlValue]) -> Result<WorkProbe, String> {
    let mut reader = RowReader::new(row);
    Ok(WorkProbe {
        due: reader.flag("due")?,
        order_known: reader
            .optional_integer("order_known")?
            .map(|known| known != 0),
    })
}

/// A claimed job, and the value the claim picked it by.
fn read_claimed_job(row: &[SqlValue]) -> Result<(ClaimedJob, i64), LedgerError> {
    let mut reader = RowReader::new(row);
    let job_id = reader
        .integer("id")
        .map_err(|detail| LedgerError::corrupt("a claimed job", detail))?;
    read_claimed_columns(job_id, &mut reader)
        .map_err(|detail| LedgerError::corrupt(format!("job {job_id}"), detail))
}

/// The rest of a claimed job's row, after its id.
fn read_claimed_columns(
    job_id: i64,
    reader: &mut RowReader<'_>,
) -> Result<(ClaimedJob, i64), String> {
    let order_id = reader.text("order_id")?;
    let attempts = reader.count("attempts")?;
    let poison_count = reader.count("poison_count")?;
    let created_at = reader.timestamp("created_at")?;
    let deadline_at = reader.timestamp("deadline_at")?;
    let previous_owner = reader.optional_text("previous_owner")?;
    let dead_lettered = reader.optional_text("dead_lettered")?;
    let (order, corrupt) = match reader.optional_text("order")? {
        None => (None, None),
        Some(columns) => match restore_order(&order_id, &columns) {
            Ok(order) => (Some(order), None),
            Err(reason) => (None, Some(reason)),
        },
    };
    let picked_by = reader.integer("picked_by")?;
    let job = ClaimedJob {
        job_id,
        order_id,
        order,
        attempts,
        poison_count,
        created_at,
        deadline_at,
        previous_owner,
        dead_lettered,
        corrupt,
    };
    Ok((job, picked_by))
}

/// The order from its JSON array of columns, or why it is unreadable.
fn restore_order(order_id: &str, columns: &str) -> Result<Order, String> {
    let stored: StoredOrder = serde_json::from_str(columns)
        .map_err(|error| format!("order {order_id:?} is unreadable: {error}"))?;
    stored.check().map_err(|error| error.to_string())
}

/// What one decision of a batch did, as the trigger recorded it.
struct DecisionOutcome {
    batch: String,
    slot: i64,
    order_id: String,
    status: OrderStatus,
    /// `Some(true)` moved the order, `Some(false)` found it decided, `None` found no order.
    moved: Option<bool>,
}

fn read_outcome(row: &[SqlValue]) -> Result<DecisionOutcome, String> {
    let mut reader = RowReader::new(row);
    Ok(DecisionOutcome {
        batch: reader.text("batch")?,
        slot: reader.integer("slot")?,
        order_id: reader.text("order_id")?,
        status: reader
            .text("status")?
            .parse()
            .map_err(|error| format!("status: {error}"))?,
        moved: reader.optional_integer("moved")?.map(|moved| moved != 0),
    })
}
