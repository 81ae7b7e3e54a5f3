//! `external-sim`: a third-party order validator, simulated. `POST /validate` judges an order
//! against the catalogue; `GET /health` reports as the simulated service would;
//! `GET|POST /configure` (and the seed lab's `POST /set_failure_mode`, `GET /get_failure_mode`)
//! switch fault injection at runtime; `GET /stats` counts the validation calls that reached
//! it. The configuration lives in the key-value store, so every instance sees it.
//!
//! This crate only adapts HTTP to [`simulator_core`]: parse, decide, respond.

mod api;
mod state;

use api::ApiError;
use catalog::Catalog;
use guest_kit::Incoming;
use simulator_core::{ConfigUpdate, Outcome, ProbeOutcome, ValidationRequest, judge};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;
use state::FaultState;
use std::time::Duration;

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
    let path = request.path_info.as_str();
    let method = &request.method;
    let post_json = |request: &Incoming| request.require_json().map_err(ApiError::Refused);
    match (path, method) {
        ("/validate", Method::Post) => {
            post_json(request)?;
            validate(&request.body)
        }
        ("/health", Method::Get) => health(),
        ("/configure" | "/set_failure_mode", Method::Post) => {
            post_json(request)?;
            configure(&request.body)
        }
        ("/configure", Method::Get) => Ok(guest_kit::json(
            200,
            &FaultState::open()?.snapshot()?.config,
        )),
        ("/get_failure_mode", Method::Get) => {
            let config = FaultState::open()?.snapshot()?.config;
            Ok(guest_kit::json(
                200,
                &serde_json::json!({ "mode": config.mode }),
            ))
        }
        ("/stats", Method::Get) => Ok(guest_kit::json(
            200,
            &serde_json::json!({ "calls": FaultState::open()?.calls()? }),
        )),
        ("/validate" | "/set_failure_mode", _) => Err(ApiError::MethodNotAllowed("POST")),
        ("/configure", _) => Err(ApiError::MethodNotAllowed("GET, POST")),
        ("/health" | "/get_failure_mode" | "/stats", _) => Err(ApiError::MethodNotAllowed("GET")),
        _ => Err(ApiError::NotFound(path.to_owned())),
    }
}

fn validate(body: &[u8]) -> Result<Response, ApiError> {
    let state = FaultState::open()?;
    let snapshot = state.snapshot()?;
    state.count_call()?;
    let config = &snapshot.config;
    let draw = if config.needs_draw() {
        state.next_draw(&snapshot)?
    } else {
        0
    };
    match config.decide(draw) {
        Outcome::Unavailable => Err(ApiError::SimulatedOutage),
        Outcome::Fail { delay_ms } => {
            pause(delay_ms);
            Err(ApiError::InjectedFault)
        }
        Outcome::Respond { delay_ms } => {
            pause(delay_ms);
            let request =
                ValidationRequest::parse(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let verdict = judge(&catalog()?, &request);
            let mut answer = serde_json::to_value(&verdict).unwrap_or_default();
            answer["order_id"] = request.order_id.into();
            Ok(guest_kit::json(200, &answer))
        }
    }
}

/// The catalogue: the `catalog` variable's JSON when set, else the one shipped.
fn catalog() -> Result<Catalog, ApiError> {
    match guest_kit::variable("catalog") {
        None => Ok(Catalog::standard()),
        Some(json) => Catalog::from_json(&json).map_err(ApiError::Catalog),
    }
}

fn health() -> Result<Response, ApiError> {
    let config = FaultState::open()?.snapshot()?.config;
    let mode = serde_json::to_value(config.mode).unwrap_or_default();
    let (status, label) = match config.probe() {
        ProbeOutcome::Healthy => (200, "healthy"),
        ProbeOutcome::Degraded { delay_ms } => {
            pause(delay_ms);
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

fn configure(body: &[u8]) -> Result<Response, ApiError> {
    let update = ConfigUpdate::parse(body)?;
    let config = FaultState::open()?.update(&update)?;
    Ok(guest_kit::json(200, &config))
}

fn pause(delay_ms: u32) {
    if delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(u64::from(delay_ms)));
    }
}
