//! Fault injection inside a service: the same controls in every component (see the `faults`
//! crate for the configuration and its bodies), kept in the key-value store so every instance
//! of the service sees them.
//!
//! A service wires them in with two calls: [`routes`] answers `GET|POST /configure`,
//! `POST /set_failure_mode` and `GET /get_failure_mode` (and nothing else), and [`inject`],
//! called before the service's own work, waits the configured delay or answers in its place
//! with the injected 500 or 503:
//!
//! ```no_run
//! use guest_kit::Incoming;
//! use spin_sdk::http::Response;
//!
//! fn route(request: &Incoming) -> Response {
//!     if let Some(response) = guest_kit::faults::routes("inventory", request) {
//!         return response;
//!     }
//!     if let Err(response) = guest_kit::faults::inject("inventory") {
//!         return response;
//!     }
//!     guest_kit::json(200, &"the service's own answer")
//! }
//! ```
//!
//! Keys, for service `s`: `faults/s/config` holds the configuration and its seed generation
//! (JSON); `faults/s/draws/{generation}` counts the calls drawn under that generation. Each time
//! a seed is set the generation goes up, so a call is numbered in the sequence of the
//! configuration it read and replaying a seed never mixes two runs. Updates are
//! compare-and-swap, so concurrent partial updates do not overwrite each other, except the very
//! first write, which creates the key: the store has no compare-and-swap on a missing key (a
//! swap after `current()` found nothing is an unconditional write in Spin), so two racing first
//! updates may lose one's fields.

use crate::{Incoming, SpinKv, error_chain, json, method_not_allowed, problem};
use faults::{ConfigError, ConfigUpdate, FaultConfig, Outcome};
use http_problem::Problem;
use resilience::KvStore;
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Method, Response};
use std::time::Duration;

/// How many times a lost compare-and-swap is retried before giving up.
const MAX_CAS_ATTEMPTS: u32 = 16;

/// What can go wrong reading or changing a service's fault configuration.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The key-value store failed.
    #[error("the key-value store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The stored configuration is not one.
    #[error("the stored fault configuration at {key:?} is unreadable")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// Other instances kept changing the configuration.
    #[error("the fault configuration at {key:?} kept changing: gave up after {attempts} attempts")]
    Contended {
        /// Its key.
        key: String,
        /// Compare-and-swap attempts made.
        attempts: u32,
    },
}

impl FaultError {
    /// The problem response: 503 when contended (try again), else 500.
    pub fn into_response(self) -> Response {
        let detail = error_chain(&self);
        match self {
            Self::Contended { .. } => {
                let mut response = problem(
                    &Problem::new(503, "Service Unavailable")
                        .with_type("/problems/contended")
                        .with_detail(detail),
                );
                response.set_header("retry-after", "1");
                response
            }
            Self::Store(_) | Self::Corrupt { .. } => problem(
                &Problem::new(500, "Internal Server Error")
                    .with_type("/problems/storage")
                    .with_detail(detail),
            ),
        }
    }
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> FaultError {
    FaultError::Store(Box::new(error))
}

/// The configuration as stored: the fault settings and their seed generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    config: FaultConfig,
    #[serde(default)]
    generation: u64,
}

/// One service's fault configuration, in a key-value store.
pub struct FaultSwitch<S: KvStore = SpinKv> {
    store: S,
    prefix: String,
}

impl FaultSwitch<SpinKv> {
    /// The switch of `service` (a component name, e.g. `inventory`) in the app's `default` store.
    pub fn open(service: &str) -> Result<Self, FaultError> {
        Ok(Self::new(
            SpinKv::open("default").map_err(store_error)?,
            service,
        ))
    }
}

impl<S: KvStore> FaultSwitch<S> {
    /// The switch of `service` in `store`; its keys start with `faults/{service}/`.
    pub fn new(store: S, service: &str) -> Self {
        Self {
            store,
            prefix: format!("faults/{service}"),
        }
    }

    /// The current configuration (the default when none was set).
    pub fn config(&self) -> Result<FaultConfig, FaultError> {
        Ok(self.load()?.0.config)
    }

