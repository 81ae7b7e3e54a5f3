//! RFC 9457 problem details (`application/problem+json`): the one shape of every error body
//! Orderly returns, from the host and from every component.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem details object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Further members (e.g. `field`, `request_id`).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem with `status` and a `title`.
    pub fn new(status: u16, title: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: title.into(),
            status,
            detail: None,
            extensions: Map::new(),
        }
    }

    /// Sets the problem type URI (e.g. `/problems/invalid-order`).
    pub fn with_type(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            // Serialising strings and numbers cannot fail; keep a valid body regardless.
            format!(
                r#"{{"type":"about:blank","title":"Error","status":{}}}"#,
                self.status
            )
            .into_bytes()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_the_rfc_members_and_extensions() {
        let problem = Problem::new(422, "Invalid order")
            .with_type("/problems/invalid-order")
            .with_detail("quantity must be between 1 and 1000")
            .with("field", "quantity");
        let json: Value = serde_json::from_slice(&problem.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "/problems/invalid-order",
                "title": "Invalid order",
                "status": 422,
                "detail": "quantity must be between 1 and 1000",
                "field": "quantity"
            })
        );
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back, problem);
    }

    #[test]
    fn omits_an_absent_detail() {
        let json = String::from_utf8(Problem::new(404, "Not Found").to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"type":"about:blank","title":"Not Found","status":404}"#
        );
    }
}
