//! Fulfilment sagas: each validated order's saga state between steps, the progress its worker
//! writes after every step, and customers' cancellations.

use crate::sql::TimestampValue;
use crate::{EventKind, Ledger, LedgerError, Sql, SqlValue};
use orderly_sql::RowReader;
use orders_core::{OrderId, OrderStatus, Timestamp};
use serde_json::Value;

/// A saga as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSaga {
    /// Its order.
    pub order_id: String,
    /// The saga as JSON (the `saga` crate's), `None` before its first step.
    pub state: Option<String>,
    /// The customer's note, once a cancellation was asked for.
    pub cancel_requested: Option<String>,
}

/// What one step of a saga changed, written by the worker that holds the saga's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaProgress<'a> {
    /// The saga's job.
    pub job_id: i64,
    /// Its order.
    pub order_id: &'a str,
    /// The saga's new state, as JSON.
    pub state: &'a str,
    /// The order's status now.
    pub status: OrderStatus,
    /// The order's reason code, once it has one (kept otherwise).
    pub reason: Option<&'a str>,
    /// The reason's explanation (kept when `None`).
    pub detail: Option<&'a str>,
    /// What to record in the order's timeline.
    pub event: EventKind,
    /// The event's outcome (the step's or compensation's name, a reason code).
    pub event_outcome: Option<&'a str>,
    /// The event's explanation.
    pub event_detail: Option<&'a str>,
    /// Whether a service answered (the next step starts with a fresh attempt count).
    pub step_done: bool,
    /// Whether the saga ended: the job is deleted.
    pub finished: bool,
}

/// What a customer's cancellation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The order is cancelled (it was still being validated, or was cancelled before).
    Cancelled,
    /// The order's saga is undoing what it did (since this request or an earlier one, or
    /// because a step was refused).
    Cancelling,
    /// Too late: the order is shipped or over; its status.
    Refused(OrderStatus),
    /// There is no such order.
    NotFound,
}

impl<S: Sql> Ledger<S> {
    /// The sagas of `order_ids` that have a row (an order whose fulfilment has not yet taken a
    /// step and was not cancelled has none), in one statement.
    pub fn sagas(&self, order_ids: &[&str]) -> Result<Vec<StoredSaga>, LedgerError> {
        if order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.run(
            "read sagas",
            "SELECT order_id, state, cancel_requested FROM sagas
            WHERE order_id IN (SELECT value FROM json_each(?1))",
            &[SqlValue::Text(Value::from(order_ids.to_vec()).to_string())],
        )?;
        found
            .rows
            .iter()
            .map(|row| read_saga(row).map_err(|detail| LedgerError::corrupt("a saga row", detail)))
            .collect()
    }

    /// Extends `worker`'s lease on job `job_id` to `until`; whether it still held it.
    pub fn renew_lease(
        &self,
        worker: &str,
        job_id: i64,
        until: Timestamp,
    ) -> Result<bool, LedgerError> {
        let renewed = self.run(
            "renew a lease",
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?2 AND lease_owner = ?1 RETURNING id",
            &[
                SqlValue::text(worker),
                SqlValue::Integer(job_id),
                SqlValue::millis(until),
            ],
        )?;
        Ok(!renewed.rows.is_empty())
    }

    /// Records one step of a saga in one statement: its state, its order's status, an event,
    /// and its job (finished or counted afresh). Nothing changes unless `worker` holds the job.
    pub fn record_saga_progress(
        &self,
        worker: &str,
        now: Timestamp,
        progress: &SagaProgress<'_>,
    ) -> Result<(), LedgerError> {
        self.run(
            "record a saga's progress",
            "INSERT INTO saga_progress (
                worker, now, job_id, order_id, state, status, reason, detail, event_kind,
                event_outcome, event_detail, step_done, finished
            ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            &[
                SqlValue::text(worker),
                SqlValue::millis(now),
                SqlValue::Integer(progress.job_id),
                SqlValue::text(progress.order_id),
                SqlValue::text(progress.state),
                SqlValue::text(progress.status.as_str()),
                SqlValue::optional_text(progress.reason),
                SqlValue::optional_text(progress.detail),
                SqlValue::text(progress.event.as_str()),
                SqlValue::optional_text(progress.event_outcome),
                SqlValue::optional_text(progress.event_detail),
                SqlValue::Integer(i64::from(progress.step_done)),
                SqlValue::Integer(i64::from(progress.finished)),
            ],
        )
        .map(drop)
    }

    /// A customer asks to cancel `order_id` (`detail` is their note): an order still being
    /// validated is cancelled at once; one in fulfilment that is not shipped yet has its saga
    /// undo what it did (its job becomes due now). Two statements: the request, then a read of
    /// what it found. Asking again changes nothing.
    pub fn request_cancel(
        &self,
        order_id: &OrderId,
        now: Timestamp,
        detail: &str,
    ) -> Result<CancelOutcome, LedgerError> {
        self.run(
            "cancel an order",
            "INSERT INTO cancel_requests (order_id, now, detail) VALUES (?1, ?2, ?3)",
            &[
                SqlValue::text(order_id.as_str()),
                SqlValue::millis(now),
                SqlValue::text(detail),
            ],
        )?;
        let found = self.run(
            "read a cancelled order",
            "SELECT o.status, s.cancel_requested IS NOT NULL
            FROM orders AS o LEFT JOIN sagas AS s ON s.order_id = o.id
            WHERE o.id = ?1",
            &[SqlValue::text(order_id.as_str())],
        )?;
        let Some(row) = found.rows.first() else {
            return Ok(CancelOutcome::NotFound);
        };
        let (status, noted) = read_cancel_state(row).map_err(|detail| {
            LedgerError::corrupt(format!("order {:?}", order_id.as_str()), detail)
        })?;
        Ok(match status {
            OrderStatus::Cancelled => CancelOutcome::Cancelled,
            OrderStatus::Cancelling => CancelOutcome::Cancelling,
            OrderStatus::Validated | OrderStatus::Reserved | OrderStatus::Paid if noted => {
                CancelOutcome::Cancelling
            }
            other => CancelOutcome::Refused(other),
        })
    }
}

fn read_saga(row: &[SqlValue]) -> Result<StoredSaga, String> {
    let mut reader = RowReader::new(row);
    Ok(StoredSaga {
        order_id: reader.text("order_id")?,
        state: reader.optional_text("state")?,
        cancel_requested: reader.optional_text("cancel_requested")?,
    })
}

fn read_cancel_state(row: &[SqlValue]) -> Result<(OrderStatus, bool), String> {
    let mut reader = RowReader::new(row);
    let status = reader
        .text("status")?
        .parse()
        .map_err(|error| format!("status: {error}"))?;
    Ok((status, reader.flag("cancel_noted")?))
}
