//! Reading orders, their jobs and timelines, and the pipeline's counters. Every row is
//! re-checked on the way out.

use crate::sql::{TimestampColumns, TimestampValue};
use crate::{EventKind, Ledger, LedgerError, OrderEvent, Sql, SqlValue};
use orderly_sql::RowReader;
use orders_core::{CustomerName, LineItem, Order, OrderId, OrderStatus, Timestamp};
use serde::Deserialize;
use std::fmt;
use std::sync::LazyLock;

/// An order's validation job, while it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// Calls made to the validator so far.
    pub attempts: u32,
    /// When the job is next due.
    pub next_attempt_at: Timestamp,
    /// How many times it was put off without an attempt.
    pub deferrals: u32,
    /// The latest failure, if any.
    pub last_error: Option<String>,
    /// When the latest call was made, if any.
    pub last_attempt_at: Option<Timestamp>,
    /// The end of the latest claim's lease, if one was taken since the job was last given
    /// back (it may have passed: compare with the time).
    pub leased_until: Option<Timestamp>,
    /// Whether the job is in the dead-letter queue.
    pub dead_lettered: bool,
    /// When validation gives up ([`crate::NO_DEADLINE`] for orders of the previous release).
    pub deadline_at: Timestamp,
}

/// An order and, while it exists, its validation job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The order.
    pub order: Order,
    /// Its `validate` job, until the order is decided.
    pub job: Option<JobView>,
}

/// One page of orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    /// The orders, oldest first.
    pub orders: Vec<Order>,
    /// Where the next page starts, if there is one.
    pub next: Option<PageCursor>,
}

/// Where a page of orders starts: just after an order, by its place in acceptance order. Its
/// text form (`to_string`, [`PageCursor::parse`]) is opaque to clients and safe in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    seq: i64,
}

/// Why text is not a page cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// It is not in the form a page gave out.
    #[error("not a page cursor (use the `next` value a page returned)")]
    Malformed,
}

impl PageCursor {
    /// Parses a cursor's text form.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(CursorError::Malformed);
        }
        let seq = text.parse().map_err(|_| CursorError::Malformed)?;
        Ok(Self { seq })
    }
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.seq)
    }
}

/// How the pipeline stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStats {
    /// How many orders have each status (every status, zeros included).
    pub orders: Vec<(OrderStatus, u64)>,
    /// Queued validation jobs that are due and not leased.
    pub jobs_due: u64,
    /// Queued validation jobs not due yet (put off by a retry or the circuit breaker).
    pub jobs_deferred: u64,
    /// Validation jobs a worker holds an unexpired lease on.
    pub jobs_leased: u64,
    /// How long the longest-waiting due validation job has been due (0 if none is).
    pub oldest_due_age_ms: u64,
    /// Dead letters not yet replayed.
    pub dead_letters: u64,
}

/// An order's columns as stored, before they are checked. It reads from a row (in
/// [`order_columns!`] order) or from the JSON array `json_array(<those columns>)`.
#[derive(Debug, Deserialize)]
pub(crate) struct StoredOrder {
    id: String,
    customer: Option<String>,
    items: String,
    status: String,
    reason: Option<String>,
    detail: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// An order's columns, for `concat!`, with `o` naming the `orders` table.
macro_rules! order_columns {
    () => {
        "o.id, o.customer, o.items, o.status, o.reason, o.detail, o.created_at, o.updated_at"
    };
}
pub(crate) use order_columns;

impl StoredOrder {
    /// Reads an order's columns, in [`order_columns!`] order.
    pub(crate) fn read(reader: &mut RowReader<'_>) -> Result<Self, LedgerError> {
        let id = reader
            .text("id")
            .map_err(|detail| LedgerError::corrupt("an order", detail))?;
        Self::read_after_id(reader, id.clone())
            .map_err(|detail| LedgerError::corrupt(format!("order {id:?}"), detail))
    }

    fn read_after_id(reader: &mut RowReader<'_>, id: String) -> Result<Self, String> {
        Ok(Self {
            id,
            customer: reader.optional_text("customer")?,
            items: reader.text("items")?,
            status: reader.text("status")?,
            reason: reader.optional_text("reason")?,
            detail: reader.optional_text("detail")?,
            created_at: reader.integer("created_at")?,
            updated_at: reader.integer("updated_at")?,
        })
    }

    /// The id as stored, to name the row.
    fn id(&self) -> &str {
        &self.id
    }