    /// Applies `update` and returns the new configuration; a new seed starts a new generation,
    /// whose draws count from 0.
    pub fn update(&self, update: &ConfigUpdate) -> Result<FaultConfig, FaultError> {
        let key = self.config_key();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (current, raw) = self.load()?;
            let next = Stored {
                config: current.config.apply(update),
                generation: current.generation + u64::from(update.seed.is_some()),
            };
            let bytes = serde_json::to_vec(&next).map_err(|source| FaultError::Corrupt {
                key: key.clone(),
                source,
            })?;
            let written = match raw {
                // No compare-and-swap can create a key (see the module docs).
                None => self.store.set(&key, &bytes).map(|()| true),
                Some(raw) => self.store.compare_and_swap(&key, &raw, &bytes),
            }
            .map_err(store_error)?;
            if written {
                return Ok(next.config);
            }
        }
        Err(FaultError::Contended {
            key,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// What happens to this call of the service's work: reads the configuration and, when it
    /// fails calls at random, numbers the call in its generation's sequence.
    pub fn decide(&self) -> Result<Outcome, FaultError> {
        let (stored, _) = self.load()?;
        let draw = if stored.config.needs_draw() {
            let key = format!("{}/draws/{}", self.prefix, stored.generation);
            let count = self.store.increment(&key, 1).map_err(store_error)?;
            u64::try_from(count - 1).unwrap_or(0)
        } else {
            0
        };
        Ok(stored.config.decide(draw))
    }

    /// Answers the fault routes (`request.path_info` relative to the service):
    /// `GET /configure` and `GET /get_failure_mode` show the configuration (all of it, or
    /// `{"mode"}`); `POST /configure` and `POST /set_failure_mode` change it (a JSON body, see
    /// [`ConfigUpdate::parse`]) and answer the new one; other methods get 405. `None` for any
    /// other path.
    pub fn serve(&self, request: &Incoming) -> Option<Response> {
        let route = FaultRoute::of(&request.path_info)?;
        Some(
            self.answer(route, request)
                .unwrap_or_else(|refusal| refusal),
        )
    }

    fn answer(&self, route: FaultRoute, request: &Incoming) -> Result<Response, Response> {
        let current = || self.config().map_err(FaultError::into_response);
        match (route, &request.method) {
            (FaultRoute::Configure | FaultRoute::SetFailureMode, Method::Post) => {
                request.require_json()?;
                let update = ConfigUpdate::parse(&request.body).map_err(refused)?;
                let config = self.update(&update).map_err(FaultError::into_response)?;
                Ok(json(200, &config))
            }
            (FaultRoute::Configure, Method::Get) => Ok(json(200, &current()?)),
            (FaultRoute::GetFailureMode, Method::Get) => {
                Ok(json(200, &serde_json::json!({ "mode": current()?.mode })))
            }
            (route, _) => Err(method_not_allowed(route.allow())),
        }
    }

    /// The configuration and the bytes it was read from (none when the key is absent).
    fn load(&self) -> Result<(Stored, Option<Vec<u8>>), FaultError> {
        let key = self.config_key();
        match self.store.get(&key).map_err(store_error)? {
            None => Ok((Stored::default(), None)),
            Some(raw) => {
                let stored = serde_json::from_slice(&raw)
                    .map_err(|source| FaultError::Corrupt { key, source })?;
                Ok((stored, Some(raw)))
            }
        }
    }

    fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }
}

/// The paths [`FaultSwitch::serve`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultRoute {
    Configure,
    SetFailureMode,
    GetFailureMode,
}

impl FaultRoute {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/configure" => Some(Self::Configure),
            "/set_failure_mode" => Some(Self::SetFailureMode),
            "/get_failure_mode" => Some(Self::GetFailureMode),
            _ => None,
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Self::Configure => "GET, POST",
            Self::SetFailureMode => "POST",
            Self::GetFailureMode => "GET",
        }
    }
}

/// 400 for a body that is not a configuration, 422 naming the field for a bad value.
fn refused(error: ConfigError) -> Response {
    let detail = error_chain(&error);
    let problem_of = match error {
        ConfigError::Invalid { field, .. } => Problem::new(422, "Unprocessable Content")
            .with_type("/problems/invalid-field")
            .with("field", field),
        ConfigError::Malformed(_) | ConfigError::UnknownField(_) | ConfigError::Empty => {
            Problem::new(400, "Bad Request").with_type("/problems/malformed-request")
        }
    };
    problem(&problem_of.with_detail(detail))
}

/// Whether `path` (relative to the service) is one of the fault routes [`routes`] answers.
pub fn is_route(path: &str) -> bool {
    FaultRoute::of(path).is_some()
}

/// Serves `service`'s fault routes (see [`FaultSwitch::serve`]) from the `default` store:
/// `Some` answer for those paths, `None` for every other (the service routes it).
pub fn routes(service: &str, request: &Incoming) -> Option<Response> {
    FaultRoute::of(&request.path_info)?;
    Some(match FaultSwitch::open(service) {
        Ok(switch) => switch.serve(request)?,
        Err(error) => error.into_response(),
    })
}

