//! What the services show, parsed: an order's status, its payment, reservation and shipment,
//! and the stock, read through a [`Reader`] into one [`Snapshot`].

use futures::StreamExt as _;
use serde_json::Value;
use std::future::Future;

/// The statuses an order ends in.
pub const FINAL_STATUSES: [&str; 4] = ["confirmed", "cancelled", "rejected", "failed"];

/// Whether `status` is one an order ends in.
pub fn is_final(status: &str) -> bool {
    FINAL_STATUSES.contains(&status)
}

/// How the customer's cancellation of an order was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRequest {
    /// Nobody asked to cancel it.
    NotAsked,
    /// Asked, and accepted (202): the order is cancelled or being undone.
    Accepted,
    /// Asked, and refused (409): the order was shipped or decided already.
    Refused,
}

/// `GET /orders/{id}`, the parts the audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The order id.
    pub id: String,
    /// Its status (`processing`, ..., `confirmed`, `cancelled`, `rejected`, `failed`).
    pub status: String,
    /// Why it was rejected, failed or cancelled.
    pub reason: Option<String>,
}

/// `GET /internal/payment/payments/{id}`, the parts the audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    /// `authorized`, `declined`, `captured`, `voided`, `refunded` or `cancelled`.
    pub state: String,
    /// The amount authorized (none for a tombstone).
    pub amount_cents: Option<u64>,
    /// The cents charged.
    pub captured_cents: u64,
    /// The cents given back.
    pub refunded_cents: u64,
}

impl PaymentView {
    /// What the order is charged now.
    pub fn charged_cents(&self) -> u64 {
        self.captured_cents.saturating_sub(self.refunded_cents)
    }
}

/// `GET /internal/inventory/reservations/{id}`, the parts the audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationView {
    /// `reserved`, `released` or `committed`.
    pub state: String,
    /// (SKU, units) held or once held.
    pub lines: Vec<(String, u64)>,
}

/// `GET /internal/shipping/shipments/{id}`, the parts the audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentView {
    /// `label_created`, `in_transit`, `delivered` or `cancelled`.
    pub status: String,
}

/// One SKU of `GET /internal/inventory/stock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockView {
    /// The product.
    pub sku: String,
    /// Units on the shelf.
    pub available: u64,
    /// Units held by reservations.
    pub reserved: u64,
    /// Units shipped.
    pub shipped: u64,
    /// Initial stock plus restocks, as the inventory counts it.
    pub received: u64,
    /// The catalogue's initial stock.
    pub initial: Option<u64>,
}

/// One order and everything the services hold about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    /// The order.
    pub order: OrderView,
    /// Whether the customer cancelled it, and the answer.
    pub cancel: CancelRequest,
    /// Its payment, if the payment service has one.
    pub payment: Option<PaymentView>,
    /// Its reservation, if the inventory has one.
    pub reservation: Option<ReservationView>,
    /// Its shipment, if the shipping service has one.
    pub shipment: Option<ShipmentView>,
}

/// Everything the audit checks, read at one point after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every order of the run.
    pub orders: Vec<OrderRecord>,
    /// Every SKU's stock.
    pub stock: Vec<StockView>,
    /// Units restocked during the run, by SKU.
    pub restocked: Vec<(String, u64)>,
}

fn text(value: &Value, name: &str) -> Result<String, String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no text `{name}` in {value}"))
}

fn count(value: &Value, name: &str) -> Result<u64, String> {
    value
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no count `{name}` in {value}"))
}

