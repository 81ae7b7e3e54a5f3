//! `external-sim`: a third-party order validator, simulated. `POST /validate` judges an order;
//! `GET /health` reports as the simulated service would; `GET|POST /configure` (and the seed
//! lab's `POST /set_failure_mode`) switch fault injection at runtime. The configuration lives in
//! the key-value store, so every instance sees it.
//!
//! This crate only adapts HTTP to [`simulator_core`]: parse, decide, respond.

mod api;
mod state;

use api::ApiError;
use simulator_core::{Catalog, ConfigUpdate, Outcome, ProbeOutcome, ValidationRequest};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use state::FaultState;
use std::time::Duration;

#[http_component]
fn handle(request: Request) -> Response {
    route(&request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    let path = guest_kit::path_info(request);
    let method = request.method();
    match path.as_str() {
        "/validate" => match method {
            Method::Post => validate(request.body()),
            _ => Err(ApiError::MethodNotAllowed("POST")),
        },
        "/health" => match method {
            Method::Get => health(),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        "/configure" | "/set_failure_mode" => match method {
            Method::Post => configure(request.body()),
            Method::Get if path == "/configure" => Ok(guest_kit::json(
                200,
                &FaultState::open()?.snapshot()?.config,
            )),
            _ if path == "/configure" => Err(ApiError::MethodNotAllowed("GET, POST")),
            _ => Err(ApiError::MethodNotAllowed("POST")),
        },
        _ => Err(ApiError::NotFound(path)),
    }
}

fn validate(body: &[u8]) -> Result<Response, ApiError> {
    let state = FaultState::open()?;
    let snapshot = state.snapshot()?;
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
            let verdict = Catalog::standard().judge(&request);
            let mut answer = serde_json::to_value(&verdict).unwrap_or_default();
            answer["order_id"] = request.order_id.into();
            Ok(guest_kit::json(200, &answer))
        }
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
