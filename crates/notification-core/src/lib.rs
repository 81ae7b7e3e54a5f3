//! Orderly's notification service, as plain Rust over [`Sql`]: one notification per order that
//! reached `confirmed` or `cancelled`, recorded in the service's own tables of the shared
//! database.
//!
//! Nothing is ever missed although Redis pub/sub drops messages: the ledger enters every order
//! in its outbox of final orders in the statement that finalises it, and [`Notifier::catch_up`]
//! reads that outbox after the service's cursor, so a doorbell (or the cron sweep) only says
//! when to look, never what to do. A notification is keyed by its order id: a repeat (two
//! wake-ups racing, a crash between recording and moving the cursor) changes nothing.

use ledger::{FinalOrder, Ledger, LedgerError};
use orderly_sql::{RowReader, Schema, SchemaError, Sql, SqlValue, saturating_i64};
use orders_core::{LineItem, OrderId, OrderStatus, Timestamp};
use pipeline::Doorbell;
use serde::Serialize;

pub use pipeline::EVENTS_CHANNEL;

/// How many final orders one statement records.
const BATCH: u32 = 100;
/// How many batches one catch-up records at most (the next wake-up or sweep goes on).
const MAX_BATCHES: u32 = 50;
/// The largest page [`Notifier::notifications`] returns.
pub const MAX_PAGE: u32 = 1_000;

/// Version 1: the notifications, and the cursor in the ledger's outbox of final orders.
const VERSION_1: &[&str] = &[
    // `seq` is the order's place in the outbox (`final_orders.seq`), so notifications list in
    // the order their orders became final. `items` is `LineItem::to_json`; `reason` and
    // `detail` the cancellation's; `decided_at` when the order became final.
    "CREATE TABLE notifications (
        seq        INTEGER PRIMARY KEY,
        order_id   TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL CHECK (kind IN ('confirmed', 'cancelled')),
        customer   TEXT,
        reason     TEXT,
        detail     TEXT,
        items      TEXT NOT NULL,
        decided_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    )",
    // How far the outbox was read: every final order up to `through` has its notification.
    "CREATE TABLE notification_cursor (
        name    TEXT PRIMARY KEY,
        through INTEGER NOT NULL
    ) WITHOUT ROWID",
    "INSERT INTO notification_cursor (name, through) VALUES ('final_orders', 0)",
];

/// The service's schema, created on demand in the shared database.
pub const NOTIFICATION_SCHEMA: Schema = Schema {
    version_table: "notification_schema",
    migrations: &[VERSION_1],
};

/// Records a batch given as a JSON array (`?1`) of notifications, `?2` being now; orders that
/// have one already are left alone. Returns the orders recorded.
const RECORD: &str = "INSERT INTO notifications
        (seq, order_id, kind, customer, reason, detail, items, decided_at, created_at)
    SELECT value ->> 'seq', value ->> 'order_id', value ->> 'kind', value ->> 'customer',
        value ->> 'reason', value ->> 'detail', value ->> 'items', value ->> 'decided_at', ?2
    FROM json_each(?1) WHERE true
    ON CONFLICT DO NOTHING
    RETURNING order_id";

/// The columns a notification is read from, in [`read_notification`]'s order.
const COLUMNS: &str =
    "seq, order_id, kind, customer, reason, detail, items, decided_at, created_at";

/// Why the service failed.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The ledger (reading the outbox, or dead-lettering a message) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A statement on the service's own tables failed.
    #[error("could not {operation}: {source}")]
    Sql {
        /// What the service was doing.
        operation: &'static str,
        /// Why.
        #[source]
        source: SchemaError,
    },
    /// A stored row does not hold what the service writes.
    #[error("{what} is unreadable: {detail}")]
    Corrupt {
        /// The row at fault.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// Which end an order came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The order was fulfilled.
    Confirmed,
    /// The order was cancelled (by the customer, or because a step was refused).
    Cancelled,
}

