//! `orders`: accepts orders and serves them back.
//!
//! - `POST /orders` (JSON, with an `Idempotency-Key` header) stores the order, its validation
//!   job and the key in one SQLite transaction, answers 202 at once, then rings the workers'
//!   doorbell on Redis (a lost doorbell only delays the order until the next sweep).
//! - `GET /orders/:id` (with the validation job's state while it runs, and the fulfilment
//!   saga's once it began), `GET /orders/:id/events` (the timeline, fulfilment steps
//!   included), `GET /orders?status=&limit=&after=` (pages), `GET /orders/health` (a deep
//!   check of the database).
//! - `POST /orders/:id/cancel`: an order still being validated is cancelled at once; one in
//!   fulfilment has its saga undo what it did (202 either way, with the order); one already
//!   shipped or decided otherwise is refused (409).
//!
//! This crate only adapts HTTP to [`pipeline`] and [`ledger`]: parse, decide, store, respond.

mod api;
mod sync;

use api::ApiError;
use guest_kit::{Incoming, SpinKv, SpinSql, WallClock};
use ledger::{CancelOutcome, JobHold, Ledger, PageCursor};
use orders_core::{NewOrder, OrderId, OrderStatus, Timestamp};
use pipeline::{Doorbell, IntakeResult, IntakeSettings};
use resilience::{Clock, IdempotencyKey};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// Orders a list returns when the client does not say.
const DEFAULT_LIMIT: u32 = 100;
/// The most orders one list returns.
const MAX_LIMIT: u32 = 1000;
/// The largest request body accepted, unless the `max_body_bytes` variable says otherwise.
const DEFAULT_MAX_BODY: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let max_body = guest_kit::variable("max_body_bytes")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BODY);
    let request = match Incoming::read(request, max_body).await {
        Ok(request) => request,
        Err(error) => return guest_kit::send(out, error.into_response()).await,
    };
    if request.method == Method::Post && is_collection(&request.path_info) {
        return create(&request, out).await;
    }
    let response = route(&request).unwrap_or_else(ApiError::into_response);
    guest_kit::send(out, response).await;
}

/// `/orders` and `/orders/` name the collection; `//` and deeper empty segments name nothing.
fn is_collection(path_info: &str) -> bool {
    path_info == "/"
}