/// Applies `service`'s fault configuration to one call of its work: waits the configured delay,
/// then `Ok` to go ahead, or `Err` with the answer to give instead (the injected 500 or 503, or
/// 500 when the configuration cannot be read).
pub fn inject(service: &str) -> Result<(), Response> {
    let switch = FaultSwitch::open(service).map_err(FaultError::into_response)?;
    apply(switch.decide().map_err(FaultError::into_response)?)
}

/// The door of a service's own `POST` work (what its callers depend on): the body must be
/// declared as JSON (415) and be a JSON object, an empty body counting as `{}` (400
/// `/problems/malformed-request`); then `service`'s faults apply (see [`inject`]), so callers
/// meet them as they would a real outage.
pub fn json_call(service: &str, request: &Incoming) -> Result<(), Response> {
    request.require_json()?;
    request.json_object().map_err(|detail| {
        problem(
            &Problem::new(400, "Bad Request")
                .with_type("/problems/malformed-request")
                .with_detail(detail),
        )
    })?;
    inject(service)
}

/// Carries out `outcome`: waits its delay (blocking this instance), then `Ok` to go ahead, or
/// `Err` with the injected failure: 500 `/problems/injected-fault` or 503
/// `/problems/simulated-outage`.
pub fn apply(outcome: Outcome) -> Result<(), Response> {
    match outcome {
        Outcome::Unavailable => Err(problem(
            &Problem::new(503, "Service Unavailable")
                .with_type("/problems/simulated-outage")
                .with_detail("the service is down (mode \"down\"; see GET /configure)"),
        )),
        Outcome::Fail { delay_ms } => {
            pause(delay_ms);
            Err(problem(
                &Problem::new(500, "Internal Server Error")
                    .with_type("/problems/injected-fault")
                    .with_detail("simulated failure (fault injection is on; see GET /configure)"),
            ))
        }
        Outcome::Respond { delay_ms } => {
            pause(delay_ms);
            Ok(())
        }
    }
}

