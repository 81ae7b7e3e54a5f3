//! `admin`: operator controls.
//!
//! - `GET /admin/dlq` (`?include_replayed=true&limit=`): dead letters, newest first.
//! - `POST /admin/dlq/:id/replay`: a dead job goes back to the queue (and a doorbell rings);
//!   a dead message is published again on its channel.
//! - `GET /admin/breaker`: the circuit breaker's state, window and transitions;
//!   `POST /admin/breaker {"state": "forced_open" | "disabled" | "closed"}` forces it.
//! - `GET /admin/stats`: orders by status, the job queue, dead letters.
//! - `DELETE /admin/orders`: deletes every order, job, event, key and dead letter (the
//!   classroom seed's `clear_orders`).
//! - `GET /admin/health`.
//!
//! Access: with the `admin_token` variable set, a `Authorization: Bearer <token>` header is
//! required; without it, only loopback clients (and service-chained calls) are served.

mod api;

use api::ApiError;
use guest_kit::{Incoming, SpinKv, SpinSql, WallClock};
use ledger::{DeadLetterSource, Ledger, ReplayOutcome};
use orders_core::Timestamp;
use pipeline::{DEPENDENCY, Doorbell, WorkerSettings};
use resilience::{CircuitBreaker, Clock, ForcedState};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// The largest request body accepted.
const MAX_BODY: usize = 4 * 1024;
/// Dead letters a list returns when the client does not say.
const DEFAULT_LIMIT: u32 = 100;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    guest_kit::serve(request, out, MAX_BODY, async |request| {
        route(request).unwrap_or_else(ApiError::into_response)
    })
    .await;
}

fn route(request: &Incoming) -> Result<Response, ApiError> {
    let path = request.path_info.as_str();
    if path == "/health" {
        return match request.method {
            Method::Get => Ok(guest_kit::json(
                200,
                &serde_json::json!({"status": "healthy"}),
            )),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        };
    }
    guest_kit::access::admin(request).map_err(ApiError::Refused)?;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (segments.as_slice(), &request.method) {
        (["dlq"], Method::Get) => dead_letters(&request.query),
        (["dlq"], _) => Err(ApiError::MethodNotAllowed("GET")),
        (["dlq", id, "replay"], Method::Post) => replay(id),
        (["dlq", _, "replay"], _) => Err(ApiError::MethodNotAllowed("POST")),
        (["breaker"], Method::Get) => breaker_state(),
        (["breaker"], Method::Post) => {
            request.require_json().map_err(ApiError::Refused)?;
            force_breaker(&request.body)
        }
        (["breaker"], _) => Err(ApiError::MethodNotAllowed("GET, POST")),
        (["stats"], Method::Get) => stats(),
        (["stats"], _) => Err(ApiError::MethodNotAllowed("GET")),
        (["orders"], Method::Delete) => {
            open_ledger()?.clear_all()?;
            Ok(guest_kit::json(200, &serde_json::json!({"cleared": true})))
        }
        (["orders"], _) => Err(ApiError::MethodNotAllowed("DELETE")),
        _ => Err(ApiError::NotFound(request.path.clone())),
    }
}

fn open_ledger() -> Result<Ledger<SpinSql>, ApiError> {
    SpinSql::open_default()
        .map(Ledger::new)
        .map_err(|error| ApiError::Storage(Box::new(error)))
}

fn dead_letters(query: &str) -> Result<Response, ApiError> {
    let mut include_replayed = false;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in guest_kit::query_pairs(query) {
        match key.as_str() {
            "include_replayed" => include_replayed = value == "true" || value == "1",
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or(ApiError::BadQuery {
                        parameter: "limit",
                        detail: "must be a whole number from 1 to 1000".into(),
                    })?
            }
            _ => {}
        }
    }
    let entries = open_ledger()?.dead_letters(include_replayed, limit)?;
    let entries: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|entry| {
            serde_json::json!({
                "id": entry.id,
                "source": match entry.source {
                    DeadLetterSource::Job => "job",
                    DeadLetterSource::Message => "message",
                },
                "order_id": entry.order_id,
                "job_id": entry.job_id,
                "channel": entry.channel,
                "payload": entry.payload.as_deref().map(String::from_utf8_lossy),
                "reason": entry.reason,
                "attempts": entry.attempts,
                "created_at": entry.created_at,
                "replayed_at": entry.replayed_at,
            })
        })
        .collect();
    Ok(guest_kit::json(
        200,
        &serde_json::json!({"count": entries.len(), "dead_letters": entries}),
    ))
}