fn route(request: &Incoming) -> Result<Response, ApiError> {
    let path = request.path_info.as_str();
    if is_collection(path) {
        return match request.method {
            Method::Get => list(&request.query),
            _ => Err(ApiError::MethodNotAllowed("GET, POST")),
        };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get_only = |answer: fn(&str) -> Result<Response, ApiError>, id: &str| match request.method {
        Method::Get => answer(id),
        _ => Err(ApiError::MethodNotAllowed("GET")),
    };
    match segments.as_slice() {
        ["health"] => get_only(|_| health(), ""),
        [id] if !id.is_empty() => get_only(show, id),
        [id, "events"] if !id.is_empty() => get_only(events, id),
        [id, "cancel"] if !id.is_empty() => match request.method {
            Method::Post => cancel(id),
            _ => Err(ApiError::MethodNotAllowed("POST")),
        },
        _ => Err(ApiError::NotFound(format!(
            "no resource at {}",
            request.path
        ))),
    }
}

async fn create(request: &Incoming, out: ResponseOutparam) {
    let sync = match mode(&request.query) {
        Ok(sync) => sync,
        Err(error) => return guest_kit::send(out, error.into_response()).await,
    };
    if sync {
        let response = sync::create(request)
            .await
            .unwrap_or_else(ApiError::into_response);
        return guest_kit::send(out, response).await;
    }
    match accept(request) {
        Ok((response, Some(order_id))) => {
            guest_kit::send(out, response).await;
            // The client has its answer and the order is safe in SQLite: wake a worker.
            ring(&order_id);
        }
        Ok((response, None)) => guest_kit::send(out, response).await,
        Err(error) => guest_kit::send(out, error.into_response()).await,
    }
}

/// Whether `POST /orders` runs synchronously: `?mode=sync` (`?mode=async`, the default,
/// accepts at once).
fn mode(query: &str) -> Result<bool, ApiError> {
    let mut sync = false;
    for (key, value) in guest_kit::query_pairs(query) {
        if key == "mode" {
            sync = match value.as_str() {
                "sync" => true,
                "async" => false,
                _ => {
                    return Err(ApiError::BadQuery {
                        parameter: "mode",
                        detail: "must be sync or async".into(),
                    });
                }
            };
        }
    }
    Ok(sync)
}

/// Stores the order; the answer, and for a new order its id (to ring its doorbell after
/// answering). The key is marked complete before the answer goes out, so a client that got
/// its answer and retries gets it replayed; a duplicate that arrives between the order's
/// commit and that mark is told the first request is still in flight (409).
fn accept(request: &Incoming) -> Result<(Response, Option<OrderId>), ApiError> {
    let (ledger, key, result) = intake(request, None)?;
    match result {
        IntakeResult::Created { order, body } => {
            complete_key(&ledger, &key);
            let response = accepted(order.id.as_str(), body, false);
            Ok((response, Some(order.id)))
        }
        IntakeResult::Replay { order_id, body } => Ok((accepted(&order_id, body, true), None)),
        other => Err(refusal(other)),
    }
}

/// Reads and stores a `POST /orders` request through the ledger's intake (the new order's
/// validation job held by `hold`, if given): the ledger, the request's idempotency key, and
/// what the intake found.
fn intake(
    request: &Incoming,
    hold: Option<JobHold<'_>>,
) -> Result<(Ledger<SpinSql>, IdempotencyKey, IntakeResult), ApiError> {
    request.require_json().map_err(ApiError::Refused)?;
    let key = request
        .header("idempotency-key")
        .ok_or(ApiError::MissingKey)
        .and_then(|value| IdempotencyKey::parse(value).map_err(ApiError::InvalidKey))?;
    let new = NewOrder::parse(&request.body)?;
    let settings = IntakeSettings::read(guest_kit::variable).unwrap_or_else(|error| {
        eprintln!("orders: {error}; using the defaults");
        IntakeSettings::read(|_| None).expect("the defaults are valid")
    });
    let ledger = open_ledger()?;
    let now = Timestamp(WallClock.now_ms());
    let body_of = |order: &orders_core::Order| {
        serde_json::to_string(&serde_json::json!({
            "order": order,
            "links": links(order.id.as_str()),
        }))
        .unwrap_or_default()
    };
    let result = pipeline::accept(&ledger, &key, new, now, entropy(), &settings, hold, body_of)?;
    Ok((ledger, key, result))
}

/// Marks the key's first request answered. On failure the order is stored all the same; the
/// key completes on its own once its in-flight lock passes (duplicates get 409 until then).
fn complete_key(ledger: &Ledger<SpinSql>, key: &IdempotencyKey) {
    if let Err(error) = pipeline::complete(ledger, key) {
        eprintln!(
            "orders: could not mark key {key} complete: {}",
            guest_kit::error_chain(&error)
        );
    }
}

/// The error for an intake that stored nothing and has no answer to replay.
fn refusal(result: IntakeResult) -> ApiError {
    match result {
        IntakeResult::InFlight { retry_after_ms } => ApiError::KeyInFlight {
            retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
        },
        IntakeResult::KeyReused => ApiError::KeyReused,
        IntakeResult::OrderIdTaken(id) => ApiError::Duplicate(id.to_string()),
        IntakeResult::Created { .. } | IntakeResult::Replay { .. } => {
            unreachable!("a stored or replayed order is answered, not refused")
        }
    }
}

fn accepted(order_id: &str, body: String, replayed: bool) -> Response {
    let mut builder = Response::builder();
    builder
        .status(202)
        .header("content-type", "application/json")
        .header("location", format!("/orders/{order_id}"));
    if replayed {
        builder.header("idempotent-replayed", "true");
    }
    builder.body(body).build()
}

fn links(id: &str) -> serde_json::Value {
    serde_json::json!({
        "self": format!("/orders/{id}"),
        "events": format!("/orders/{id}/events"),
        "cancel": format!("/orders/{id}/cancel"),
    })
}

/// Publishes the doorbell for a new order, unless a worker is draining already (it will find
/// the order) or the circuit is open (the sweep takes care of the order). A failure is logged, not fatal: the sweeper finds every due job within a second
/// or so.
fn ring(order_id: &OrderId) {
    let busy = SpinKv::open("default")
        .map_err(|error| error.to_string())
        .and_then(|store| {
            let breaker = resilience::read_settings(guest_kit::variable)
                .map(|settings| settings.breaker)
                .unwrap_or_default();
            pipeline::doorbell_needed(&store, &WallClock, &breaker)
                .map_err(|error| error.to_string())
        });
    match busy {
        Ok(false) => return,
        Ok(true) => {}
        Err(error) => {
            eprintln!("orders: cannot tell whether a doorbell is needed ({error}); ringing")
        }
    }
    publish_doorbell(pipeline::JOBS_CHANNEL, order_id);
}

/// Publishes `order_id`'s doorbell on `channel`. A failure is logged, not fatal: that
/// channel's sweeper finds every due job within a second or so.
fn publish_doorbell(channel: &str, order_id: &OrderId) {
    let address = guest_kit::variable_or("redis_url", "redis://127.0.0.1:6379");
    let published = spin_sdk::redis::Connection::open(&address)
        .and_then(|redis| redis.publish(channel, &Doorbell::for_order(order_id).to_bytes()));
    if let Err(error) = published {
        eprintln!(
            "orders: doorbell for {order_id} on {channel} not published ({error}); the sweeper \
             will find it"
        );
    }
}

fn show(id: &str) -> Result<Response, ApiError> {
    let id = OrderId::parse(id).map_err(|_| ApiError::NotFound(format!("no order {id:?}")))?;
    let ledger = open_ledger()?;
    Ok(guest_kit::json(200, &order_body(&ledger, &id)?))
}

/// `POST /orders/:id/cancel`: asks the ledger to cancel; 202 with the order when it is
/// cancelled (the notification service is woken) or being undone (the fulfilment worker is
/// woken to undo it now).
fn cancel(id: &str) -> Result<Response, ApiError> {
    let id = OrderId::parse(id).map_err(|error| ApiError::BadOrderId(error.to_string()))?;
    let ledger = open_ledger()?;
    let now = Timestamp(WallClock.now_ms());
    match ledger.request_cancel(&id, now, "cancelled at the customer's request")? {
        CancelOutcome::Cancelled => publish_doorbell(pipeline::EVENTS_CHANNEL, &id),
        CancelOutcome::Cancelling => publish_doorbell(pipeline::FULFILMENT_CHANNEL, &id),
        CancelOutcome::Refused(status) => return Err(ApiError::CannotCancel(status)),
        CancelOutcome::NotFound => return Err(ApiError::NotFound(format!("no order {id}"))),
    }
    Ok(guest_kit::json(202, &order_body(&ledger, &id)?))
}

/// Order `id` as `GET /orders/:id` shows it: the order, its validation job while it runs, its
/// fulfilment saga once it began (`fulfilment.saga`: its phase, next step or compensation,
/// and why it is being undone; `fulfilment.cancel_requested`: the customer's note), links.
fn order_body(ledger: &Ledger<SpinSql>, id: &OrderId) -> Result<serde_json::Value, ApiError> {
    let view = ledger
        .order(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?;
    let mut body = serde_json::to_value(&view.order).unwrap_or_default();
    if let Some(job) = view.job {
        body["validation"] = serde_json::json!({
            "attempts": job.attempts,
            "next_attempt_at": job.next_attempt_at,
            "deferrals": job.deferrals,
            "last_error": job.last_error,
            "last_attempt_at": job.last_attempt_at,
            "leased_until": job.leased_until,
            "dead_lettered": job.dead_lettered,
            "deadline_at": job.deadline_at,
        });
    }
    if let Some(saga) = ledger.sagas(&[id.as_str()])?.into_iter().next() {
        let state = saga
            .state
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|error| {
                ApiError::Storage(format!("order {id}: the saga is unreadable: {error}").into())
            })?;
        body["fulfilment"] = serde_json::json!({
            "saga": state,
            "cancel_requested": saga.cancel_requested,
        });
    }
    body["links"] = links(id.as_str());
    Ok(body)
}

fn events(id: &str) -> Result<Response, ApiError> {
    let id = OrderId::parse(id).map_err(|_| ApiError::NotFound(format!("no order {id:?}")))?;
    let ledger = open_ledger()?;
    if ledger.order(&id)?.is_none() {
        return Err(ApiError::NotFound(format!("no order {id}")));
    }
    let events = ledger.events(&id)?;
    Ok(guest_kit::json(
        200,
        &serde_json::json!({ "order_id": id, "count": events.len(), "events": events }),
    ))
}

fn list(query: &str) -> Result<Response, ApiError> {
    let mut status = None;
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in guest_kit::query_pairs(query) {
        match key.as_str() {
            "status" => {
                status = Some(
                    value
                        .parse::<OrderStatus>()
                        .map_err(|e| ApiError::BadQuery {
                            parameter: "status",
                            detail: e.to_string(),
                        })?,
                )
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| ApiError::BadQuery {
                        parameter: "limit",
                        detail: format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    })?
            }
            "after" => after = Some(PageCursor::parse(&value)?),
            _ => {}
        }
    }
    let ledger = open_ledger()?;
    let page = ledger.orders(status, after.as_ref(), limit)?;
    let next = page.next.map(|cursor| cursor.to_string());
    Ok(guest_kit::json(
        200,
        &serde_json::json!({ "count": page.orders.len(), "orders": page.orders, "next": next }),
    ))
}

