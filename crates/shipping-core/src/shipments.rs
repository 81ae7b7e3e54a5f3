//! Each order's shipment and the operations on it, each one statement.

use crate::label::render_label;
use crate::{Address, ShipTo, Shipping, ShippingError, TrackingNumber};
use orderly_sql::{RowReader, Sql, SqlValue};
use orders_core::{CustomerName, LineItem, OrderId, Timestamp};
use std::fmt;

/// Where a shipment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShipmentStatus {
    /// Its label is printed; the carrier has not collected it.
    LabelCreated,
    /// The carrier has it.
    InTransit,
    /// It arrived.
    Delivered,
    /// It was cancelled before it left.
    Cancelled,
}

impl ShipmentStatus {
    const ALL: [ShipmentStatus; 4] = [
        Self::LabelCreated,
        Self::InTransit,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LabelCreated => "label_created",
            Self::InTransit => "in_transit",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for ShipmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A carrier's news about a shipment: the statuses it moves through after its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusUpdate {
    /// Collected: `label_created` → `in_transit`.
    InTransit,
    /// Arrived: `in_transit` → `delivered`.
    Delivered,
}

impl StatusUpdate {
    /// The status it moves to.
    pub fn status(self) -> ShipmentStatus {
        match self {
            Self::InTransit => ShipmentStatus::InTransit,
            Self::Delivered => ShipmentStatus::Delivered,
        }
    }

    /// The only status it moves from.
    fn previous(self) -> ShipmentStatus {
        match self {
            Self::InTransit => ShipmentStatus::LabelCreated,
            Self::Delivered => ShipmentStatus::InTransit,
        }
    }
}

/// An order's shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// The order.
    pub order_id: OrderId,
    /// Where it is.
    pub status: ShipmentStatus,
    /// Its tracking number.
    pub tracking_number: TrackingNumber,
    /// Its label, as printed.
    pub label: String,
    /// What it carries.
    pub lines: Vec<LineItem>,
    /// Where it goes.
    pub ship_to: ShipTo,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its status last changed (its creation, at first).
    pub updated_at: Timestamp,
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The shipment is cancelled (now, or before).
    Cancelled(Shipment),
    /// The order had no shipment: the cancellation is recorded, so none will be created.
    NothingShipped,
}

/// The columns [`read_row`] expects, in order.
macro_rules! columns {
    () => {
        "order_id, status, tracking_number, label, lines, recipient, address, created_at, \
        updated_at"
    };
}

/// Creates order `?1`'s shipment (`?2` tracking number, `?3` label, `?4` lines, `?5`
/// recipient, `?6` address, `?7` now), or returns what the order has when it has a row.
const CREATE: &str = concat!(
    "INSERT INTO shipping_shipments
        (order_id, status, tracking_number, label, lines, recipient, address, created_at,
            updated_at)
    VALUES (?1, 'label_created', ?2, ?3, ?4, ?5, ?6, ?7, ?7)
    ON CONFLICT (order_id) DO UPDATE SET status = status
    RETURNING ",
    columns!()
);

/// Moves order `?1`'s shipment from `?2` to `?3` at `?4`, if it is at `?2`; returns it as it
/// then is (tombstones are not shipments: they are left out).
const UPDATE_STATUS: &str = concat!(
    "UPDATE shipping_shipments SET
        status = CASE WHEN status = ?2 THEN ?3 ELSE status END,
        updated_at = CASE WHEN status = ?2 THEN ?4 ELSE updated_at END
    WHERE order_id = ?1 AND lines IS NOT NULL
    RETURNING ",
    columns!()
);

/// Cancels order `?1`'s shipment at `?2` if its label is all there is, or records a tombstone
/// when it has none; returns its row as it then is.
const CANCEL: &str = concat!(
    "INSERT INTO shipping_shipments (order_id, status, updated_at) VALUES (?1, 'cancelled', ?2)
    ON CONFLICT (order_id) DO UPDATE SET
        status = CASE status WHEN 'label_created' THEN 'cancelled' ELSE status END,
        updated_at = CASE status WHEN 'label_created' THEN excluded.updated_at
            ELSE updated_at END
    RETURNING ",
    columns!()
);