fn pause(delay_ms: u32) {
    if delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(u64::from(delay_ms)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faults::Mode;
    use resilience::MemoryStore;
    use std::time::Instant;

    fn switch() -> FaultSwitch<MemoryStore> {
        FaultSwitch::new(MemoryStore::new(), "inventory")
    }

    fn post(path: &str, body: &str) -> Incoming {
        Incoming::for_test(Method::Post, path, Some("application/json"), body)
    }

    fn get(path: &str) -> Incoming {
        Incoming::for_test(Method::Get, path, None, "")
    }

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    fn status(response: &Response) -> u16 {
        *response.status()
    }

    #[test]
    fn updates_are_stored_under_the_service_and_read_back() {
        let switch = switch();
        assert_eq!(switch.config().unwrap(), FaultConfig::default());
        let update = ConfigUpdate::parse(br#"{"mode": "slow", "delay_ms": 40}"#).unwrap();
        let config = switch.update(&update).unwrap();
        assert_eq!((config.mode, config.delay_ms), (Mode::Slow, 40));
        assert_eq!(switch.config().unwrap(), config);
        let stored = switch
            .store
            .get("faults/inventory/config")
            .unwrap()
            .unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(
            (stored["mode"].as_str(), stored["generation"].as_u64()),
            (Some("slow"), Some(0))
        );
        let other = FaultSwitch::new(&switch.store, "payment");
        assert_eq!(
            other.config().unwrap(),
            FaultConfig::default(),
            "per service"
        );
    }

    #[test]
    fn a_racing_update_is_kept() {
        let switch = switch();
        switch
            .update(&ConfigUpdate::parse(br#"{"mode": "slow"}"#).unwrap())
            .unwrap();
        // Another instance sets the failure rate between this one's read and its write.
        switch.store.before_next_compare_and_swap(|store| {
            FaultSwitch::new(store, "inventory")
                .update(&ConfigUpdate::parse(br#"{"failure_rate": 0.5}"#).unwrap())
                .unwrap();
        });
        let config = switch
            .update(&ConfigUpdate::parse(br#"{"delay_ms": 10}"#).unwrap())
            .unwrap();
        assert_eq!(
            (config.mode, config.delay_ms, config.failure_rate),
            (Mode::Slow, 10, 0.5)
        );
    }

    #[test]
    fn setting_a_seed_restarts_the_draws_so_runs_replay() {
        let switch = switch();
        let run = || {
            switch
                .update(&ConfigUpdate::parse(br#"{"failure_rate": 0.5, "seed": 77}"#).unwrap())
                .unwrap();
            (0..40)
                .map(|_| switch.decide().unwrap())
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let failed = first
            .iter()
            .filter(|outcome| matches!(outcome, Outcome::Fail { .. }))
            .count();
        assert!((5..=35).contains(&failed), "{first:?}");
        assert_eq!(
            switch.store.counter("faults/inventory/draws/2").unwrap(),
            40
        );
    }

    #[test]
    fn without_random_failures_no_call_is_counted() {
        let switch = switch();
        assert_eq!(switch.decide().unwrap(), Outcome::Respond { delay_ms: 0 });
        assert!(
            switch.store.keys_with_prefix("faults/").unwrap().is_empty(),
            "nothing written"
        );
    }

    #[test]
    fn routes_show_and_change_the_configuration() {
        let switch = switch();
        assert!(switch.serve(&get("/reserve")).is_none());
        let changed = switch
            .serve(&post(
                "/configure",
                r#"{"delay": 0.5, "failure_rate": 0.1}"#,
            ))
            .unwrap();
        assert_eq!(status(&changed), 200);
        assert_eq!(body(&changed)["mode"], "slow");
        assert_eq!(body(&changed)["delay_ms"], 500);
        let shown = switch.serve(&get("/configure")).unwrap();
        assert_eq!(body(&shown), body(&changed));
        let seeded = switch
            .serve(&post("/set_failure_mode", r#"{"mode": "down"}"#))
            .unwrap();
        assert_eq!(body(&seeded)["mode"], "down");
        let mode = switch.serve(&get("/get_failure_mode")).unwrap();
        assert_eq!(body(&mode), serde_json::json!({ "mode": "down" }));
        assert_eq!(switch.decide().unwrap(), Outcome::Unavailable);
    }

    #[test]
    fn routes_refuse_bad_requests() {
        let switch = switch();
        let invalid = switch
            .serve(&post("/configure", r#"{"failure_rate": 3}"#))
            .unwrap();
        assert_eq!(status(&invalid), 422);
        assert_eq!(body(&invalid)["field"], "failure_rate");
        let unknown = switch
            .serve(&post("/configure", r#"{"colour": 1}"#))
            .unwrap();
        assert_eq!(status(&unknown), 400);
        assert!(
            body(&unknown)["detail"]
                .as_str()
                .unwrap()
                .contains("\"colour\""),
            "{}",
            body(&unknown)
        );
        let form = Incoming::for_test(
            Method::Post,
            "/configure",
            Some("application/x-www-form-urlencoded"),
            r#"{"mode": "down"}"#,
        );
        assert_eq!(status(&switch.serve(&form).unwrap()), 415);
        let wrong = switch.serve(&get("/set_failure_mode")).unwrap();
        assert_eq!(
            (
                status(&wrong),
                wrong.header("allow").and_then(|v| v.as_str())
            ),
            (405, Some("POST"))
        );
        let wrong = switch.serve(&post("/get_failure_mode", "{}")).unwrap();
        assert_eq!(status(&wrong), 405);
        let wrong = Incoming::for_test(Method::Delete, "/configure", None, "");
        let wrong = switch.serve(&wrong).unwrap();
        assert_eq!(
            wrong.header("allow").and_then(|v| v.as_str()),
            Some("GET, POST")
        );
        assert_eq!(
            switch.config().unwrap(),
            FaultConfig::default(),
            "nothing changed"
        );
    }

    #[test]
    fn a_corrupt_configuration_is_a_storage_error() {
        let switch = switch();
        switch.store.set("faults/inventory/config", b"{").unwrap();
        let error = switch.decide().unwrap_err();
        assert!(matches!(error, FaultError::Corrupt { .. }), "{error:?}");
        let response = error.into_response();
        assert_eq!(status(&response), 500);
        assert_eq!(body(&response)["type"], "/problems/storage");
    }

    #[test]
    fn outcomes_become_waits_or_answers() {
        let started = Instant::now();
        assert!(apply(Outcome::Respond { delay_ms: 30 }).is_ok());
        assert!(started.elapsed() >= Duration::from_millis(30));
        let failed = apply(Outcome::Fail { delay_ms: 0 }).unwrap_err();
        assert_eq!(
            (status(&failed), body(&failed)["type"].as_str()),
            (500, Some("/problems/injected-fault"))
        );
        let down = apply(Outcome::Unavailable).unwrap_err();
        assert_eq!(
            (status(&down), body(&down)["type"].as_str()),
            (503, Some("/problems/simulated-outage"))
        );
    }
}
