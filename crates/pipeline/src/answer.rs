//! One call to the external validator: the request it is sent, and what its answer means.

use orders_core::Order;
use resilience::{CallFailure, HttpAnswer, parse_retry_after};
use serde_json::Value;

/// The body of `POST /validate` for `order`: `{"order_id", "items": [{"product", "quantity"}]}`.
pub fn request_body(order: &Order) -> Vec<u8> {
    serde_json::json!({ "order_id": order.id, "items": order.items })
        .to_string()
        .into_bytes()
}

/// What the validator decided about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidatorVerdict {
    /// The order may proceed.
    Valid,
    /// The order is refused.
    Rejected {
        /// The validator's machine-readable reason.
        reason: String,
        /// Its explanation, if it gave one.
        detail: Option<String>,
    },
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    /// A verdict.
    Verdict(ValidatorVerdict),
    /// No verdict: the call failed (connect error, timeout, an error status).
    Failed(CallFailure),
    /// A success status whose body is not a verdict about this order: nothing a retry of the
    /// same call is known to fix, so such answers count towards the dead-letter limit.
    Unreadable(String),
}

impl CallResult {
    /// Whether the call counts as a failure for the circuit breaker: only a failed call (no
    /// connection, no answer in time, an error status). A verdict, even a rejection, means the
    /// validator works; so does an unreadable answer, which is about one order (poison, dead-
    /// lettered at the poison limit): counting it would let a burst of poisoned orders hold
    /// the circuit open against every good one.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed(_))
    }

    /// The outcome label used in metrics (`outcome="..."`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Verdict(ValidatorVerdict::Valid) => "valid",
            Self::Verdict(ValidatorVerdict::Rejected { .. }) => "rejected",
            Self::Failed(CallFailure::Connect(_)) => "connect_error",
            Self::Failed(CallFailure::Timeout(_)) => "timeout",
            Self::Failed(CallFailure::Other(_)) => "transport_error",
            Self::Failed(CallFailure::Status { code: 429, .. }) => "throttled",
            Self::Failed(CallFailure::Status { code, .. }) if *code >= 500 => "server_error",
            Self::Failed(CallFailure::Status { .. }) => "client_error",
            Self::Unreadable(_) => "unreadable",
        }
    }

    /// A short description for the order's timeline.
    pub fn describe(&self) -> String {
        match self {
            Self::Verdict(ValidatorVerdict::Valid) => "valid".into(),
            Self::Verdict(ValidatorVerdict::Rejected { reason, .. }) => {
                format!("rejected: {reason}")
            }
            Self::Failed(CallFailure::Connect(detail)) => format!("connect error: {detail}"),
            Self::Failed(CallFailure::Timeout(detail)) => format!("timeout: {detail}"),
            Self::Failed(CallFailure::Other(detail)) => format!("transport error: {detail}"),
            Self::Failed(CallFailure::Status { code, .. }) => format!("HTTP {code}"),
            Self::Unreadable(detail) => format!("unreadable answer: {detail}"),
        }
    }
}

/// Interprets the answer to a call about `order_id` made at `now_ms`.
pub fn interpret(
    answer: Result<HttpAnswer, CallFailure>,
    order_id: &str,
    now_ms: u64,
) -> CallResult {
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => return CallResult::Failed(failure),
    };
    if !(200..300).contains(&answer.status) {
        return CallResult::Failed(CallFailure::Status {
            code: answer.status,
            retry_after_ms: answer
                .retry_after
                .as_deref()
                .and_then(|value| parse_retry_after(value, now_ms)),
        });
    }
    match verdict(&answer.body, order_id) {
        Ok(verdict) => CallResult::Verdict(verdict),
        Err(reason) => CallResult::Unreadable(reason),
    }
}

fn verdict(body: &[u8], order_id: &str) -> Result<ValidatorVerdict, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    match text("order_id") {
        Some(echoed) if echoed != order_id => {
            return Err(format!(
                "a verdict about order {echoed:?}, not {order_id:?}"
            ));
        }
        _ => {}
    }
    match text("verdict") {
        Some("valid") => Ok(ValidatorVerdict::Valid),
        Some("rejected") => Ok(ValidatorVerdict::Rejected {
            reason: text("reason")
                .filter(|reason| !reason.is_empty())
                .unwrap_or("rejected")
                .chars()
                .take(100)
                .collect(),
            detail: text("detail").map(|detail| detail.chars().take(500).collect()),
        }),
        Some(other) => Err(format!("unknown verdict {other:?}")),
        None => Err("no \"verdict\" member".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_core::{NewOrder, Timestamp};

    fn ok(status: u16, body: &str) -> Result<HttpAnswer, CallFailure> {
        Ok(HttpAnswer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn the_request_names_the_order_and_its_lines() {
        let order =
            NewOrder::parse(br#"{"order_id": "o1", "product": "Medicine A", "quantity": 3}"#)
                .unwrap()
                .accept(Timestamp(1), [0; 10]);
        let body: Value = serde_json::from_slice(&request_body(&order)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"order_id": "o1", "items": [{"product": "Medicine A", "quantity": 3}]})
        );
    }

    #[test]
    fn verdicts_are_read() {
        assert_eq!(
            interpret(
                ok(200, r#"{"verdict": "valid", "order_id": "o1"}"#),
                "o1",
                0
            ),
            CallResult::Verdict(ValidatorVerdict::Valid)
        );
        assert_eq!(
            interpret(
                ok(
                    200,
                    r#"{"verdict": "rejected", "reason": "unknown_product", "detail": "no"}"#
                ),
                "o1",
                0
            ),
            CallResult::Verdict(ValidatorVerdict::Rejected {
                reason: "unknown_product".into(),
                detail: Some("no".into())
            })
        );
    }

    #[test]
    fn error_statuses_are_failures_with_their_retry_after() {
        let answer = Ok(HttpAnswer {
            status: 429,
            retry_after: Some("7".into()),
            body: vec![],
        });
        let result = interpret(answer, "o1", 0);
        assert_eq!(
            result,
            CallResult::Failed(CallFailure::Status {
                code: 429,
                retry_after_ms: Some(7_000)
            })
        );
        assert_eq!(result.metric_label(), "throttled");
        assert_eq!(
            interpret(ok(503, ""), "o1", 0).metric_label(),
            "server_error"
        );
        assert_eq!(
            interpret(ok(400, ""), "o1", 0).metric_label(),
            "client_error"
        );
        let timeout = interpret(Err(CallFailure::Timeout("first byte".into())), "o1", 0);
        assert!(timeout.is_failure());
        assert_eq!(timeout.describe(), "timeout: first byte");
    }

    #[test]
    fn answers_that_are_not_verdicts_about_this_order_are_unreadable() {
        for body in [
            "<html>oops</html>",
            "{}",
            r#"{"verdict": "maybe"}"#,
            r#"{"verdict": "valid", "order_id": "someone-else"}"#,
        ] {
            let result = interpret(ok(200, body), "o1", 0);
            assert!(matches!(result, CallResult::Unreadable(_)), "{body}");
            assert!(
                !result.is_failure(),
                "poison, not a failing validator: {body}"
            );
        }
    }
}
