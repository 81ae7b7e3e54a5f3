//! The services' API as the saga calls it: the request each action makes, and what an answer
//! means. Every request is a `POST` keyed by the order id, so a repeat is harmless.
//!
//! | action | service | path | body |
//! |---|---|---|---|
//! | reserve | inventory | `/reservations` | `{"order_id", "lines": [{"sku", "quantity"}]}` |
//! | commit | inventory | `/reservations/{id}/commit` | `{}` |
//! | release stock | inventory | `/reservations/{id}/release` | `{}` |
//! | authorize | payment | `/payments` | `{"order_id", "amount_cents", "customer"}` |
//! | capture | payment | `/payments/{id}/capture` | `{}` |
//! | refund payment | payment | `/payments/{id}/compensate` | `{}` |
//! | ship | shipping | `/shipments` | `{"order_id", "lines", "recipient"}` |
//! | cancel shipment | shipping | `/shipments/{id}/cancel` | `{}` |
//!
//! A 2xx answer means done. A refusal is a 4xx (not 408, 425 or 429) with a problem body
//! (`application/problem+json` with a `type`): out of stock, declined, cancelled. Anything else
//! is a failure: retried when worth it, or, for a 4xx without a problem body (a wrong URL, a
//! proxy's page), left to an operator rather than taken as the service's "no".

use orders_core::Order;
use resilience::HttpAnswer;
use resilience::{CallFailure, parse_retry_after};
use saga::{Action, Compensation, Service, Step};
use serde_json::{Value, json};

/// One request to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// The service.
    pub service: Service,
    /// The path below the service's base URL.
    pub path: String,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What the saga needs to know of an order to make its requests.
#[derive(Debug, Clone, Copy)]
pub struct OrderFacts<'a> {
    /// The order.
    pub order: &'a Order,
    /// What it costs, in cents.
    pub amount_cents: u64,
}

/// What an answer means for the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAnswer {
    /// Done (or done before).
    Done,
    /// The service refused, for good; its explanation.
    Refused(String),
    /// No answer worth acting on (connect error, timeout, 5xx, 429, ...).
    Failed(CallFailure),
    /// An answer no service of ours gives: a person has to look.
    Unexpected(String),
}

impl StepAnswer {
    /// Whether the call counts as a failure for the service's circuit breaker (a refusal
    /// means the service works).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Unexpected(_))
    }

    /// A short description for the order's timeline.
    pub fn describe(&self) -> String {
        match self {
            Self::Done => "done".into(),
            Self::Refused(detail) => format!("refused: {detail}"),
            Self::Failed(CallFailure::Connect(detail)) => format!("connect error: {detail}"),
            Self::Failed(CallFailure::Timeout(detail)) => format!("timeout: {detail}"),
            Self::Failed(CallFailure::Other(detail)) => format!("transport error: {detail}"),
            Self::Failed(CallFailure::Status { code, .. }) => format!("HTTP {code}"),
            Self::Unexpected(detail) => format!("unexpected answer: {detail}"),
        }
    }
}

/// The request `action` makes for `facts`' order (none for a finished saga).
pub fn request_for(action: Action, facts: OrderFacts<'_>) -> Option<ServiceRequest> {
    let order = facts.order;
    let id = order.id.as_str();
    let lines: Vec<Value> = order
        .items
        .iter()
        .map(|item| json!({ "sku": item.product, "quantity": item.quantity }))
        .collect();
    let empty = || json!({});
    let (path, body) = match action {
        Action::Call(Step::Reserve) => (
            "/reservations".to_owned(),
            json!({ "order_id": id, "lines": lines }),
        ),
        Action::Call(Step::Commit) => (format!("/reservations/{id}/commit"), empty()),
        Action::Compensate(Compensation::ReleaseStock) => {
            (format!("/reservations/{id}/release"), empty())
        }
        Action::Call(Step::Authorize) => (
            "/payments".to_owned(),
            json!({
                "order_id": id,
                "amount_cents": facts.amount_cents,
                "customer": order.customer,
            }),
        ),
        Action::Call(Step::Capture) => (format!("/payments/{id}/capture"), empty()),
        Action::Compensate(Compensation::RefundPayment) => {
            (format!("/payments/{id}/compensate"), empty())
        }
        Action::Call(Step::Ship) => (
            "/shipments".to_owned(),
            json!({ "order_id": id, "lines": lines, "recipient": order.customer }),
        ),
        Action::Compensate(Compensation::CancelShipment) => {
            (format!("/shipments/{id}/cancel"), empty())
        }
        Action::Finished(_) => return None,
    };
    Some(ServiceRequest {
        service: action.service()?,
        path,
        body: body.to_string().into_bytes(),
    })
}

