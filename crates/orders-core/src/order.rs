//! Orders: what a client may submit, what is stored, and the statuses an order moves through.

use crate::text::{TextError, clean};
use crate::{OrderId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// Why a submitted order was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The body is not a JSON object.
    #[error("the body is not a valid order: {0}")]
    Malformed(String),
    /// A member is missing, unknown, or has a bad value; `field` is its path
    /// (`quantity`, `items[2].product`).
    #[error("{field}: {reason}")]
    Invalid {
        /// The JSON member's path.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl OrderError {
    /// The JSON member at fault, if a single one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Malformed(_) => None,
            Self::Invalid { field, .. } => Some(field),
        }
    }

    fn invalid(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// How many units of one product are ordered: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity one line may carry.
    pub const MAX: u32 = 1000;

    /// Checks a quantity.
    pub fn new(units: i64) -> Result<Self, OrderError> {
        u32::try_from(units)
            .ok()
            .filter(|units| (1..=Self::MAX).contains(units))
            .map(Self)
            .ok_or_else(|| {
                OrderError::invalid(
                    "quantity",
                    format!(
                        "must be a whole number from 1 to {}, got {units}",
                        Self::MAX
                    ),
                )
            })
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A product name: 1 to 100 characters after trimming, nothing hidden (see [`TextError`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ProductName(String);

impl ProductName {
    /// The longest product name accepted, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Checks and trims a product name.
    pub fn new(text: &str) -> Result<Self, TextError> {
        clean(text, Self::MAX_CHARS).map(Self)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who ordered: a name or an account reference, 1 to 100 characters after trimming, nothing
/// hidden.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CustomerName(String);

impl CustomerName {
    /// The longest customer accepted, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Checks and trims a customer.
    pub fn new(text: &str) -> Result<Self, TextError> {
        clean(text, Self::MAX_CHARS).map(Self)
    }

    /// The customer as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line of an order: a product and how many.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct LineItem {
    /// What is ordered.
    pub product: ProductName,
    /// How many.
    pub quantity: Quantity,
}

impl LineItem {
    /// The most lines one order may carry.
    pub const MAX_PER_ORDER: usize = 50;

    /// Parses the stored form of an order's lines (the JSON array [`LineItem::to_json`] writes).
    pub fn list_from_json(text: &str) -> Result<Vec<LineItem>, OrderError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| OrderError::Malformed(e.to_string()))?;
        parse_items(value, "items", "product")
    }

    /// Parses the lines the services take (`"lines": [{"sku", "quantity"}]`, as the fulfilment
    /// saga sends an order's lines): 1 to [`LineItem::MAX_PER_ORDER`] of them, errors naming
    /// `lines[i].sku` or `lines[i].quantity`. Unknown members are refused.
    pub fn list_from_sku_lines(value: Value) -> Result<Vec<LineItem>, OrderError> {
        parse_items(value, "lines", "sku")
    }

    /// Lines as a JSON array of `{"product", "quantity"}`.
    pub fn to_json(items: &[LineItem]) -> String {
        serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
    }
}

/// Where an order is in its life: validation (processing → validated, rejected or failed),
/// then fulfilment (validated → reserved → paid → shipped → confirmed, or cancelling →
/// cancelled when a step is refused or the customer cancels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted and stored; validation has not finished (it may be waiting for the validator).
    Processing,
    /// The validator accepted it; fulfilment has not taken stock yet.
    Validated,
    /// Stock is reserved for it.
    Reserved,
    /// Its payment is authorized.
    Paid,
    /// Its shipment is created (the charge is captured next).
    Shipped,
    /// Charged, shipped and committed: done.
    Confirmed,
    /// A step was refused or the customer cancelled: what was done is being undone.
    Cancelling,
    /// Everything done for it was undone (the order carries the reason).
    Cancelled,
    /// The validator refused it (the order carries the reason).
    Rejected,
    /// It could not be validated: the validator refused the request itself, or the retry
    /// deadline passed (the order carries the reason).
    Failed,
}

/// Why text is not a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status {0:?}; expected processing, validated, reserved, paid, shipped, confirmed, \
     cancelling, cancelled, rejected or failed"
)]
pub struct StatusError(pub String);

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 10] = [
        Self::Processing,
        Self::Validated,
        Self::Reserved,
        Self::Paid,
        Self::Shipped,
        Self::Confirmed,
        Self::Cancelling,
        Self::Cancelled,
        Self::Rejected,
        Self::Failed,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Validated => "validated",
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Confirmed => "confirmed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    /// The status as the MediSupply classroom seed spells it (`Processing`, `Validated`, ...).
    pub fn seed_label(self) -> &'static str {
        match self {
            Self::Processing => "Processing",
            Self::Validated => "Validated",
            Self::Reserved => "Reserved",
            Self::Paid => "Paid",
            Self::Shipped => "Shipped",
            Self::Confirmed => "Confirmed",
            Self::Cancelling => "Cancelling",
            Self::Cancelled => "Cancelled",
            Self::Rejected => "Rejected",
            Self::Failed => "Failed",
        }
    }

    /// Whether validation is over: the order left `processing`.
    pub fn is_validated_or_refused(self) -> bool {
        self != Self::Processing
    }

    /// Whether the order is done (confirmed, cancelled, rejected or failed): it never changes
    /// again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Cancelled | Self::Rejected | Self::Failed
        )
    }
}