/// An order's row: its shipment, or a tombstone.
enum Row {
    Shipment(Shipment),
    Tombstone,
}

impl<S: Sql> Shipping<S> {
    /// Creates the order's shipment at `now`, in one statement: its tracking number (from the
    /// order id and the seed) and its label. Idempotent: when the order has a shipment with
    /// the same lines (in the same order) and destination, returns it as it is.
    ///
    /// Errors: [`ShippingError::InvalidLines`], [`ShippingError::Conflict`] (the order's
    /// shipment differs), [`ShippingError::Cancelled`] (it was cancelled, perhaps before this
    /// creation arrived: the compensation wins).
    pub fn create_shipment(
        &self,
        order_id: &OrderId,
        lines: &[LineItem],
        ship_to: &ShipTo,
        now: Timestamp,
    ) -> Result<Shipment, ShippingError> {
        if lines.is_empty() || lines.len() > LineItem::MAX_PER_ORDER {
            return Err(ShippingError::InvalidLines { lines: lines.len() });
        }
        let tracking_number = TrackingNumber::derive(self.seed, order_id);
        let label = render_label(&tracking_number, order_id, lines, ship_to, now);
        let found = self.run(
            "create a shipment",
            CREATE,
            &[
                SqlValue::text(order_id.as_str()),
                SqlValue::text(tracking_number.as_str()),
                SqlValue::Text(label),
                SqlValue::Text(LineItem::to_json(lines)),
                SqlValue::optional_text(ship_to.recipient.as_ref().map(CustomerName::as_str)),
                SqlValue::optional_text(ship_to.address.as_ref().map(Address::as_str)),
                SqlValue::unsigned(now.millis()),
            ],
        )?;
        match read_only_row(order_id, &found.rows)? {
            Some(Row::Shipment(shipment)) if shipment.status == ShipmentStatus::Cancelled => {
                Err(ShippingError::Cancelled(order_id.clone()))
            }
            Some(Row::Shipment(shipment))
                if shipment.lines == lines && shipment.ship_to == *ship_to =>
            {
                Ok(shipment)
            }
            Some(Row::Shipment(_)) => Err(ShippingError::Conflict(order_id.clone())),
            Some(Row::Tombstone) => Err(ShippingError::Cancelled(order_id.clone())),
            None => Err(corrupt(order_id, "creating returned no row".into())),
        }
    }

    /// Records the carrier's news at `now`, in one statement: `label_created` → `in_transit`
    /// → `delivered`, one step at a time. Idempotent: a shipment already there is returned
    /// as it is. Anything else (delivering a parcel never collected, collecting a cancelled
    /// one) is [`ShippingError::IllegalTransition`].
    pub fn update_status(
        &self,
        order_id: &OrderId,
        update: StatusUpdate,
        now: Timestamp,
    ) -> Result<Shipment, ShippingError> {
        let to = update.status();
        let found = self.run(
            "update a shipment's status",
            UPDATE_STATUS,
            &[
                SqlValue::text(order_id.as_str()),
                SqlValue::text(update.previous().as_str()),
                SqlValue::text(to.as_str()),
                SqlValue::unsigned(now.millis()),
            ],
        )?;
        match read_only_row(order_id, &found.rows)? {
            Some(Row::Shipment(shipment)) if shipment.status == to => Ok(shipment),
            Some(Row::Shipment(shipment)) => Err(ShippingError::IllegalTransition {
                order_id: order_id.clone(),
                from: shipment.status,
                to,
            }),
            Some(Row::Tombstone) | None => Err(ShippingError::UnknownOrder(order_id.clone())),
        }
    }