    /// The order, if every column holds what the ledger writes.
    pub(crate) fn check(self) -> Result<Order, LedgerError> {
        let what = || format!("order {:?}", self.id);
        let corrupt = |detail: String| LedgerError::corrupt(what(), detail);
        let time = |column: &str, millis: i64| {
            u64::try_from(millis)
                .map(Timestamp)
                .map_err(|_| corrupt(format!("{column} is negative: {millis}")))
        };
        Ok(Order {
            id: OrderId::parse(&self.id).map_err(|error| corrupt(format!("id: {error}")))?,
            customer: self
                .customer
                .as_deref()
                .map(CustomerName::new)
                .transpose()
                .map_err(|error| corrupt(format!("customer: {error}")))?,
            items: LineItem::list_from_json(&self.items)
                .map_err(|error| corrupt(format!("items: {error}")))?,
            status: self
                .status
                .parse()
                .map_err(|error| corrupt(format!("status: {error}")))?,
            reason: self.reason.clone(),
            detail: self.detail.clone(),
            created_at: time("created_at", self.created_at)?,
            updated_at: time("updated_at", self.updated_at)?,
        })
    }
}

const SELECT_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    ", j.id, j.attempts, j.due_at, j.deferrals, j.last_error, j.last_attempt_at, j.lease_until,
        j.state, j.deadline_at
    FROM orders AS o LEFT JOIN jobs AS j ON j.kind = 'validate' AND j.order_id = o.id
    WHERE o.id = ?1"
);

/// A page of orders: `?1` how many, `?2` after which `seq`.
const PAGE_ALL: &str = concat!(
    "SELECT ",
    order_columns!(),
    ", o.seq FROM orders AS o WHERE o.seq > ?2 ORDER BY o.seq LIMIT ?1"
);
/// A page of orders with status `?3`, as [`PAGE_ALL`] (through `orders_by_status_and_seq`).
const PAGE_BY_STATUS: &str = concat!(
    "SELECT ",
    order_columns!(),
    ", o.seq FROM orders AS o WHERE o.status = ?3 AND o.seq > ?2 ORDER BY o.seq LIMIT ?1"
);

/// An order's timeline, `?1` its id: the `accepted` event derived from the order (seq 0), then
/// those stored.
const SELECT_EVENTS: &str = "SELECT 0, o.created_at, 'accepted', NULL, NULL, NULL,
        CASE WHEN o.seq <= (SELECT value FROM ledger_marks WHERE name = 'legacy_orders_through')
            THEN 'carried over from the previous release' END
    FROM orders AS o WHERE o.id = ?1
    UNION ALL
    SELECT seq, at, kind, attempt, outcome, latency_ms, detail
    FROM order_events WHERE order_id = ?1
    ORDER BY 1";

/// The counters of [`PipelineStats`], in one statement (`?1` is now). The first columns count
/// orders by status, in the order of [`OrderStatus::ALL`].
static SELECT_STATS: LazyLock<String> = LazyLock::new(|| {
    let by_status: Vec<String> = OrderStatus::ALL
        .iter()
        .map(|status| {
            format!(
                "(SELECT count(*) FROM orders WHERE status = '{}')",
                status.as_str()
            )
        })
        .collect();
    format!(
        "SELECT {},
            (SELECT count(*) FROM jobs WHERE kind = 'validate' AND state = 'queued' AND due_at <= ?1
                AND (lease_until IS NULL OR lease_until <= ?1)),
            (SELECT count(*) FROM jobs WHERE kind = 'validate' AND state = 'queued' AND due_at > ?1
                AND (lease_until IS NULL OR lease_until <= ?1)),
            (SELECT count(*) FROM jobs WHERE kind = 'validate' AND lease_until > ?1),
            (SELECT min(due_at) FROM jobs WHERE kind = 'validate' AND state = 'queued' AND due_at <= ?1
                AND (lease_until IS NULL OR lease_until <= ?1)),
            (SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL)",
        by_status.join(", ")
    )
});

impl<S: Sql> Ledger<S> {
    /// The order `id` and its validation job, in one statement.
    pub fn order(&self, id: &OrderId) -> Result<Option<OrderView>, LedgerError> {
        let found = self.run(
            "read an order",
            SELECT_ORDER,
            &[SqlValue::text(id.as_str())],
        )?;
        let Some(row) = found.rows.first() else {
            return Ok(None);
        };
        let mut reader = RowReader::new(row);
        let stored = StoredOrder::read(&mut reader)?;
        let what = format!("the validate job of order {:?}", stored.id());
        let job =
            read_job_view(&mut reader).map_err(|detail| LedgerError::corrupt(what, detail))?;
        Ok(Some(OrderView {
            order: stored.check()?,
            job,
        }))
    }