impl NotificationKind {
    /// The kind for an order with final `status`; `None` if the status is not final.
    pub fn for_status(status: OrderStatus) -> Option<Self> {
        match status {
            OrderStatus::Confirmed => Some(Self::Confirmed),
            OrderStatus::Cancelled => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A notification that an order was confirmed or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The order.
    pub order_id: String,
    /// How the order ended.
    pub kind: NotificationKind,
    /// The customer, if the order named one.
    pub customer: Option<String>,
    /// Why it was cancelled (a code such as `cancelled_by_customer` or `reserve_refused`).
    pub reason: Option<String>,
    /// The cancellation's explanation.
    pub detail: Option<String>,
    /// The order's lines.
    pub items: Vec<LineItem>,
    /// When the order became final (milliseconds since the epoch).
    pub decided_at: u64,
    /// When the notification was recorded (milliseconds since the epoch).
    pub created_at: u64,
    /// Its place in the list: the order's in the ledger's outbox of final orders.
    #[serde(skip)]
    pub seq: u64,
}

/// One page of notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPage {
    /// The notifications, in the order their orders became final.
    pub notifications: Vec<Notification>,
    /// Where the next page starts (for `after`), if there is one.
    pub next: Option<u64>,
}

/// What one invocation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Final orders read from the outbox.
    pub read: u32,
    /// Notifications recorded (the others had one already).
    pub recorded: u32,
    /// Malformed messages sent to the dead-letter queue.
    pub dead_lettered: u32,
}

/// The notification service over one database connection (shared with the ledger).
pub struct Notifier<'a, S: Sql> {
    sql: &'a S,
    ledger: Ledger<&'a S>,
}

impl<'a, S: Sql> Notifier<'a, S> {
    /// The service on `sql`; nothing runs until the first call.
    pub fn new(sql: &'a S) -> Self {
        Self {
            sql,
            ledger: Ledger::new(sql),
        }
    }

    /// A message on the events channel: a doorbell makes the service catch up; anything else
    /// goes to the dead-letter queue.
    pub fn on_message(
        &self,
        channel: &str,
        message: &[u8],
        now: Timestamp,
    ) -> Result<CatchUpReport, NotificationError> {
        if let Err(error) = Doorbell::parse(message) {
            let reason = format!("malformed doorbell: {error}");
            self.ledger
                .dead_letter_message(now, channel, message, &reason)?;
            return Ok(CatchUpReport {
                dead_lettered: 1,
                ..CatchUpReport::default()
            });
        }
        self.catch_up(now)
    }

    /// Records a notification for every order that became final since the cursor, a batch at
    /// a time, moving the cursor after each (at most [`MAX_BATCHES`] batches: the next wake-up
    /// or sweep goes on).
    pub fn catch_up(&self, now: Timestamp) -> Result<CatchUpReport, NotificationError> {
        let mut report = CatchUpReport::default();
        for _ in 0..MAX_BATCHES {
            let cursor = self.cursor()?;
            let found = self.ledger.final_orders(cursor, BATCH)?;
            let Some(last) = found.last().map(|order| order.seq) else {
                break;
            };
            report.read += found.len() as u32;
            report.recorded += self.record(&found, now)?;
            self.run(
                "move the cursor",
                "UPDATE notification_cursor SET through = max(through, ?1)
                WHERE name = 'final_orders'",
                &[SqlValue::Integer(saturating_i64(last))],
            )?;
            if found.len() < BATCH as usize {
                break;
            }
        }
        Ok(report)
    }

    /// The notification about `order_id`, if there is one.
    pub fn notification(
        &self,
        order_id: &OrderId,
    ) -> Result<Option<Notification>, NotificationError> {
        let found = self.run(
            "read a notification",
            &format!("SELECT {COLUMNS} FROM notifications WHERE order_id = ?1"),
            &[SqlValue::text(order_id.as_str())],
        )?;
        found
            .rows
            .first()
            .map(|row| read_notification(row))
            .transpose()
    }