/// Replays dead letter `id`. A job goes back to the queue (atomically) and a doorbell rings;
/// a message is published again first and only then marked replayed, so a failed publish
/// leaves it in the queue.
fn replay(id: &str) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no dead letter {id:?}")))?;
    let now = Timestamp(WallClock.now_ms());
    let address =
        guest_kit::variable("redis_url").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let publish = |channel: &str, payload: &[u8]| {
        spin_sdk::redis::Connection::open(&address)
            .and_then(|redis| redis.publish(channel, payload))
    };
    let ledger = open_ledger()?;
    let entry = ledger
        .dead_letter(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    if let Some(at) = entry.replayed_at {
        return Err(ApiError::AlreadyReplayed { id, at });
    }
    if let (DeadLetterSource::Message, Some(channel), Some(payload)) =
        (entry.source, &entry.channel, &entry.payload)
    {
        publish(channel, payload).map_err(|error| ApiError::Redis(format!("{error:?}")))?;
    }
    match ledger.replay(id, now)? {
        ReplayOutcome::Job { order_id } => {
            let rang = orders_core::OrderId::parse(&order_id).ok().map(|order| {
                publish(
                    pipeline::JOBS_CHANNEL,
                    &Doorbell::for_order(&order).to_bytes(),
                )
            });
            if let Some(Err(error)) = rang {
                eprintln!(
                    "admin: replay doorbell not published ({error:?}); the sweeper will find the job"
                );
            }
            Ok(guest_kit::json(
                200,
                &serde_json::json!({"replayed": id, "order_id": order_id, "requeued": true}),
            ))
        }
        ReplayOutcome::Message { channel, .. } => Ok(guest_kit::json(
            200,
            &serde_json::json!({"replayed": id, "republished_on": channel}),
        )),
        ReplayOutcome::OrderSettled { order_id } => Err(ApiError::OrderSettled { id, order_id }),
        ReplayOutcome::NotFound => Err(ApiError::NotFound(format!("no dead letter {id}"))),
        ReplayOutcome::AlreadyReplayed { at } => Err(ApiError::AlreadyReplayed { id, at }),
    }
}

/// The pipeline's counts: orders by status, the job queue, dead letters.
fn stats() -> Result<Response, ApiError> {
    let stats = open_ledger()?.stats(Timestamp(WallClock.now_ms()))?;
    let orders: serde_json::Map<String, serde_json::Value> = stats
        .orders
        .iter()
        .map(|(status, count)| (status.as_str().to_owned(), (*count).into()))
        .collect();
    Ok(guest_kit::json(
        200,
        &serde_json::json!({
            "orders": orders,
            "jobs_due": stats.jobs_due,
            "jobs_deferred": stats.jobs_deferred,
            "jobs_leased": stats.jobs_leased,
            "oldest_due_age_ms": stats.oldest_due_age_ms,
            "dead_letters": stats.dead_letters,
        }),
    ))
}

fn settings() -> Result<WorkerSettings, ApiError> {
    WorkerSettings::read(guest_kit::variable).map_err(ApiError::Settings)
}

fn breaker_state() -> Result<Response, ApiError> {
    let settings = settings()?;
    let store = SpinKv::open("default").map_err(|e| ApiError::Storage(Box::new(e)))?;
    let breaker = CircuitBreaker::new(&store, &WallClock, DEPENDENCY, settings.breaker.clone());
    let record = breaker.record_snapshot()?;
    let window = breaker.window_totals()?;
    let transitions: Vec<serde_json::Value> = breaker
        .transition_counts()?
        .into_iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|(from, to, count)| serde_json::json!({"from": from, "to": to, "count": count}))
        .collect();
    Ok(guest_kit::json(
        200,
        &serde_json::json!({
            "name": DEPENDENCY,
            "state": record.state,
            "generation": record.generation,
            "since": Timestamp(record.since_ms),
            "open_until": (record.state == resilience::CircuitState::Open).then_some(Timestamp(record.open_until_ms)),
            "trips": record.trips,
            "last_reason": record.last_reason,
            "window": {
                "calls": window.calls,
                "failures": window.failures,
                "slow": window.slow,
                "retries": window.retries,
                "seconds": settings.breaker.window_ms / 1000,
            },
            "transitions": transitions,
            "policy": {
                "min_calls": settings.breaker.min_calls,
                "failure_rate": settings.breaker.failure_rate,
                "slow_call_ms": settings.breaker.slow_call_ms,
                "slow_call_rate": settings.breaker.slow_call_rate,
                "consecutive_failures": settings.breaker.consecutive_failures,
                "open_ms": settings.breaker.open_ms,
                "open_max_ms": settings.breaker.open_max_ms,
                "half_open_probes": settings.breaker.half_open_probes,
            },
        }),
    ))
}

fn force_breaker(body: &[u8]) -> Result<Response, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let target = match value.get("state").and_then(|state| state.as_str()) {
        Some("forced_open") => ForcedState::Open,
        Some("disabled") => ForcedState::Disabled,
        Some("closed") => ForcedState::Closed,
        _ => {
            return Err(ApiError::Invalid {
                field: "state",
                detail: "must be \"forced_open\", \"disabled\" or \"closed\"".into(),
            });
        }
    };
    let settings = settings()?;
    let store = SpinKv::open("default").map_err(|e| ApiError::Storage(Box::new(e)))?;
    let breaker = CircuitBreaker::new(&store, &WallClock, DEPENDENCY, settings.breaker);
    let transition = breaker.force(target)?;
    Ok(guest_kit::json(
        200,
        &serde_json::json!({
            "from": transition.from,
            "to": transition.to,
            "generation": transition.generation,
            "at": Timestamp(transition.at_ms),
        }),
    ))
}
