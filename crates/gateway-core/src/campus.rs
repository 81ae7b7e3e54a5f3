//! The Campus seed's `POST /order` (`{"item", "qty"}`), served by a synchronous order: the
//! body becomes a one-line order for `POST /orders?mode=sync`, and the answer comes back in
//! the seed's shape. 201 `{"order_id", "item", "qty", "status"}` once the order is paid
//! (stock reserved, payment authorized); otherwise the synchronous path's status, as the
//! seed's order service cascades it (409 out of stock, 402 declined, 422 rejected, 503 a
//! dependency failing, 504 one too slow), with `{"error", "order_id"?, "status"?}`.

use serde_json::{Value, json};

/// The seed's order, as read from its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampusOrder {
    /// The food item (a catalogue product; names ignore case).
    pub item: String,
    /// How many.
    pub qty: u64,
}

impl CampusOrder {
    /// Reads `{"item": "burger", "qty": 1}` (`qty` defaults to 1); the error is the seed's
    /// 400 message.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| "the body must be a JSON object".to_owned())?;
        let item = value
            .get("item")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .ok_or("item (a non-empty string) is required")?;
        let qty = match value.get("qty") {
            None => 1,
            Some(qty) => qty
                .as_u64()
                .filter(|qty| *qty > 0)
                .ok_or("qty must be a whole number above 0")?,
        };
        Ok(Self {
            item: item.to_owned(),
            qty,
        })
    }

    /// The body of the synchronous `POST /orders` request for this order.
    pub fn order_body(&self) -> Vec<u8> {
        json!({ "items": [{ "product": self.item, "quantity": self.qty }] })
            .to_string()
            .into_bytes()
    }

    /// The seed's answer for the orders service's `status` and JSON `body` (an order, or a
    /// problem): the same status, the seed's body.
    pub fn answer(&self, status: u16, body: &[u8]) -> (u16, Value) {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text =
            |value: &Value, name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        if status == 201 {
            let order = &value["order"];
            return (
                201,
                json!({
                    "order_id": text(order, "id"),
                    "item": self.item,
                    "qty": self.qty,
                    "status": text(order, "status"),
                }),
            );
        }
        let error = text(&value, "detail")
            .or_else(|| text(&value, "title"))
            .unwrap_or_else(|| format!("the order service answered {status}"));
        let mut answer = json!({ "error": error });
        for name in ["order_id", "status"] {
            if let Some(found) = text(&value, name) {
                answer[name] = Value::String(found);
            }
        }
        (status, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_s_body_becomes_a_one_line_order() {
        let order = CampusOrder::parse(br#"{"item": "burger", "qty": 2}"#).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&order.order_body()).unwrap(),
            json!({"items": [{"product": "burger", "quantity": 2}]})
        );
        assert_eq!(CampusOrder::parse(br#"{"item": "taco"}"#).unwrap().qty, 1);
        for bad in [
            &br#"{"qty": 1}"#[..],
            br#"{"item": "", "qty": 1}"#,
            br#"{"item": "x", "qty": 0}"#,
            b"nope",
        ] {
            assert!(CampusOrder::parse(bad).is_err());
        }
    }

    #[test]
    fn answers_come_back_in_the_seed_s_shape() {
        let order = CampusOrder::parse(br#"{"item": "pizza", "qty": 1}"#).unwrap();
        let paid = json!({"order": {"id": "ord_1", "status": "paid"}}).to_string();
        assert_eq!(
            order.answer(201, paid.as_bytes()),
            (
                201,
                json!({"order_id": "ord_1", "item": "pizza", "qty": 1, "status": "paid"})
            )
        );
        let problem = json!({"type": "/problems/out-of-stock", "title": "Out of stock",
            "detail": "pizza: 0 available", "order_id": "ord_2", "status": "cancelled"});
        assert_eq!(
            order.answer(409, problem.to_string().as_bytes()),
            (
                409,
                json!({"error": "pizza: 0 available", "order_id": "ord_2", "status": "cancelled"})
            )
        );
        assert_eq!(
            order.answer(503, b""),
            (503, json!({"error": "the order service answered 503"}))
        );
    }
}