/// A deep health check: the database answers a query.
fn health() -> Result<Response, ApiError> {
    let started = WallClock.now_ms();
    let ledger = open_ledger()?;
    let probe = ledger.probe_work(pipeline::JOB_KIND, Timestamp(started), None);
    let latency_ms = WallClock.now_ms().saturating_sub(started);
    Ok(match probe {
        Ok(_) => guest_kit::json(
            200,
            &serde_json::json!({"status": "healthy", "checks": {"database": {"status": "healthy", "latency_ms": latency_ms}}}),
        ),
        Err(error) => guest_kit::json(
            503,
            &serde_json::json!({"status": "unhealthy", "checks": {"database": {"status": "unhealthy", "error": error.to_string()}}}),
        ),
    })
}

/// The order ledger in the app's `default` SQLite database.
fn open_ledger() -> Result<Ledger<SpinSql>, ApiError> {
    SpinSql::open_default()
        .map(Ledger::new)
        .map_err(|error| ApiError::Storage(Box::new(error)))
}

/// Random bits for new ids, from the host's `wasi:random`.
fn entropy() -> [u8; 10] {
    let high = guest_kit::random_seed().to_le_bytes();
    let low = guest_kit::random_seed().to_le_bytes();
    let mut entropy = [0; 10];
    entropy[..8].copy_from_slice(&high);
    entropy[8..].copy_from_slice(&low[..2]);
    entropy
}