    /// Up to `limit` notifications (1 to [`MAX_PAGE`]) after `after` (a page's `next`), in the
    /// order their orders became final.
    pub fn notifications(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<NotificationPage, NotificationError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // One more than asked, to learn whether there is a next page.
        let found = self.run(
            "list notifications",
            &format!("SELECT {COLUMNS} FROM notifications WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
            &[
                SqlValue::Integer(saturating_i64(after.unwrap_or(0))),
                SqlValue::Integer(i64::from(limit) + 1),
            ],
        )?;
        let mut notifications = found
            .rows
            .iter()
            .map(|row| read_notification(row))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if notifications.len() > limit as usize {
            notifications.truncate(limit as usize);
            notifications.last().map(|last| last.seq)
        } else {
            None
        };
        Ok(NotificationPage {
            notifications,
            next,
        })
    }

    /// How far the outbox was read.
    fn cursor(&self) -> Result<u64, NotificationError> {
        let found = self.run(
            "read the cursor",
            "SELECT through FROM notification_cursor WHERE name = 'final_orders'",
            &[],
        )?;
        let row = found.rows.first().map(Vec::as_slice).unwrap_or_default();
        RowReader::new(row)
            .count("through")
            .map_err(|detail| corrupt("the notification cursor", detail))
    }

    /// Records a notification per final order (in one statement); how many were new.
    fn record(&self, found: &[FinalOrder], now: Timestamp) -> Result<u32, NotificationError> {
        let batch = found
            .iter()
            .map(|final_order| {
                let order = &final_order.order;
                let kind = NotificationKind::for_status(order.status).ok_or_else(|| {
                    corrupt(
                        format!("final order {:?}", order.id.as_str()),
                        format!("its status {} is not final", order.status.as_str()),
                    )
                })?;
                let cancelled = kind == NotificationKind::Cancelled;
                Ok(serde_json::json!({
                    "seq": final_order.seq,
                    "order_id": order.id.as_str(),
                    "kind": kind.as_str(),
                    "customer": order.customer.as_ref().map(|customer| customer.as_str()),
                    "reason": order.reason.as_deref().filter(|_| cancelled),
                    "detail": order.detail.as_deref().filter(|_| cancelled),
                    "items": LineItem::to_json(&order.items),
                    "decided_at": final_order.at.millis(),
                }))
            })
            .collect::<Result<Vec<_>, NotificationError>>()?;
        let recorded = self.run(
            "record notifications",
            RECORD,
            &[
                SqlValue::Text(serde_json::Value::from(batch).to_string()),
                SqlValue::Integer(saturating_i64(now.millis())),
            ],
        )?;
        Ok(recorded.rows.len() as u32)
    }

    fn run(
        &self,
        operation: &'static str,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<orderly_sql::SqlRows, NotificationError> {
        NOTIFICATION_SCHEMA
            .run(self.sql, statement, parameters)
            .map_err(|source| NotificationError::Sql { operation, source })
    }
}

fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> NotificationError {
    NotificationError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

fn read_notification(row: &[orderly_sql::SqlValue]) -> Result<Notification, NotificationError> {
    let mut reader = RowReader::new(row);
    let read = |reader: &mut RowReader<'_>| -> Result<Notification, String> {
        let seq = reader.count("seq")?;
        let order_id = reader.text("order_id")?;
        let kind = match reader.text("kind")?.as_str() {
            "confirmed" => NotificationKind::Confirmed,
            "cancelled" => NotificationKind::Cancelled,
            other => {
                return Err(format!(
                    "kind should be confirmed or cancelled, found {other:?}"
                ));
            }
        };
        Ok(Notification {
            seq,
            order_id,
            kind,
            customer: reader.optional_text("customer")?,
            reason: reader.optional_text("reason")?,
            detail: reader.optional_text("detail")?,
            items: LineItem::list_from_json(&reader.text("items")?)
                .map_err(|error| format!("items: {error}"))?,
            decided_at: reader.count("decided_at")?,
            created_at: reader.count("created_at")?,
        })
    };
    read(&mut reader).map_err(|detail| corrupt("a notification row", detail))
}

#[cfg(test)]
mod tests;