    /// Up to `limit` orders (at least 1), oldest first (in the order they were accepted),
    /// optionally only those with `status`, starting after `after`.
    pub fn orders(
        &self,
        status: Option<OrderStatus>,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> Result<OrderPage, LedgerError> {
        let limit = limit.max(1);
        // One more than asked, to learn whether there is a next page.
        let mut parameters = vec![
            SqlValue::Integer(i64::from(limit) + 1),
            SqlValue::Integer(after.map_or(i64::MIN, |after| after.seq)),
        ];
        let statement = match status {
            None => PAGE_ALL,
            Some(status) => {
                parameters.push(SqlValue::text(status.as_str()));
                PAGE_BY_STATUS
            }
        };
        let found = self.run("list orders", statement, &parameters)?;
        let mut listed = found
            .rows
            .iter()
            .map(|row| read_listed_order(row))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if listed.len() > limit as usize {
            listed.truncate(limit as usize);
            listed.last().map(|&(_, seq)| PageCursor { seq })
        } else {
            None
        };
        let orders = listed.into_iter().map(|(order, _)| order).collect();
        Ok(OrderPage { orders, next })
    }

    /// The order's timeline, oldest first: its `accepted` event (seq 0, at its creation), then
    /// what happened to it since. Empty for an unknown order.
    pub fn events(&self, id: &OrderId) -> Result<Vec<OrderEvent>, LedgerError> {
        let found = self.run(
            "read an order's events",
            SELECT_EVENTS,
            &[SqlValue::text(id.as_str())],
        )?;
        found
            .rows
            .iter()
            .map(|row| {
                read_event(row).map_err(|detail| {
                    LedgerError::corrupt(format!("an event of order {:?}", id.as_str()), detail)
                })
            })
            .collect()
    }

    /// How the pipeline stands at `now`, in one statement.
    pub fn stats(&self, now: Timestamp) -> Result<PipelineStats, LedgerError> {
        let found = self.run(
            "read the pipeline's counters",
            &SELECT_STATS,
            &[SqlValue::millis(now)],
        )?;
        let row = found.rows.first().map(Vec::as_slice).unwrap_or_default();
        read_stats(row, now).map_err(|detail| LedgerError::corrupt("the counters", detail))
    }
}

/// A listed order and its `seq`.
fn read_listed_order(row: &[SqlValue]) -> Result<(Order, i64), LedgerError> {
    let mut reader = RowReader::new(row);
    let stored = StoredOrder::read(&mut reader)?;
    let seq = reader
        .integer("seq")
        .map_err(|detail| LedgerError::corrupt(format!("order {:?}", stored.id()), detail))?;
    Ok((stored.check()?, seq))
}

fn read_job_view(reader: &mut RowReader<'_>) -> Result<Option<JobView>, String> {
    if reader.optional_integer("job id")?.is_none() {
        return Ok(None);
    }
    Ok(Some(JobView {
        attempts: reader.count("attempts")?,
        next_attempt_at: reader.timestamp("due_at")?,
        deferrals: reader.count("deferrals")?,
        last_error: reader.optional_text("last_error")?,
        last_attempt_at: reader.optional_timestamp("last_attempt_at")?,
        leased_until: reader.optional_timestamp("lease_until")?,
        dead_lettered: match reader.text("state")?.as_str() {
            "queued" => false,
            "dead" => true,
            other => return Err(format!("state should be queued or dead, found {other:?}")),
        },
        deadline_at: reader.timestamp("deadline_at")?,
    }))
}

fn read_event(row: &[SqlValue]) -> Result<OrderEvent, String> {
    let mut reader = RowReader::new(row);
    let seq = reader.integer("seq")?;
    let in_event = |detail: String| format!("event {seq}: {detail}");
    let at = reader.timestamp("at").map_err(in_event)?;
    let kind = reader.text("kind").map_err(in_event)?;
    Ok(OrderEvent {
        seq,
        at,
        kind: EventKind::from_stored(&kind)
            .ok_or_else(|| in_event(format!("unknown kind {kind:?}")))?,
        attempt: reader.optional_count("attempt").map_err(in_event)?,
        outcome: reader.optional_text("outcome").map_err(in_event)?,
        latency_ms: reader.optional_count("latency_ms").map_err(in_event)?,
        detail: reader.optional_text("detail").map_err(in_event)?,
    })
}

fn read_stats(row: &[SqlValue], now: Timestamp) -> Result<PipelineStats, String> {
    let mut reader = RowReader::new(row);
    let orders = OrderStatus::ALL
        .into_iter()
        .map(|status| Ok((status, reader.count(status.as_str())?)))
        .collect::<Result<_, String>>()?;
    Ok(PipelineStats {
        orders,
        jobs_due: reader.count("jobs_due")?,
        jobs_deferred: reader.count("jobs_deferred")?,
        jobs_leased: reader.count("jobs_leased")?,
        oldest_due_age_ms: reader
            .optional_timestamp("oldest_due_at")?
            .map_or(0, |oldest| crate::millis_between(oldest, now)),
        dead_letters: reader.count("dead_letters")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_text() {
        let cursor = PageCursor { seq: 1_234 };
        assert_eq!(cursor.to_string(), "1234");
        assert_eq!(PageCursor::parse(&cursor.to_string()), Ok(cursor));
    }

    #[test]
    fn refuses_text_that_is_not_a_cursor() {
        for text in [
            "",
            "-1",
            "+1",
            "x",
            "1.id",
            "1234.a.b-c",
            "99999999999999999999",
        ] {
            assert_eq!(
                PageCursor::parse(text),
                Err(CursorError::Malformed),
                "{text}"
            );
        }
    }
}
