//! Creating an order as a careful client does (`POST /orders` with an `Idempotency-Key`): each
//! answer classified, and the same request sent again, with the same key, while the app says
//! it is busy (503), that the key's first request is still in flight (409), or does not answer
//! at all, until an answer settles it or patience runs out.

use crate::app_http::{Answer, Http};
use crate::orders_load::Schedule;
use futures::StreamExt as _;
use http::Method;
use saga_audit::mix::PlannedOrder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The body of `order` without an `order_id` (the app makes one), its key as the customer:
/// only the idempotency key then keeps a retry from creating a second order.
pub fn keyed_body(order: &PlannedOrder) -> String {
    let items: Vec<_> = order
        .lines
        .iter()
        .map(|(product, quantity)| json!({"product": product, "quantity": quantity}))
        .collect();
    json!({"customer": order.id, "items": items}).to_string()
}

/// Listed orders (`GET /orders`) by the key their [`keyed_body`] named as the customer.
pub fn orders_by_key(listed: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for order in listed {
        let key = order["customer"].as_str().unwrap_or("").to_owned();
        by_key.entry(key).or_default().push(order.clone());
    }
    by_key
}

/// What an answer to `POST /orders` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 202 without `Idempotent-Replayed`: this request created the order.
    Created {
        /// The order's id.
        order_id: String,
    },
    /// 202 with `Idempotent-Replayed: true`: the key's first answer, again.
    Replayed {
        /// The order's id.
        order_id: String,
    },
    /// 409 `/problems/idempotency-key-in-flight`: the key's first request is not finished.
    InFlight,
    /// 503: the app cannot take the request now (busy, or its storage unavailable).
    Busy,
    /// 422 `/problems/idempotency-key-reused`: the key was used before with another body.
    KeyReused,
    /// 409 `/problems/duplicate-order`: another key's order has the body's `order_id`.
    DuplicateOrder,
    /// Any other answer (its status and body).
    Unexpected(String),
}

impl Reply {
    /// What `answer` means.
    pub fn of(answer: &Answer) -> Self {
        let problem_type = || {
            answer
                .json()
                .ok()
                .and_then(|body| body["type"].as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let order_id = || {
            answer
                .json()
                .ok()
                .and_then(|body| body["order"]["id"].as_str().map(str::to_owned))
        };
        match answer.status {
            202 => match order_id() {
                Some(order_id) if answer.header("idempotent-replayed") == Some("true") => {
                    Self::Replayed { order_id }
                }
                Some(order_id) => Self::Created { order_id },
                None => Self::Unexpected(answer.describe()),
            },
            409 if problem_type() == "/problems/idempotency-key-in-flight" => Self::InFlight,
            409 if problem_type() == "/problems/duplicate-order" => Self::DuplicateOrder,
            422 if problem_type() == "/problems/idempotency-key-reused" => Self::KeyReused,
            503 => Self::Busy,
            _ => Self::Unexpected(answer.describe()),
        }
    }

    /// Whether the same request is worth sending again for an answer that settles it.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::InFlight | Self::Busy)
    }

    /// The order a 202 names.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Self::Created { order_id } | Self::Replayed { order_id } => Some(order_id),
            _ => None,
        }
    }
}

/// How long a client keeps sending the same request.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// The wait between two tries.
    pub pause: Duration,
    /// The longest it keeps trying, from the first try.
    pub limit: Duration,
}

/// The experiments' usual client: the same request again every 50 ms, for up to 30 s, while
/// the app says the key's first request is in flight (409) or it is busy (503).
pub const PATIENT: Patience = Patience {
    pause: Duration::from_millis(50),
    limit: Duration::from_secs(30),
};

/// How one request ended, after all its tries.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The answer that settled it (the last one when patience ran out); `None` when the app
    /// never answered.
    pub answer: Option<Answer>,
    /// What that answer means.
    pub reply: Option<Reply>,
    /// When that answer arrived.
    pub answered_at: Option<Instant>,
    /// Tries made.
    pub tries: u32,
    /// Tries answered 409 (the key's first request in flight).
    pub in_flight: u32,
    /// Tries answered 503.
    pub busy: u32,
    /// Tries the app did not answer (connection refused or cut).
    pub unanswered: u32,
    /// Why the last unanswered try got no answer.
    pub last_error: Option<String>,
}

impl Submission {
    /// The order a settling 202 names.
    pub fn order_id(&self) -> Option<&str> {
        self.reply.as_ref().and_then(Reply::order_id)
    }
}

/// Sends `POST /orders` with `body` under `key` until an answer settles it (anything but 409 in
/// flight and 503) or `patience` runs out; unanswered tries are sent again too.
pub async fn submit(http: &Http, key: &str, body: &str, patience: Patience) -> Submission {
    let give_up = Instant::now() + patience.limit;
    let mut submission = Submission {
        answer: None,
        reply: None,
        answered_at: None,
        tries: 0,
        in_flight: 0,
        busy: 0,
        unanswered: 0,
        last_error: None,
    };
    loop {
        submission.tries += 1;
        let sent = http
            .send(
                Method::POST,
                "/orders",
                &[("idempotency-key", key)],
                Some(body.to_owned()),
            )
            .await;
        let transient = match sent {
            Ok(answer) => {
                let reply = Reply::of(&answer);
                match reply {
                    Reply::InFlight => submission.in_flight += 1,
                    Reply::Busy => submission.busy += 1,
                    _ => {}
                }
                let transient = reply.is_transient();
                submission.answer = Some(answer);
                submission.reply = Some(reply);
                submission.answered_at = Some(Instant::now());
                transient
            }
            Err(error) => {
                submission.unanswered += 1;
                submission.last_error = Some(format!("{error:#}"));
                true
            }
        };
        if !transient || Instant::now() + patience.pause >= give_up {
            return submission;
        }
        tokio::time::sleep(patience.pause).await;
    }
}

