//! The order-creation APIs the load generator speaks: Orderly's own, and the seeds' (so the
//! same run can be pointed at a seed's deployment for a side-by-side).

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

/// An API to create orders with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `POST /orders` with an `Idempotency-Key`: 202 once stored.
    Orderly,
    /// The MediSupply seed's `POST /create_order {"order_id", "product", "quantity"}`: 200.
    Medisupply,
    /// The Campus seed's `POST /order {"item", "qty"}`: 201 once paid (a synchronous order);
    /// the server names the order.
    Campus,
}

/// The MediSupply seed's products.
const MEDICINES: [&str; 5] = [
    "Medicine A",
    "Medicine B",
    "Vaccine X",
    "Antibiotic C",
    "Test Product",
];
/// The Campus seed's menu.
const MENU: [&str; 5] = ["burger", "pizza", "sushi", "taco", "salad"];

impl Api {
    /// The path orders are posted to.
    pub fn path(self) -> &'static str {
        match self {
            Self::Orderly => "/orders",
            Self::Medisupply => "/create_order",
            Self::Campus => "/order",
        }
    }

    /// The status that acknowledges an order.
    pub fn success(self) -> StatusCode {
        match self {
            Self::Orderly => StatusCode::ACCEPTED,
            Self::Medisupply => StatusCode::OK,
            Self::Campus => StatusCode::CREATED,
        }
    }

    /// How many products the API's catalogue offers ([`Api::body`] takes an index below it).
    pub fn products(self) -> usize {
        match self {
            Self::Orderly | Self::Medisupply => MEDICINES.len(),
            Self::Campus => MENU.len(),
        }
    }

    /// The order id the request names itself (`None` when the server names it).
    pub fn names_order(self, key: &str) -> Option<String> {
        match self {
            Self::Orderly | Self::Medisupply => Some(key.to_owned()),
            Self::Campus => None,
        }
    }

    /// The request body for an order of `quantity` × product number `product` under `key`.
    pub fn body(self, key: &str, product: usize, quantity: u32) -> Bytes {
        let body = match self {
            Self::Orderly | Self::Medisupply => json!({
                "order_id": key,
                "product": MEDICINES[product % MEDICINES.len()],
                "quantity": quantity,
            }),
            Self::Campus => json!({"item": MENU[product % MENU.len()], "qty": quantity}),
        };
        Bytes::from(body.to_string())
    }

    /// The order id an answer names, if it names one.
    pub fn answered_order(self, body: &[u8]) -> Option<String> {
        let answer: Value = serde_json::from_slice(body).ok()?;
        let id = match self {
            Self::Orderly => &answer["order"]["id"],
            Self::Medisupply | Self::Campus => &answer["order_id"],
        };
        id.as_str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_names_its_order_where_it_does() {
        let body: Value = serde_json::from_slice(&Api::Orderly.body("k-1", 0, 3)).unwrap();
        assert_eq!(
            body,
            json!({"order_id": "k-1", "product": "Medicine A", "quantity": 3})
        );
        assert_eq!(Api::Orderly.names_order("k-1").as_deref(), Some("k-1"));
        let campus: Value = serde_json::from_slice(&Api::Campus.body("k-2", 6, 2)).unwrap();
        assert_eq!(campus, json!({"item": "pizza", "qty": 2}));
        assert_eq!(Api::Campus.names_order("k-2"), None);
    }

    #[test]
    fn answers_name_the_order_in_each_api_s_shape() {
        let orderly = br#"{"order": {"id": "o-9", "status": "processing"}}"#;
        assert_eq!(Api::Orderly.answered_order(orderly).as_deref(), Some("o-9"));
        let seed = br#"{"message": "Order placed successfully!", "order_id": "t-1"}"#;
        assert_eq!(Api::Medisupply.answered_order(seed).as_deref(), Some("t-1"));
        assert_eq!(Api::Campus.answered_order(b"not json"), None);
    }
}