impl FromStr for OrderStatus {
    type Err = StatusError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| StatusError(text.to_owned()))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new order as a client submits it: a JSON object with line items
/// (`{"items": [{"product", "quantity"}, ...]}`) or, as the classroom seeds send it, one
/// `product` and `quantity`; optionally the client's own `order_id` and a `customer`.
/// Unknown members are refused, so a misspelt field is never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The client's id for the order, if it chose one.
    pub order_id: Option<OrderId>,
    /// Who ordered, if given.
    pub customer: Option<CustomerName>,
    /// What is ordered: 1 to 50 lines.
    pub items: Vec<LineItem>,
}

/// The members a new order may have.
const ORDER_FIELDS: [&str; 5] = ["order_id", "customer", "items", "product", "quantity"];

impl NewOrder {
    /// Parses a JSON request body.
    pub fn parse(body: &[u8]) -> Result<Self, OrderError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| OrderError::Malformed(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(OrderError::Malformed(format!(
                "expected a JSON object, got {}",
                kind(&value)
            )));
        };
        if let Some(unknown) = object.keys().find(|k| !ORDER_FIELDS.contains(&k.as_str())) {
            return Err(OrderError::invalid(
                unknown.as_str(),
                "is not a known field (expected order_id, customer, items, or product and quantity)",
            ));
        }
        let order_id = match present(object.remove("order_id")) {
            None => None,
            Some(Value::String(text)) => {
                Some(OrderId::parse(&text).map_err(|e| OrderError::invalid("order_id", e))?)
            }
            Some(_) => return Err(OrderError::invalid("order_id", "must be a string")),
        };
        let customer = match present(object.remove("customer")) {
            None => None,
            Some(Value::String(text)) => {
                Some(CustomerName::new(&text).map_err(|e| OrderError::invalid("customer", e))?)
            }
            Some(_) => return Err(OrderError::invalid("customer", "must be a string")),
        };
        let items = match (
            present(object.remove("items")),
            present(object.remove("product")),
            present(object.remove("quantity")),
        ) {
            (Some(items), None, None) => parse_items(items, "items", "product")?,
            (None, product, quantity) if product.is_some() || quantity.is_some() => {
                vec![parse_line(product, quantity, "", "product")?]
            }
            (None, _, _) => return Err(OrderError::invalid("items", "is required")),
            (Some(_), _, _) => {
                return Err(OrderError::invalid(
                    "items",
                    "give either items or product and quantity, not both",
                ));
            }
        };
        Ok(Self {
            order_id,
            customer,
            items,
        })
    }

    /// What identifies this request's content for idempotency: its canonical JSON (trimmed
    /// names, lines in order; the single-product form and the equivalent one-line `items`
    /// form give the same fingerprint).
    pub fn fingerprint(&self) -> String {
        serde_json::json!({
            "order_id": self.order_id,
            "customer": self.customer,
            "items": self.items,
        })
        .to_string()
    }

    /// The stored order this becomes, accepted at `now`: it keeps the client's id, or gets one
    /// generated from `now` and `entropy`.
    pub fn accept(self, now: Timestamp, entropy: [u8; 10]) -> Order {
        Order {
            id: self
                .order_id
                .unwrap_or_else(|| OrderId::generate(now, entropy)),
            customer: self.customer,
            items: self.items,
            status: OrderStatus::Processing,
            reason: None,
            detail: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// `None` for an absent member or JSON `null`.
fn present(value: Option<Value>) -> Option<Value> {
    value.filter(|v| !v.is_null())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Lines as an array (member `field`) of `{<product>, "quantity"}` objects, `product` naming
/// the product's member.
fn parse_items(value: Value, field: &str, product: &str) -> Result<Vec<LineItem>, OrderError> {
    let shape = format!("{{\"{product}\", \"quantity\"}}");
    let Value::Array(lines) = value else {
        return Err(OrderError::invalid(
            field,
            format!("must be an array of {shape}"),
        ));
    };
    if lines.is_empty() || lines.len() > LineItem::MAX_PER_ORDER {
        return Err(OrderError::invalid(
            field,
            format!(
                "must hold 1 to {} lines, got {}",
                LineItem::MAX_PER_ORDER,
                lines.len()
            ),
        ));
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let path = format!("{field}[{index}]");
            let Value::Object(mut line) = line else {
                return Err(OrderError::invalid(
                    path,
                    format!("must be an object {shape}"),
                ));
            };
            if let Some(unknown) = line.keys().find(|k| *k != product && *k != "quantity") {
                return Err(OrderError::invalid(
                    format!("{path}.{unknown}"),
                    format!("is not a known field (expected {product} and quantity)"),
                ));
            }
            parse_line(
                present(line.remove(product)),
                present(line.remove("quantity")),
                &format!("{path}."),
                product,
            )
        })
        .collect()
}

/// One line from its product and `quantity` members; `prefix` goes before the field names
/// in errors, and `product_field` names the product's member (`product`, or `sku`).
fn parse_line(
    product: Option<Value>,
    quantity: Option<Value>,
    prefix: &str,
    product_field: &str,
) -> Result<LineItem, OrderError> {
    let field = |name: &str| format!("{prefix}{name}");
    let product = match product {
        Some(Value::String(text)) => {
            ProductName::new(&text).map_err(|e| OrderError::invalid(field(product_field), e))?
        }
        None => return Err(OrderError::invalid(field(product_field), "is required")),
        Some(_) => {
            return Err(OrderError::invalid(
                field(product_field),
                "must be a string",
            ));
        }
    };
    let whole = || OrderError::invalid(field("quantity"), "must be a whole number");
    let quantity = match quantity {
        Some(Value::Number(number)) => {
            let units = number.as_i64().ok_or_else(whole)?;
            Quantity::new(units).map_err(|e| match e {
                OrderError::Invalid { reason, .. } => {
                    OrderError::invalid(field("quantity"), reason)
                }
                other => other,
            })?
        }
        None => return Err(OrderError::invalid(field("quantity"), "is required")),
        Some(_) => return Err(whole()),
    };
    Ok(LineItem { product, quantity })
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// Who ordered, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerName>,
    /// What is ordered.
    pub items: Vec<LineItem>,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Why it was rejected or failed: a short machine-readable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation of `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl Order {
    /// The total number of units over all lines.
    pub fn total_units(&self) -> u32 {
        self.items.iter().map(|item| item.quantity.get()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> OrderError {
        NewOrder::parse(body.as_bytes()).unwrap_err()
    }

    fn field(body: &str) -> String {
        error(body).field().unwrap_or("<none>").to_owned()
    }

    #[test]
    fn parses_the_seeds_single_product_form() {
        let order = NewOrder::parse(
            br#"{"order_id": "test-001", "product": " Medicine A ", "quantity": 10}"#,
        )
        .unwrap();
        assert_eq!(order.order_id.unwrap().as_str(), "test-001");
        assert_eq!(order.items.len(), 1);
        assert_eq!(order.items[0].product.as_str(), "Medicine A");
        assert_eq!(order.items[0].quantity.get(), 10);
        assert_eq!(order.customer, None);
    }

    #[test]
    fn parses_line_items_and_a_customer() {
        let order = NewOrder::parse(
            br#"{"customer": "ward 7", "items": [{"product": "Medicine A", "quantity": 2}, {"product": "Vaccine X", "quantity": 1}]}"#,
        )
        .unwrap();
        assert_eq!(order.customer.unwrap().as_str(), "ward 7");
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.items[1].product.as_str(), "Vaccine X");
    }

    #[test]
    fn parses_the_services_sku_lines() {
        let lines = LineItem::list_from_sku_lines(serde_json::json!([
            {"sku": " Pizza ", "quantity": 2},
            {"sku": "Taco", "quantity": 1000}
        ]))
        .unwrap();
        assert_eq!(
            lines
                .iter()
                .map(|line| (line.product.as_str(), line.quantity.get()))
                .collect::<Vec<_>>(),
            [("Pizza", 2), ("Taco", 1000)]
        );
        let field = |value: serde_json::Value| {
            LineItem::list_from_sku_lines(value)
                .unwrap_err()
                .field()
                .unwrap_or("<none>")
                .to_owned()
        };
        assert_eq!(field(serde_json::json!([])), "lines");
        assert_eq!(field(serde_json::json!({"sku": "Pizza"})), "lines");
        assert_eq!(field(serde_json::json!([{"quantity": 1}])), "lines[0].sku");
        assert_eq!(
            field(
                serde_json::json!([{"sku": "Pizza", "quantity": 1}, {"sku": "Taco", "quantity": 0}])
            ),
            "lines[1].quantity"
        );
        assert_eq!(
            field(serde_json::json!([{"product": "Pizza", "quantity": 1}])),
            "lines[0].product"
        );
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(field(r#"{"quantity": 1}"#), "product");
        assert_eq!(field(r#"{"product": "x"}"#), "quantity");
        assert_eq!(field(r#"{"product": "x", "quantity": 0}"#), "quantity");
        assert_eq!(field(r#"{"product": "x", "quantity": 1001}"#), "quantity");
        assert_eq!(field(r#"{"product": "x", "quantity": 1.5}"#), "quantity");
        assert_eq!(field(r#"{"product": "x", "quantity": "3"}"#), "quantity");
        assert_eq!(field(r#"{"product": "  ", "quantity": 1}"#), "product");
        assert_eq!(field(r#"{"product": 5, "quantity": 1}"#), "product");
        assert_eq!(
            field(r#"{"product": "x", "quantity": 1, "order_id": "a b"}"#),
            "order_id"
        );
        assert_eq!(
            field(r#"{"product": "x", "quantity": 1, "order_id": ".."}"#),
            "order_id"
        );
        assert_eq!(
            field(r#"{"product": "x", "quantity": 1, "extra": true}"#),
            "extra"
        );
        assert_eq!(
            field(r#"{"customer": 3, "product": "x", "quantity": 1}"#),
            "customer"
        );
        assert_eq!(field("{}"), "items");
        assert_eq!(field(r#"{"items": []}"#), "items");
        assert_eq!(field(r#"{"items": {}}"#), "items");
        assert_eq!(
            field(r#"{"items": [{"product": "x", "quantity": 1}], "product": "y"}"#),
            "items"
        );
        assert_eq!(
            field(r#"{"items": [{"product": "x", "quantity": 1}, {"product": "y"}]}"#),
            "items[1].quantity"
        );
        assert_eq!(
            field(r#"{"items": [{"product": "x", "quantity": 1, "colour": "red"}]}"#),
            "items[0].colour"
        );
        assert_eq!(field(r#"{"items": [5]}"#), "items[0]");
        let many = format!(
            r#"{{"items": [{}]}}"#,
            vec![r#"{"product": "x", "quantity": 1}"#; 51].join(",")
        );
        assert_eq!(field(&many), "items");
        assert_eq!(
            field(&format!(
                r#"{{"product": "{}", "quantity": 1}}"#,
                "p".repeat(101)
            )),
            "product"
        );
    }

    #[test]
    fn refuses_hidden_characters_in_names() {
        assert_eq!(
            field("{\"product\": \"Medicine\u{202E}A\", \"quantity\": 1}"),
            "product"
        );
        assert_eq!(
            field("{\"customer\": \"a\u{200B}b\", \"product\": \"x\", \"quantity\": 1}"),
            "customer"
        );
    }

    #[test]
    fn refuses_bodies_that_are_not_objects() {
        for body in [
            "",
            "not json",
            "[]",
            r#"["id", "Medicine A", 5]"#,
            "5",
            "null",
        ] {
            assert!(matches!(error(body), OrderError::Malformed(_)), "{body}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_form_and_spacing_but_not_content() {
        let fingerprint = |body: &str| NewOrder::parse(body.as_bytes()).unwrap().fingerprint();
        let single = fingerprint(r#"{"product": "Medicine A", "quantity": 2}"#);
        assert_eq!(
            single,
            fingerprint(r#"{ "items": [ {"quantity": 2, "product": " Medicine A"} ] }"#)
        );
        assert_ne!(
            single,
            fingerprint(r#"{"product": "Medicine A", "quantity": 3}"#)
        );
        assert_ne!(
            single,
            fingerprint(r#"{"product": "Medicine A", "quantity": 2, "customer": "c"}"#)
        );
    }

    #[test]
    fn accepted_orders_start_processing() {
        let order = NewOrder::parse(br#"{"product": "x", "quantity": 2}"#)
            .unwrap()
            .accept(Timestamp(5), [0; 10]);
        assert_eq!(order.status, OrderStatus::Processing);
        assert!(!order.status.is_final());
        assert_eq!(order.created_at, Timestamp(5));
        assert_eq!(order.total_units(), 2);
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["status"], "processing");
        assert_eq!(json["items"][0]["product"], "x");
        assert_eq!(json["created_at"], "1970-01-01T00:00:00.005Z");
        assert!(json.get("reason").is_none());
        assert!(json.get("customer").is_none());
    }

    #[test]
    fn accepted_orders_keep_the_clients_id_or_get_a_generated_one() {
        let accept = |body: &[u8]| NewOrder::parse(body).unwrap().accept(Timestamp(5), [7; 10]);
        assert_eq!(
            accept(br#"{"order_id": "o1", "product": "x", "quantity": 2}"#).id,
            OrderId::parse("o1").unwrap()
        );
        assert_eq!(
            accept(br#"{"product": "x", "quantity": 2}"#).id,
            OrderId::generate(Timestamp(5), [7; 10])
        );
    }

    #[test]
    fn stored_lines_round_trip() {
        let order = NewOrder::parse(
            br#"{"items": [{"product": "a", "quantity": 1}, {"product": "b", "quantity": 9}]}"#,
        )
        .unwrap();
        let text = LineItem::to_json(&order.items);
        assert_eq!(LineItem::list_from_json(&text).unwrap(), order.items);
        assert_eq!(
            text,
            r#"[{"product":"a","quantity":1},{"product":"b","quantity":9}]"#
        );
        assert!(LineItem::list_from_json("[]").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            assert_eq!(status.seed_label().to_lowercase(), status.as_str());
        }
        assert!("pending".parse::<OrderStatus>().is_err());
        let finals: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                OrderStatus::Confirmed,
                OrderStatus::Cancelled,
                OrderStatus::Rejected,
                OrderStatus::Failed
            ]
        );
        assert!(OrderStatus::Validated.is_validated_or_refused());
        assert!(!OrderStatus::Processing.is_validated_or_refused());
    }
}
