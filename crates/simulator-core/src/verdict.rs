//! The verdict a third-party validator gives an order: valid, or rejected with a reason.

use serde::{Deserialize, Serialize};

/// An order as the validator receives it. The validator is lenient about shape (it judges what
/// it is sent), but the body must be JSON with a product and a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidationRequest {
    /// The caller's order id, echoed back.
    #[serde(default)]
    pub order_id: Option<String>,
    /// The product name.
    pub product: String,
    /// The quantity (any integer; the catalog decides what is in range).
    pub quantity: i64,
}

/// A validation request that cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not a validation request: {0}")]
pub struct VerdictError(pub String);

impl ValidationRequest {
    /// Parses a `POST /validate` body.
    pub fn parse(body: &[u8]) -> Result<Self, VerdictError> {
        serde_json::from_slice(body).map_err(|error| VerdictError(error.to_string()))
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

/// The products the validator knows, with the quantities it allows for each.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    products: &'static [(&'static str, u32, u32)],
}

impl Catalog {
    /// The simulator's catalog of medical supplies.
    pub const fn standard() -> Self {
        Self {
            products: &[
                ("Medicine A", 1, 500),
                ("Medicine B", 1, 200),
                ("Antibiotic C", 1, 300),
                ("Vaccine X", 1, 50),
                ("Insulin Pen", 1, 100),
                ("Syringe Pack", 1, 1000),
                ("Bandage Roll", 1, 1000),
                ("Surgical Mask", 1, 1000),
            ],
        }
    }

    /// Judges an order: the product must be known (ignoring case and surrounding spaces) and
    /// the quantity within its range.
    pub fn judge(&self, request: &ValidationRequest) -> Verdict {
        let wanted = request.product.trim();
        let Some((name, min, max)) = self
            .products
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(wanted))
        else {
            return Verdict::Rejected {
                reason: "unknown_product",
                detail: format!("{wanted:?} is not in the catalog"),
            };
        };
        if (i64::from(*min)..=i64::from(*max)).contains(&request.quantity) {
            Verdict::Valid
        } else {
            Verdict::Rejected {
                reason: "quantity_out_of_range",
                detail: format!(
                    "{name} may be ordered {min} to {max} at a time, not {}",
                    request.quantity
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(body: &str) -> Verdict {
        Catalog::standard().judge(&ValidationRequest::parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn known_products_in_range_are_valid() {
        assert_eq!(
            judge(r#"{"order_id": "o1", "product": "Medicine A", "quantity": 10}"#),
            Verdict::Valid
        );
        assert_eq!(
            judge(r#"{"product": " vaccine x ", "quantity": 50}"#),
            Verdict::Valid
        );
    }

    #[test]
    fn rejections_carry_a_reason() {
        assert!(matches!(
            judge(r#"{"product": "Unobtainium", "quantity": 1}"#),
            Verdict::Rejected {
                reason: "unknown_product",
                ..
            }
        ));
        assert!(matches!(
            judge(r#"{"product": "Vaccine X", "quantity": 51}"#),
            Verdict::Rejected {
                reason: "quantity_out_of_range",
                ..
            }
        ));
        assert!(matches!(
            judge(r#"{"product": "Vaccine X", "quantity": 0}"#),
            Verdict::Rejected {
                reason: "quantity_out_of_range",
                ..
            }
        ));
        let json = serde_json::to_value(judge(r#"{"product": "Nope", "quantity": 1}"#)).unwrap();
        assert_eq!(json["verdict"], "rejected");
        assert_eq!(json["reason"], "unknown_product");
    }

    #[test]
    fn malformed_requests_are_errors() {
        for body in [
            "",
            "{}",
            r#"{"product": "x"}"#,
            r#"{"product": 1, "quantity": 1}"#,
        ] {
            assert!(ValidationRequest::parse(body.as_bytes()).is_err(), "{body}");
        }
    }
}
