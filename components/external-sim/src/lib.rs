//! `external-sim`: a third-party order validator, simulated. `POST /validate` judges an order
//! against the catalogue; `GET /health` reports as the simulated service would;
//! `GET|POST /configure` (and the seed lab's `POST /set_failure_mode`, `GET /get_failure_mode`)
//! switch fault injection at runtime; `GET /stats` counts the validation calls that reached
//! it. The configuration lives in the key-value store, so every instance sees it.
//!
//! This crate only adapts HTTP to [`simulator_core`] (verdicts) and to the fault controls every
//! service shares (`guest_kit::faults`): parse, decide, respond.

mod api;
mod stats;

use api::ApiError;
use faults::ProbeOutcome;
use guest_kit::Incoming;
use guest_kit::faults::FaultSwitch;
use guest_kit::service::CommonError;
use simulator_core::{ValidationRequest, judge};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;
use std::time::Duration;

/// The service name its fault configuration is kept under (`faults/external-sim/...`).
const SERVICE: &str = "external-sim";

/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    guest_kit::serve(request, out, MAX_BODY, async |request| {
        route(request).unwrap_or_else(ApiError::into_response)
    })
    .await;
}

fn route(request: &Incoming) -> Result<Response, ApiError> {
    if let Some(response) = guest_kit::faults::routes(SERVICE, request) {
        return Ok(response);
    }
    let path = request.path_info.as_str();
    match (path, &request.method) {
        ("/validate", Method::Post) => {
            request.require_json().map_err(CommonError::Refused)?;
            validate(&request.body)
        }
        ("/health", Method::Get) => health(),
        ("/stats", Method::Get) => Ok(guest_kit::json(
            200,
            &serde_json::json!({ "calls": stats::calls()? }),
        )),
        ("/validate", _) => Err(CommonError::MethodNotAllowed("POST").into()),
        ("/health" | "/stats", _) => Err(CommonError::MethodNotAllowed("GET").into()),
        _ => Err(CommonError::no_endpoint(SERVICE, path).into()),
    }
}

fn validate(body: &[u8]) -> Result<Response, ApiError> {
    let switch = FaultSwitch::open(SERVICE)?;
    stats::count_call()?;
    guest_kit::faults::apply(switch.decide()?).map_err(CommonError::Refused)?;
    let request =
        ValidationRequest::parse(body).map_err(|e| CommonError::BadBody(e.to_string()))?;
    let verdict = judge(&guest_kit::catalog().map_err(ApiError::Catalog)?, &request);
    let mut answer = serde_json::to_value(&verdict).unwrap_or_default();
    answer["order_id"] = request.order_id.into();
    Ok(guest_kit::json(200, &answer))
}

fn health() -> Result<Response, ApiError> {
    let config = FaultSwitch::open(SERVICE)?.config()?;
    let mode = serde_json::to_value(config.mode).unwrap_or_default();
    let (status, label) = match config.probe() {
        ProbeOutcome::Healthy => (200, "healthy"),
        ProbeOutcome::Degraded { delay_ms } => {
            std::thread::sleep(Duration::from_millis(u64::from(delay_ms)));
            (200, "degraded")
        }
        ProbeOutcome::Failing => (500, "failing"),
        ProbeOutcome::Down => (503, "down"),
    };
    Ok(guest_kit::json(
        status,
        &serde_json::json!({ "status": label, "mode": mode }),
    ))
}
