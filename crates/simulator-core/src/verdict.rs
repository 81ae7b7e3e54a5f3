//! The verdict a third-party validator gives an order: valid, or rejected with a reason.

use catalog::Catalog;
use serde::{Deserialize, Serialize};

/// One line of an order as the validator receives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLine {
    /// The product name.
    pub product: String,
    /// The quantity (any integer; the catalogue decides what is in range).
    pub quantity: i64,
}

/// An order as the validator receives it: `{"order_id"?, "items": [{"product", "quantity"}]}`,
/// or the classroom seed's single `{"order_id"?, "product", "quantity"}`. The validator is
/// lenient about content (it judges what it is sent) but not about shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRequest {
    /// The caller's order id, echoed back.
    pub order_id: Option<String>,
    /// The lines to judge (at least one).
    pub items: Vec<RequestedLine>,
}

/// A validation request that cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not a validation request: {0}")]
pub struct VerdictError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    items: Option<Vec<RequestedLine>>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    quantity: Option<i64>,
}

impl ValidationRequest {
    /// Parses a `POST /validate` body.
    pub fn parse(body: &[u8]) -> Result<Self, VerdictError> {
        let raw: RawRequest =
            serde_json::from_slice(body).map_err(|error| VerdictError(error.to_string()))?;
        let items = match (raw.items, raw.product, raw.quantity) {
            (Some(items), None, None) if !items.is_empty() => items,
            (None, Some(product), Some(quantity)) => vec![RequestedLine { product, quantity }],
            _ => {
                return Err(VerdictError(
                    "give a non-empty `items` list, or `product` and `quantity`".into(),
                ));
            }
        };
        Ok(Self {
            order_id: raw.order_id,
            items,
        })
    }
}

/// The validator's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The order may proceed.
    Valid,
    /// The order is refused.
    Rejected {
        /// A machine-readable reason: `unknown_product` or `quantity_out_of_range`.
        reason: &'static str,
        /// A human-readable explanation.
        detail: String,
    },
}

/// Judges an order against `catalog`: every line's product must be known (ignoring case and
/// surrounding spaces) and its quantity within the product's range; the first line that is
/// not decides the rejection.
pub fn judge(catalog: &Catalog, request: &ValidationRequest) -> Verdict {
    let several = request.items.len() > 1;
    for (index, line) in request.items.iter().enumerate() {
        let at = if several {
            format!("line {}: ", index + 1)
        } else {
            String::new()
        };
        let wanted = line.product.trim();
        let Some(product) = catalog.find(wanted) else {
            return Verdict::Rejected {
                reason: "unknown_product",
                detail: format!("{at}{wanted:?} is not in the catalogue"),
            };
        };
        let range = i64::from(product.min_quantity)..=i64::from(product.max_quantity);
        if !range.contains(&line.quantity) {
            return Verdict::Rejected {
                reason: "quantity_out_of_range",
                detail: format!(
                    "{at}{} may be ordered {} to {} at a time, not {}",
                    product.name, product.min_quantity, product.max_quantity, line.quantity
                ),
            };
        }
    }
    Verdict::Valid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(body: &str) -> Verdict {
        judge(
            &Catalog::standard(),
            &ValidationRequest::parse(body.as_bytes()).unwrap(),
        )
    }

    #[test]
    fn known_products_in_range_are_valid() {
        assert_eq!(
            verdict(r#"{"order_id": "o1", "product": "Medicine A", "quantity": 10}"#),
            Verdict::Valid
        );
        assert_eq!(
            verdict(r#"{"product": " vaccine x ", "quantity": 50}"#),
            Verdict::Valid
        );
        assert_eq!(
            verdict(
                r#"{"items": [{"product": "Test Product", "quantity": 5}, {"product": "burger", "quantity": 2}]}"#
            ),
            Verdict::Valid
        );
    }

    #[test]
    fn rejections_carry_a_reason() {
        assert!(matches!(
            verdict(r#"{"product": "Unobtainium", "quantity": 1}"#),
            Verdict::Rejected {
                reason: "unknown_product",
                ..
            }
        ));
        assert!(matches!(
            verdict(r#"{"product": "Vaccine X", "quantity": 51}"#),
            Verdict::Rejected {
                reason: "quantity_out_of_range",
                ..
            }
        ));
        assert!(matches!(
            verdict(r#"{"product": "Vaccine X", "quantity": 0}"#),
            Verdict::Rejected {
                reason: "quantity_out_of_range",
                ..
            }
        ));
        let second_line = verdict(
            r#"{"items": [{"product": "Medicine A", "quantity": 1}, {"product": "Gold", "quantity": 1}]}"#,
        );
        match second_line {
            Verdict::Rejected { reason, detail } => {
                assert_eq!(reason, "unknown_product");
                assert!(detail.starts_with("line 2: "), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_value(verdict(r#"{"product": "Nope", "quantity": 1}"#)).unwrap();
        assert_eq!(json["verdict"], "rejected");
        assert_eq!(json["reason"], "unknown_product");
    }

    #[test]
    fn malformed_requests_are_errors() {
        for body in [
            "",
            "{}",
            "[]",
            r#"{"product": "x"}"#,
            r#"{"product": 1, "quantity": 1}"#,
            r#"{"items": []}"#,
            r#"{"items": [{"product": "x", "quantity": 1}], "product": "y", "quantity": 1}"#,
            r#"{"product": "x", "quantity": 1, "colour": "red"}"#,
        ] {
            assert!(ValidationRequest::parse(body.as_bytes()).is_err(), "{body}");
        }
    }
}