/// What `answer` (to a call that ended at `now_ms`) means.
pub fn interpret(answer: Result<HttpAnswer, CallFailure>, now_ms: u64) -> StepAnswer {
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => return StepAnswer::Failed(failure),
    };
    match answer.status {
        200..=299 => StepAnswer::Done,
        408 | 425 | 429 | 500..=599 => StepAnswer::Failed(CallFailure::Status {
            code: answer.status,
            retry_after_ms: answer
                .retry_after
                .as_deref()
                .and_then(|value| parse_retry_after(value, now_ms)),
        }),
        400..=499 => match refusal(&answer.body) {
            Some(detail) => StepAnswer::Refused(detail),
            None => {
                StepAnswer::Unexpected(format!("HTTP {} without a problem body", answer.status))
            }
        },
        status => StepAnswer::Unexpected(format!("HTTP {status}")),
    }
}

/// The explanation in a problem body (its `detail`, else its `title`, else its `type`), if the
/// body is one.
fn refusal(body: &[u8]) -> Option<String> {
    let problem: Value = serde_json::from_slice(body).ok()?;
    let text = |name: &str| problem.get(name).and_then(Value::as_str);
    let kind = text("type")?;
    Some(text("detail").or(text("title")).unwrap_or(kind).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_core::{NewOrder, Timestamp};

    fn order() -> Order {
        NewOrder::parse(br#"{"order_id": "o-1", "customer": "Ada", "items": [{"product": "Pizza", "quantity": 2}]}"#)
            .unwrap()
            .accept(Timestamp(1), [0; 10])
    }

    fn answer(status: u16, body: &str) -> Result<HttpAnswer, CallFailure> {
        Ok(HttpAnswer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn every_action_has_its_request() {
        let order = order();
        let facts = OrderFacts {
            order: &order,
            amount_cents: 2_400,
        };
        let reserve = request_for(Action::Call(Step::Reserve), facts).unwrap();
        assert_eq!(reserve.service, Service::Inventory);
        assert_eq!(reserve.path, "/reservations");
        assert_eq!(
            serde_json::from_slice::<Value>(&reserve.body).unwrap(),
            json!({"order_id": "o-1", "lines": [{"sku": "Pizza", "quantity": 2}]})
        );
        let authorize = request_for(Action::Call(Step::Authorize), facts).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&authorize.body).unwrap(),
            json!({"order_id": "o-1", "amount_cents": 2400, "customer": "Ada"})
        );
        let paths: Vec<(Service, String)> = [
            Action::Call(Step::Ship),
            Action::Call(Step::Capture),
            Action::Call(Step::Commit),
            Action::Compensate(Compensation::CancelShipment),
            Action::Compensate(Compensation::RefundPayment),
            Action::Compensate(Compensation::ReleaseStock),
        ]
        .into_iter()
        .map(|action| {
            let request = request_for(action, facts).unwrap();
            (request.service, request.path)
        })
        .collect();
        assert_eq!(
            paths,
            [
                (Service::Shipping, "/shipments".to_owned()),
                (Service::Payment, "/payments/o-1/capture".to_owned()),
                (Service::Inventory, "/reservations/o-1/commit".to_owned()),
                (Service::Shipping, "/shipments/o-1/cancel".to_owned()),
                (Service::Payment, "/payments/o-1/compensate".to_owned()),
                (Service::Inventory, "/reservations/o-1/release".to_owned()),
            ]
        );
        assert_eq!(
            request_for(Action::Finished(saga::Ending::Confirmed), facts),
            None
        );
    }

    #[test]
    fn answers_mean_done_refused_failed_or_unexpected() {
        assert_eq!(interpret(answer(201, "{}"), 0), StepAnswer::Done);
        assert_eq!(
            interpret(
                answer(
                    409,
                    r#"{"type": "/problems/out-of-stock", "title": "Conflict", "detail": "Pizza: 1 left"}"#
                ),
                0
            ),
            StepAnswer::Refused("Pizza: 1 left".into())
        );
        assert_eq!(
            interpret(answer(402, r#"{"type": "/problems/declined"}"#), 0),
            StepAnswer::Refused("/problems/declined".into())
        );
        assert_eq!(
            interpret(answer(404, "<html>not here</html>"), 0),
            StepAnswer::Unexpected("HTTP 404 without a problem body".into())
        );
        let throttled = interpret(
            Ok(HttpAnswer {
                status: 429,
                retry_after: Some("2".into()),
                body: Vec::new(),
            }),
            0,
        );
        assert_eq!(
            throttled,
            StepAnswer::Failed(CallFailure::Status {
                code: 429,
                retry_after_ms: Some(2_000)
            })
        );
        assert!(throttled.is_failure());
        assert!(!StepAnswer::Refused("no".into()).is_failure());
        assert_eq!(
            interpret(Err(CallFailure::Timeout("2 s".into())), 0).describe(),
            "timeout: 2 s"
        );
    }
}