/// One order's request, when it went, and how it ended.
pub struct Sent {
    /// The order (its id is the key).
    pub order: PlannedOrder,
    /// When its first try went.
    pub started: Instant,
    /// How it ended.
    pub submission: Submission,
}

/// Sends each of `orders` (as `body` makes it, under its id as the key) at its time on
/// `schedule` whatever the answers to the others (an open model), each with `patience`.
pub async fn submit_on_schedule(
    http: &Http,
    orders: &[PlannedOrder],
    body: fn(&PlannedOrder) -> String,
    schedule: Schedule,
    patience: Patience,
) -> Vec<Sent> {
    futures::stream::iter(orders.iter().enumerate())
        .map(|(n, order)| async move {
            tokio::time::sleep_until(schedule.intended(n as u64).into()).await;
            let started = Instant::now();
            let submission = submit(http, &order.id, &body(order), patience).await;
            Sent {
                order: order.clone(),
                started,
                submission,
            }
        })
        .buffer_unordered(orders.len().max(1))
        .collect()
        .await
}

/// Sends each of `orders` (as `body` makes it, under its id as the key) from `clients`
/// clients, each sending its next order once its last one is settled (a closed model), each
/// with `patience`; `acknowledged` counts the orders acknowledged so far, as they come.
pub async fn submit_from_clients(
    http: &Http,
    orders: &[PlannedOrder],
    body: fn(&PlannedOrder) -> String,
    clients: usize,
    patience: Patience,
    acknowledged: &AtomicUsize,
) -> Vec<Sent> {
    futures::stream::iter(orders)
        .map(|order| async move {
            let started = Instant::now();
            let submission = submit(http, &order.id, &body(order), patience).await;
            if submission.order_id().is_some() {
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Sent {
                order: order.clone(),
                started,
                submission,
            }
        })
        .buffer_unordered(clients.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    /// An answer with `status`, the replay header if `replayed`, and `body`.
    fn answer(status: u16, replayed: bool, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        if replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        Answer {
            status,
            headers,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_keyed_body_names_no_order_id_and_the_key_as_customer() {
        let order = PlannedOrder {
            id: "k-1".into(),
            lines: vec![("Pizza".into(), 2), ("Taco".into(), 1)],
            kind: saga_audit::mix::Kind::Small,
            cancel: false,
            cancel_after_ms: 0,
        };
        let body: serde_json::Value = serde_json::from_str(&keyed_body(&order)).unwrap();
        assert_eq!(
            body,
            json!({"customer": "k-1", "items": [
                {"product": "Pizza", "quantity": 2}, {"product": "Taco", "quantity": 1}
            ]})
        );
    }

    const ORDER: &str = r#"{"order": {"id": "o-1", "status": "processing"}, "links": {}}"#;

    #[test]
    fn a_202_is_created_or_replayed_by_its_header() {
        assert_eq!(
            Reply::of(&answer(202, false, ORDER)),
            Reply::Created {
                order_id: "o-1".into()
            }
        );
        let replayed = Reply::of(&answer(202, true, ORDER));
        assert_eq!(
            replayed,
            Reply::Replayed {
                order_id: "o-1".into()
            }
        );
        assert_eq!(replayed.order_id(), Some("o-1"));
        assert!(!replayed.is_transient());
        assert!(matches!(
            Reply::of(&answer(202, false, "{}")),
            Reply::Unexpected(_)
        ));
    }

    #[test]
    fn problems_are_told_apart_by_their_type() {
        let problem = |status, kind: &str| {
            Reply::of(&answer(
                status,
                false,
                &format!(r#"{{"type": "/problems/{kind}", "status": {status}}}"#),
            ))
        };
        assert_eq!(problem(409, "idempotency-key-in-flight"), Reply::InFlight);
        assert_eq!(problem(409, "duplicate-order"), Reply::DuplicateOrder);
        assert_eq!(problem(422, "idempotency-key-reused"), Reply::KeyReused);
        assert_eq!(problem(503, "storage"), Reply::Busy);
        assert_eq!(
            Reply::of(&answer(503, false, "overloaded")),
            Reply::Busy,
            "a 503 is busy whatever its body"
        );
        for other in [
            problem(409, "cannot-cancel"),
            problem(422, "invalid-order"),
            problem(400, "missing-idempotency-key"),
        ] {
            assert!(matches!(other, Reply::Unexpected(_)), "{other:?}");
            assert_eq!(other.order_id(), None);
        }
        assert!(problem(409, "idempotency-key-in-flight").is_transient());
        assert!(Reply::Busy.is_transient());
        assert!(!Reply::KeyReused.is_transient());
    }
}
