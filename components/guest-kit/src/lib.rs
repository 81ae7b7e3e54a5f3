//! Helpers shared by Orderly's components (wasm32-wasip2 guests): settings read from Spin
//! variables (durations, timeouts, the catalogue), requests read with a body limit, JSON and
//! problem responses, outbound HTTP with timeouts, bindings for the `wasi:keyvalue` interfaces
//! spin-sdk does not wrap, the adapters that give the native libraries Spin's SQLite
//! ([`SpinSql`]), key-value store ([`SpinKv`]) and wall clock, every service's fault-injection
//! controls ([`faults`]), the admin and internal guards ([`access`]), the services' shared
//! errors and routes ([`service`]), the workers' doorbells on Redis ([`RedisDoorbells`]), the
//! cron components' entry point ([`cron_component!`]), and (feature `services`) the HTTP
//! clients of the validator and the services ([`clients`]).

pub mod access;
#[cfg(feature = "services")]
pub mod clients;
mod clock;
mod cron;
mod doorbells;
pub mod faults;
mod http_out;
mod kv;
mod request;
pub mod service;
mod sql;

pub use clock::{WallClock, random_seed};
pub use doorbells::RedisDoorbells;
/// The plain-Rust helpers, from `guest-kit-core`.
pub use guest_kit_core::{error_chain, percent_decode, percent_encode, query_pairs};
pub use http_out::{FetchError, Fetched, Timeouts, call, fetch};
pub use kv::{KvError, SpinKv};
pub use request::{BodyError, Incoming, send, serve};
pub use sql::SpinSql;

use catalog::{Catalog, CatalogError};
use http_problem::Problem;
use spin_sdk::http::{Request, Response};
use std::time::Duration;

/// `wasi:keyvalue/store`, `atomics` and `batch` (`@0.2.0-draft2`), bound from the
/// `orderly:app/keyvalue-atomics` world in `wit/`: compare-and-swap and increment, which
/// spin-sdk does not wrap. Counters are 8-byte little-endian integers; never `set` them as text.
pub mod keyvalue {
    #[allow(missing_docs, reason = "generated bindings")]
    mod bindings {
        spin_sdk::wit_bindgen::generate!({
            path: "../../wit",
            world: "orderly:app/keyvalue-atomics",
            runtime_path: "spin_sdk::wit_bindgen::rt",
            generate_all,
        });
    }
    pub use bindings::wasi::keyvalue::{atomics, batch, store};
}

/// The request path below the component's route (`spin-path-info`), `/` when empty, for
/// handlers that take a whole [`Request`] (see [`Incoming`] for the streaming ones). Spin and
/// `orderly up` set the header on every HTTP request, so a missing one is treated as empty
/// (never the full request path, which would still hold the route's prefix).
pub fn path_info(request: &Request) -> String {
    guest_kit_core::path_info(
        request
            .header("spin-path-info")
            .and_then(|value| value.as_str()),
    )
}

/// The value of Spin variable `name`, if it is set and not empty (for settings readers).
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The value of Spin variable `name`, or `default` when it is unset or empty.
pub fn variable_or(name: &str, default: &str) -> String {
    variable(name).unwrap_or_else(|| default.to_owned())
}

/// A variable that should hold a whole number of milliseconds and does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable {name}: {text:?} is not a whole number of milliseconds")]
pub struct BadMillis {
    /// The variable.
    pub name: String,
    /// What it holds.
    pub text: String,
}

/// Spin variable `name` as a duration in milliseconds, `default_ms` when unset or empty.
pub fn millis_variable(name: &str, default_ms: u64) -> Result<Duration, BadMillis> {
    match variable(name) {
        None => Ok(Duration::from_millis(default_ms)),
        Some(text) => text
            .trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| BadMillis {
                name: name.to_owned(),
                text,
            }),
    }
}

/// Outbound timeouts from two variables (with their defaults in milliseconds): `connect` to
/// open the connection, `answer` for the first byte and between two chunks of the body.
pub fn timeouts_from_variables(
    connect: (&str, u64),
    answer: (&str, u64),
) -> Result<Timeouts, BadMillis> {
    let first_byte = millis_variable(answer.0, answer.1)?;
    Ok(Timeouts {
        connect: millis_variable(connect.0, connect.1)?,
        first_byte,
        between_bytes: first_byte,
    })
}

/// The product catalogue: the `catalog` variable's JSON when set, else the one shipped.
pub fn catalog() -> Result<Catalog, CatalogError> {
    match variable("catalog") {
        None => Ok(Catalog::standard()),
        Some(json) => Catalog::from_json(&json),
    }
}

/// A JSON response.
pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
        .build()
}

/// A problem response (`application/problem+json`).
pub fn problem(problem: &Problem) -> Response {
    Response::builder()
        .status(problem.status)
        .header("content-type", http_problem::CONTENT_TYPE)
        .body(problem.to_json())
        .build()
}

/// 404 Not Found, with `detail`.
pub fn not_found(detail: impl Into<String>) -> Response {
    problem(&Problem::new(404, "Not Found").with_detail(detail))
}

/// 405 Method Not Allowed, with an `Allow` header listing `allow` (e.g. `"GET, POST"`).
pub fn method_not_allowed(allow: &str) -> Response {
    let mut response =
        problem(&Problem::new(405, "Method Not Allowed").with_detail(format!("use {allow}")));
    response.set_header("allow", allow);
    response
}