impl OrderView {
    /// Parses `GET /orders/{id}`'s body.
    pub fn parse(value: &Value) -> Result<Self, String> {
        Ok(Self {
            id: text(value, "id")?,
            status: text(value, "status")?,
            reason: value
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

impl PaymentView {
    /// Parses `GET /payments/{id}`'s body.
    pub fn parse(value: &Value) -> Result<Self, String> {
        Ok(Self {
            state: text(value, "state")?,
            amount_cents: value.get("amount_cents").and_then(Value::as_u64),
            captured_cents: count(value, "captured_cents")?,
            refunded_cents: count(value, "refunded_cents")?,
        })
    }
}

impl ReservationView {
    /// Parses `GET /reservations/{id}`'s body.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let lines = value
            .get("lines")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("no `lines` in {value}"))?
            .iter()
            .map(|line| Ok((text(line, "sku")?, count(line, "quantity")?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            state: text(value, "state")?,
            lines,
        })
    }
}

impl ShipmentView {
    /// Parses `GET /shipments/{id}`'s body.
    pub fn parse(value: &Value) -> Result<Self, String> {
        Ok(Self {
            status: text(value, "status")?,
        })
    }
}

impl StockView {
    /// Parses `GET /stock`'s body: every SKU.
    pub fn parse_all(value: &Value) -> Result<Vec<Self>, String> {
        value
            .get("stock")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("no `stock` list in {value}"))?
            .iter()
            .map(|level| {
                Ok(Self {
                    sku: text(level, "sku")?,
                    available: count(level, "available")?,
                    reserved: count(level, "reserved")?,
                    shipped: count(level, "shipped")?,
                    received: count(level, "received")?,
                    initial: level.get("initial").and_then(Value::as_u64),
                })
            })
            .collect()
    }
}

/// Reads one app over HTTP: `GET path` on it, the status and body, or why there is no answer.
pub trait Reader {
    /// `GET path`.
    fn get(&self, path: &str) -> impl Future<Output = Result<(u16, Vec<u8>), String>>;
}

/// How many reads [`snapshot`] keeps in flight.
const READS_IN_FLIGHT: usize = 16;

/// `GET path` as JSON: `None` on 404, an error on any other non-2xx answer.
pub async fn get_json(reader: &impl Reader, path: &str) -> Result<Option<Value>, String> {
    let (status, body) = reader.get(path).await?;
    match status {
        404 => Ok(None),
        200..=299 => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|error| format!("GET {path}: not JSON ({error})")),
        _ => Err(format!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

async fn record(
    reader: &impl Reader,
    id: &str,
    cancel: CancelRequest,
) -> Result<OrderRecord, String> {
    let order = get_json(reader, &format!("/orders/{id}"))
        .await?
        .ok_or_else(|| format!("order {id} does not exist"))?;
    let payment = get_json(reader, &format!("/internal/payment/payments/{id}")).await?;
    let reservation = get_json(reader, &format!("/internal/inventory/reservations/{id}")).await?;
    let shipment = get_json(reader, &format!("/internal/shipping/shipments/{id}")).await?;
    Ok(OrderRecord {
        order: OrderView::parse(&order)?,
        cancel,
        payment: payment.as_ref().map(PaymentView::parse).transpose()?,
        reservation: reservation
            .as_ref()
            .map(ReservationView::parse)
            .transpose()?,
        shipment: shipment.as_ref().map(ShipmentView::parse).transpose()?,
    })
}

/// Reads every order in `orders` (with how its cancellation was answered), its payment,
/// reservation and shipment, and the stock; `restocked` is what the run restocked.
pub async fn snapshot(
    reader: &impl Reader,
    orders: &[(String, CancelRequest)],
    restocked: Vec<(String, u64)>,
) -> Result<Snapshot, String> {
    let records: Vec<Result<OrderRecord, String>> = futures::stream::iter(orders)
        .map(|(id, cancel)| record(reader, id, *cancel))
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    let orders = records.into_iter().collect::<Result<_, _>>()?;
    let stock = get_json(reader, "/internal/inventory/stock")
        .await?
        .ok_or("GET /internal/inventory/stock: 404")?;
    Ok(Snapshot {
        orders,
        stock: StockView::parse_all(&stock)?,
        restocked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn the_services_bodies_parse() {
        let order = OrderView::parse(&json!({"id": "o-1", "status": "cancelled",
            "reason": "reserve_refused", "items": []}))
        .unwrap();
        assert_eq!(order.reason.as_deref(), Some("reserve_refused"));
        let payment = PaymentView::parse(&json!({"state": "refunded", "amount_cents": 500,
            "captured_cents": 500, "refunded_cents": 500, "charged_cents": 0}))
        .unwrap();
        assert_eq!(payment.charged_cents(), 0);
        let tombstone = PaymentView::parse(&json!({"state": "cancelled", "amount_cents": null,
            "captured_cents": 0, "refunded_cents": 0}))
        .unwrap();
        assert_eq!(tombstone.amount_cents, None);
        let reservation = ReservationView::parse(&json!({"order_id": "o-1", "state": "reserved",
            "lines": [{"sku": "Pizza", "quantity": 3}]}))
        .unwrap();
        assert_eq!(reservation.lines, [("Pizza".to_owned(), 3)]);
        let stock = StockView::parse_all(&json!({"stock": [{"sku": "Pizza", "available": 7,
            "reserved": 3, "shipped": 0, "received": 10, "initial": 10}]}))
        .unwrap();
        assert_eq!(stock[0].initial, Some(10));
        assert!(OrderView::parse(&json!({"id": "o-1"})).is_err());
        assert!(StockView::parse_all(&json!({"levels": []})).is_err());
    }

    /// Answers from a table of paths; anything else is a 404.
    struct Table(HashMap<String, Value>);

    impl Reader for Table {
        async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
            Ok(match self.0.get(path) {
                Some(Value::Null) => (503, b"busy".to_vec()),
                Some(body) => (200, body.to_string().into_bytes()),
                None => (404, Vec::new()),
            })
        }
    }

    fn table(entries: &[(&str, Value)]) -> Table {
        Table(
            entries
                .iter()
                .map(|(path, body)| ((*path).to_owned(), body.clone()))
                .collect(),
        )
    }

    #[test]
    fn a_snapshot_reads_each_order_and_what_the_services_hold() {
        let stock = json!({"stock": [{"sku": "Pizza", "available": 10, "reserved": 0,
            "shipped": 0, "received": 10, "initial": 10}]});
        let reader = table(&[
            ("/orders/a", json!({"id": "a", "status": "rejected"})),
            ("/orders/b", json!({"id": "b", "status": "cancelled"})),
            (
                "/internal/payment/payments/b",
                json!({"state": "cancelled", "captured_cents": 0, "refunded_cents": 0}),
            ),
            ("/internal/inventory/stock", stock),
        ]);
        let orders = [
            ("a".to_owned(), CancelRequest::NotAsked),
            ("b".to_owned(), CancelRequest::Accepted),
        ];
        let snapshot = futures::executor::block_on(snapshot(&reader, &orders, Vec::new())).unwrap();
        assert_eq!(snapshot.orders.len(), 2);
        assert_eq!(snapshot.orders[0].payment, None);
        assert_eq!(snapshot.orders[1].cancel, CancelRequest::Accepted);
        assert_eq!(
            snapshot.orders[1].payment.as_ref().unwrap().state,
            "cancelled"
        );
        assert_eq!(snapshot.stock.len(), 1);

        let missing = [("c".to_owned(), CancelRequest::NotAsked)];
        let error = futures::executor::block_on(super::snapshot(&reader, &missing, Vec::new()))
            .unwrap_err();
        assert!(error.contains("order c does not exist"), "{error}");

        let failing = table(&[("/orders/a", Value::Null)]);
        let error = futures::executor::block_on(super::snapshot(&failing, &orders, Vec::new()))
            .unwrap_err();
        assert!(error.contains("503 busy"), "{error}");
    }
}
