//! Fault injection shared by every Orderly service: what a service is told to do to its own
//! calls (answer normally, slowly, fail with 500, or refuse with 503 as if down), and at what
//! rate it fails at random, decided from a seed so that every run can be replayed exactly.
//!
//! A configuration changes through the same request body in every service (`POST /configure`):
//! either `{"mode", "delay_ms", "failure_rate", "seed"}` (any subset), or the Campus seed's
//! `{"delay": <seconds>, "failure_rate": <0..1>}`; see [`ConfigUpdate::parse`]. Storing the
//! configuration and serving its routes is the components' part (`guest_kit::faults`).

mod config;
mod rng;

use rng::SeededRng;

pub use config::{
    ConfigError, ConfigUpdate, FaultConfig, MAX_DELAY_MS, Mode, Outcome, ProbeOutcome,
};
