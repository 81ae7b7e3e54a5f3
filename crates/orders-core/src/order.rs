//! Orders: what a client may submit, what is stored, and the statuses an order moves through.

use crate::{OrderId, OrderIdError, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a submitted order was refused; `field` names the offending JSON member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The body is not JSON, or not an object of the expected shape.
    #[error("the body is not a valid order: {0}")]
    Malformed(String),
    /// A field has a bad value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The JSON member.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl OrderError {
    /// The JSON member at fault, if a single one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Malformed(_) => None,
            Self::Invalid { field, .. } => Some(field),
        }
    }
}

/// How many units are ordered: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity one order may carry.
    pub const MAX: u32 = 1000;

    /// Checks a quantity.
    pub fn new(units: i64) -> Result<Self, OrderError> {
        u32::try_from(units)
            .ok()
            .filter(|units| (1..=Self::MAX).contains(units))
            .map(Self)
            .ok_or_else(|| OrderError::Invalid {
                field: "quantity",
                reason: format!(
                    "must be a whole number from 1 to {}, got {units}",
                    Self::MAX
                ),
            })
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A product name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ProductName(String);

impl ProductName {
    /// The longest product name accepted, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Checks and trims a product name.
    pub fn new(text: &str) -> Result<Self, OrderError> {
        let trimmed = text.trim();
        let invalid = |reason: &str| OrderError::Invalid {
            field: "product",
            reason: reason.to_owned(),
        };
        if trimmed.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(invalid("must be at most 100 characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted and stored; validation has not finished.
    Pending,
    /// The validator accepted it.
    Validated,
    /// The validator refused it (the order carries the reason).
    Rejected,
}

/// Why text is not a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; expected pending, validated or rejected")]
pub struct StatusError(pub String);

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 3] = [Self::Pending, Self::Validated, Self::Rejected];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Validated => "validated",
            Self::Rejected => "rejected",
        }
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

/// A new order as a client submits it: `{"product": "...", "quantity": n}`, optionally with
/// the client's own `order_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The client's id for the order, if it chose one.
    pub order_id: Option<OrderId>,
    /// What is ordered.
    pub product: ProductName,
    /// How many.
    pub quantity: Quantity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewOrder {
    order_id: Option<serde_json::Value>,
    product: Option<serde_json::Value>,
    quantity: Option<serde_json::Value>,
}

impl NewOrder {
    /// Parses a JSON request body.
    pub fn parse(body: &[u8]) -> Result<Self, OrderError> {
        let raw: RawNewOrder = serde_json::from_slice(body)
            .map_err(|error| OrderError::Malformed(error.to_string()))?;
        let order_id = match raw.order_id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(OrderId::parse(&text).map_err(
                |error: OrderIdError| OrderError::Invalid {
                    field: "order_id",
                    reason: error.to_string(),
                },
            )?),
            Some(_) => return Err(invalid_type("order_id", "a string")),
        };
        let product = match raw.product {
            Some(serde_json::Value::String(text)) => ProductName::new(&text)?,
            None | Some(serde_json::Value::Null) => return Err(missing("product")),
            Some(_) => return Err(invalid_type("product", "a string")),
        };
        let quantity = match raw.quantity {
            Some(serde_json::Value::Number(number)) => match number.as_i64() {
                Some(units) => Quantity::new(units)?,
                None => return Err(invalid_type("quantity", "a whole number")),
            },
            None | Some(serde_json::Value::Null) => return Err(missing("quantity")),
            Some(_) => return Err(invalid_type("quantity", "a whole number")),
        };
        Ok(Self {
            order_id,
            product,
            quantity,
        })
    }

    /// The stored order this becomes, accepted at `now`: it keeps the client's id, or gets one
    /// generated from `now` and `entropy`.
    pub fn accept(self, now: Timestamp, entropy: [u8; 10]) -> Order {
        Order {
            id: self
                .order_id
                .unwrap_or_else(|| OrderId::generate(now, entropy)),
            product: self.product,
            quantity: self.quantity,
            status: OrderStatus::Pending,
            reason: None,
            created_at: now,
            updated_at: now,
        }
    }
}

fn missing(field: &'static str) -> OrderError {
    OrderError::Invalid {
        field,
        reason: "is required".into(),
    }
}

fn invalid_type(field: &'static str, expected: &str) -> OrderError {
    OrderError::Invalid {
        field,
        reason: format!("must be {expected}"),
    }
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// What is ordered.
    pub product: ProductName,
    /// How many.
    pub quantity: Quantity,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Why it was rejected, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> OrderError {
        NewOrder::parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_a_valid_order() {
        let order = NewOrder::parse(
            br#"{"order_id": "test-001", "product": " Medicine A ", "quantity": 10}"#,
        )
        .unwrap();
        assert_eq!(order.order_id.unwrap().as_str(), "test-001");
        assert_eq!(order.product.as_str(), "Medicine A");
        assert_eq!(order.quantity.get(), 10);
        let without_id = NewOrder::parse(br#"{"product": "x", "quantity": 1}"#).unwrap();
        assert_eq!(without_id.order_id, None);
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(error(r#"{"quantity": 1}"#).field(), Some("product"));
        assert_eq!(error(r#"{"product": "x"}"#).field(), Some("quantity"));
        assert_eq!(
            error(r#"{"product": "x", "quantity": 0}"#).field(),
            Some("quantity")
        );
        assert_eq!(
            error(r#"{"product": "x", "quantity": 1001}"#).field(),
            Some("quantity")
        );
        assert_eq!(
            error(r#"{"product": "x", "quantity": 1.5}"#).field(),
            Some("quantity")
        );
        assert_eq!(
            error(r#"{"product": "x", "quantity": "3"}"#).field(),
            Some("quantity")
        );
        assert_eq!(
            error(r#"{"product": "  ", "quantity": 1}"#).field(),
            Some("product")
        );
        assert_eq!(
            error(r#"{"product": 5, "quantity": 1}"#).field(),
            Some("product")
        );
        assert_eq!(
            error(r#"{"product": "x", "quantity": 1, "order_id": "a b"}"#).field(),
            Some("order_id")
        );
        assert_eq!(
            error(&format!(
                r#"{{"product": "{}", "quantity": 1}}"#,
                "p".repeat(101)
            ))
            .field(),
            Some("product")
        );
    }

    #[test]
    fn refuses_malformed_bodies() {
        for body in [
            "",
            "not json",
            "[]",
            r#"{"product": "x", "quantity": 1, "extra": true}"#,
        ] {
            assert!(matches!(error(body), OrderError::Malformed(_)), "{body}");
        }
    }

    #[test]
    fn accepted_orders_start_pending() {
        let order = NewOrder::parse(br#"{"product": "x", "quantity": 2}"#)
            .unwrap()
            .accept(Timestamp(5), [0; 10]);
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.created_at, Timestamp(5));
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["status"], "pending");
        assert_eq!(json["created_at"], "1970-01-01T00:00:00.005Z");
        assert!(json.get("reason").is_none());
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
    fn statuses_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        }
        assert!("done".parse::<OrderStatus>().is_err());
    }
}