    /// Cancels the order's shipment at `now`, in one statement, while its label is all there
    /// is; for an order with no shipment, records the cancellation (a tombstone) so a late
    /// creation is refused. Idempotent. Once the parcel is in transit or delivered:
    /// [`ShippingError::TooLateToCancel`].
    pub fn cancel(
        &self,
        order_id: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome, ShippingError> {
        let found = self.run(
            "cancel a shipment",
            CANCEL,
            &[
                SqlValue::text(order_id.as_str()),
                SqlValue::unsigned(now.millis()),
            ],
        )?;
        match read_only_row(order_id, &found.rows)? {
            Some(Row::Tombstone) => Ok(CancelOutcome::NothingShipped),
            Some(Row::Shipment(shipment)) if shipment.status == ShipmentStatus::Cancelled => {
                Ok(CancelOutcome::Cancelled(shipment))
            }
            Some(Row::Shipment(shipment)) => Err(ShippingError::TooLateToCancel {
                order_id: order_id.clone(),
                status: shipment.status,
            }),
            None => Err(corrupt(order_id, "cancelling returned no row".into())),
        }
    }

    /// The order's shipment, if it has one (a cancellation recorded before any shipment is
    /// not one).
    pub fn get(&self, order_id: &OrderId) -> Result<Option<Shipment>, ShippingError> {
        let found = self.run(
            "read a shipment",
            concat!(
                "SELECT ",
                columns!(),
                " FROM shipping_shipments WHERE order_id = ?1"
            ),
            &[SqlValue::text(order_id.as_str())],
        )?;
        Ok(match read_only_row(order_id, &found.rows)? {
            Some(Row::Shipment(shipment)) => Some(shipment),
            Some(Row::Tombstone) | None => None,
        })
    }
}

fn corrupt(order_id: &OrderId, detail: String) -> ShippingError {
    ShippingError::Corrupt {
        what: format!("the shipment of order {order_id}"),
        detail,
    }
}

/// The order's row from a statement's rows (at most one: `order_id` is the key).
fn read_only_row(order_id: &OrderId, rows: &[Vec<SqlValue>]) -> Result<Option<Row>, ShippingError> {
    rows.first().map(|row| read_row(order_id, row)).transpose()
}

/// A row in `columns!()` order.
fn read_row(order_id: &OrderId, row: &[SqlValue]) -> Result<Row, ShippingError> {
    let corrupt = |detail| corrupt(order_id, detail);
    let mut reader = RowReader::new(row);
    let stored_order = reader.text("order_id").map_err(corrupt)?;
    if stored_order != order_id.as_str() {
        return Err(corrupt(format!("it belongs to order {stored_order:?}")));
    }
    let status = reader.text("status").map_err(corrupt)?;
    let status = ShipmentStatus::parse(&status)
        .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
    let tracking_number = reader.optional_text("tracking_number").map_err(corrupt)?;
    let label = reader.optional_text("label").map_err(corrupt)?;
    let lines = reader.optional_text("lines").map_err(corrupt)?;
    let recipient = reader.optional_text("recipient").map_err(corrupt)?;
    let address = reader.optional_text("address").map_err(corrupt)?;
    let created_at = reader
        .optional_count::<u64>("created_at")
        .map_err(corrupt)?;
    let updated_at = reader.count::<u64>("updated_at").map_err(corrupt)?;
    let (Some(tracking_number), Some(label), Some(lines), Some(created_at)) =
        (tracking_number, label, lines, created_at)
    else {
        return Ok(Row::Tombstone);
    };
    Ok(Row::Shipment(Shipment {
        order_id: order_id.clone(),
        status,
        tracking_number: TrackingNumber::parse(&tracking_number)
            .ok_or_else(|| corrupt(format!("tracking number {tracking_number:?}")))?,
        label,
        lines: LineItem::list_from_json(&lines)
            .map_err(|error| corrupt(format!("its lines: {error}")))?,
        ship_to: ShipTo {
            recipient: recipient
                .map(|text| CustomerName::new(&text))
                .transpose()
                .map_err(|error| corrupt(format!("its recipient: {error}")))?,
            address: address
                .map(|text| Address::new(&text))
                .transpose()
                .map_err(|error| corrupt(format!("its address: {error}")))?,
        },
        created_at: Timestamp(created_at),
        updated_at: Timestamp(updated_at),
    }))
}
