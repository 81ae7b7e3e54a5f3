//! `POST /orders?mode=sync`: the order goes through the same intake (idempotency key
//! honoured), then [`CheckoutParts::run`](checkout::CheckoutParts::run) validates, reserves and pays for it while the caller
//! waits, by service chaining, until `sync_deadline_ms` (or the client's shorter
//! `Prefer: wait=N`). 201 with the order (`paid`; the fulfilment worker ships it), or the
//! cascaded problem: 422 rejected, 409 out of stock, 402 declined, 503 a dependency failing,
//! 504 one too slow, with what was done undone. A replayed request answers from the order's
//! state now.

use crate::api::ApiError;
use checkout::{Checkout, CheckoutParts, Reply};
use fulfilment::FulfilmentSettings;
use guest_kit::clients::{HttpServices, HttpValidator};
use guest_kit::{Incoming, RedisDoorbells, SpinKv, SpinSql, WallClock};
use http_problem::Problem;
use ledger::{JobHold, Ledger};
use orders_core::{OrderId, OrderStatus, Timestamp};
use pipeline::{IntakeResult, WorkerSettings};
use resilience::Clock;
use spin_sdk::http::Response;

/// Runs a `POST /orders?mode=sync` request.
pub async fn create(request: &Incoming) -> Result<Response, ApiError> {
    let arrived = WallClock.now_ms();
    let limit = guest_kit::variable("sync_deadline_ms")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(checkout::DEFAULT_SYNC_DEADLINE_MS);
    let deadline = checkout::deadline_ms(arrived, limit, request.header("prefer"));
    // The request is the worker of its own order's jobs, holding them from intake on (until
    // its deadline, when a worker may take over), so no worker races it.
    let worker = format!("sync-{:016x}", guest_kit::random_seed());
    let hold = JobHold {
        worker: &worker,
        until: Timestamp(deadline),
    };
    let (ledger, key, result) = crate::intake(request, Some(hold))?;
    let order_id = match result {
        IntakeResult::Created { order, .. } => order.id,
        IntakeResult::Replay { order_id, .. } => return replayed(&ledger, &order_id),
        other => return Err(crate::refusal(other)),
    };
    let outcome = run(&ledger, &order_id, &worker, deadline).await;
    crate::complete_key(&ledger, &key);
    let outcome = outcome?;
    let detail = match &outcome {
        Checkout::Paid | Checkout::Continuing => None,
        Checkout::Rejected { detail, reason, .. } => detail.clone().or(reason.clone()),
        Checkout::Refused { detail, .. }
        | Checkout::Unavailable { detail }
        | Checkout::TimedOut { detail } => Some(detail.clone()),
    };
    answer(&ledger, &order_id, checkout::reply(&outcome), detail, false)
}

/// Runs the synchronous path for `order_id` over Spin's stores and chained services.
async fn run(
    ledger: &Ledger<SpinSql>,
    order_id: &OrderId,
    worker: &str,
    deadline_ms: u64,
) -> Result<Checkout, ApiError> {
    let store = SpinKv::open("default").map_err(storage)?;
    let validation = WorkerSettings::read(guest_kit::variable).map_err(storage)?;
    let fulfilment = FulfilmentSettings::read(guest_kit::variable).map_err(storage)?;
    let validator = HttpValidator::chained(deadline_ms).map_err(storage)?;
    let services = HttpServices::chained(deadline_ms).map_err(storage)?;
    let prices = guest_kit::catalog().map_err(storage)?;
    let publisher = RedisDoorbells::from_variables();
    let parts = CheckoutParts {
        ledger,
        store: &store,
        clock: &WallClock,
        validator: &validator,
        services: &services,
        prices: &prices,
        validation: &validation,
        fulfilment: &fulfilment,
        publisher: &publisher,
    };
    parts
        .run(order_id, worker, deadline_ms)
        .await
        .map_err(storage)
}

/// The answer to a replayed request: from the order's state now.
fn replayed(ledger: &Ledger<SpinSql>, order_id: &str) -> Result<Response, ApiError> {
    let id = OrderId::parse(order_id)
        .map_err(|error| ApiError::Storage(format!("stored order id: {error}").into()))?;
    let order = ledger
        .order(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?
        .order;
    let reply = checkout::replay(order.status, order.reason.as_deref());
    answer(ledger, &id, reply, order.detail.clone(), true)
}

/// `reply` with the order as it is now, and the workers woken for what is left to do.
fn answer(
    ledger: &Ledger<SpinSql>,
    id: &OrderId,
    reply: Reply,
    detail: Option<String>,
    replayed: bool,
) -> Result<Response, ApiError> {
    let order = crate::order_body(ledger, id)?;
    let status = order["status"].as_str().unwrap_or_default().to_owned();
    if !replayed {
        wake(&status, id);
    }
    let mut response = match reply.problem {
        None => guest_kit::json(reply.status, &serde_json::json!({ "order": order })),
        Some((kind, title)) => {
            let mut problem = Problem::new(reply.status, title)
                .with_type(kind)
                .with("order_id", id.as_str())
                .with("status", status)
                .with("order", order);
            if let Some(detail) = detail {
                problem = problem.with_detail(detail);
            }
            guest_kit::problem(&problem)
        }
    };
    response.set_header("location", format!("/orders/{id}"));
    if replayed {
        response.set_header("idempotent-replayed", "true");
    }
    Ok(response)
}

/// Rings the doorbell of the worker that carries on with an order in `status`: shipping a
/// paid order, finishing an undoing, or a job the synchronous path did not get to.
fn wake(status: &str, id: &OrderId) {
    match status.parse::<OrderStatus>() {
        Ok(OrderStatus::Processing) => crate::publish_doorbell(pipeline::JOBS_CHANNEL, id),
        Ok(
            OrderStatus::Validated
            | OrderStatus::Reserved
            | OrderStatus::Paid
            | OrderStatus::Cancelling,
        ) => crate::publish_doorbell(pipeline::FULFILMENT_CHANNEL, id),
        _ => {}
    }
}

fn storage(error: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Storage(Box::new(error))
}
