//! Doorbells: the Redis messages that wake a validation worker. A doorbell carries no work of
//! its own (jobs live in SQLite); it may name the order whose job was just written, so a
//! message about an order that does not exist can be told apart from a duplicate.

use orders_core::{OrderId, OrderIdError};
use serde_json::Value;

/// A wake-up call for the validation workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doorbell {
    /// The order whose job was just written, when the doorbell is about one.
    pub order_id: Option<OrderId>,
}

/// Why a message is not a doorbell.
#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("expected a JSON object like {{\"order_id\": \"...\"}}")]
    NotAnObject,
    /// `order_id` is not a string.
    #[error("order_id must be a string")]
    OrderIdNotText,
    /// `order_id` is not a valid order id.
    #[error("order_id: {0}")]
    BadOrderId(#[source] OrderIdError),
}

impl Doorbell {
    /// The doorbell rung after `order` was accepted.
    pub fn for_order(order: &OrderId) -> Self {
        Self {
            order_id: Some(order.clone()),
        }
    }

    /// A doorbell about no order in particular: more work is waiting (a worker with a full
    /// batch rings it so that another worker joins in).
    pub fn backlog() -> Self {
        Self { order_id: None }
    }

    /// Parses a message; unknown members are ignored, so newer publishers can add some.
    pub fn parse(message: &[u8]) -> Result<Self, DoorbellError> {
        let value: Value = serde_json::from_slice(message).map_err(DoorbellError::NotJson)?;
        let Value::Object(object) = value else {
            return Err(DoorbellError::NotAnObject);
        };
        let order_id = match object.get("order_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                Some(OrderId::parse(text).map_err(DoorbellError::BadOrderId)?)
            }
            Some(_) => return Err(DoorbellError::OrderIdNotText),
        };
        Ok(Self { order_id })
    }

    /// The message to publish.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.order_id {
            Some(id) => serde_json::json!({ "order_id": id }),
            None => serde_json::json!({ "wake": "backlog" }),
        }
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = OrderId::parse("o-1").unwrap();
        for doorbell in [Doorbell::for_order(&id), Doorbell::backlog()] {
            assert_eq!(Doorbell::parse(&doorbell.to_bytes()).unwrap(), doorbell);
        }
        assert_eq!(
            Doorbell::parse(br#"{"order_id": "o-1", "future": true}"#).unwrap(),
            Doorbell::for_order(&id)
        );
    }

    #[test]
    fn refuses_what_is_not_a_doorbell() {
        assert!(matches!(
            Doorbell::parse(b"not json"),
            Err(DoorbellError::NotJson(_))
        ));
        assert!(matches!(
            Doorbell::parse(b"[1]"),
            Err(DoorbellError::NotAnObject)
        ));
        assert!(matches!(
            Doorbell::parse(br#"{"order_id": 5}"#),
            Err(DoorbellError::OrderIdNotText)
        ));
        assert!(matches!(
            Doorbell::parse(br#"{"order_id": "a b"}"#),
            Err(DoorbellError::BadOrderId(_))
        ));
    }
}
