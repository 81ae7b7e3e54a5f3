//! The fault configuration: the mode a service is in, the request bodies that change it, and
//! what it does to each call, decided from the configured seed and the call's number so a run
//! can be replayed.

use crate::SeededRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::str::FromStr;

/// A service's behaviour, as the seed lab's `set_failure_mode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Fast answers (still failing at `failure_rate`).
    Normal,
    /// Every answer waits `delay_ms` first (and fails at `failure_rate`).
    Slow,
    /// Unreachable: every call gets 503 at once.
    Down,
    /// Every call gets 500.
    Error,
}

impl FromStr for Mode {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "normal" => Ok(Self::Normal),
            "slow" => Ok(Self::Slow),
            "down" => Ok(Self::Down),
            "error" => Ok(Self::Error),
            other => Err(ConfigError::Invalid {
                field: "mode",
                reason: format!("unknown mode {other:?}; expected normal, slow, down or error"),
            }),
        }
    }
}

/// Why a configuration change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The body is not a JSON object.
    #[error("the body is not a JSON object")]
    Malformed(#[source] serde_json::Error),
    /// The object has a member no form knows.
    #[error(
        "unknown field {0:?}; expected mode, delay_ms, failure_rate and seed, or the Campus form's delay and failure_rate"
    )]
    UnknownField(String),
    /// The object changes nothing.
    #[error("give at least one of mode, delay_ms, failure_rate, seed (or the Campus form's delay)")]
    Empty,
    /// A field has a bad value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The JSON member.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The fault configuration, shared by every instance of a service (it lives in the key-value
/// store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// The behaviour.
    pub mode: Mode,
    /// The wait in `slow` mode, in milliseconds.
    pub delay_ms: u32,
    /// The share of calls (0 to 1) that fail with 500 in `normal` and `slow` modes.
    pub failure_rate: f64,
    /// The seed the failure draws come from.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Normal,
            delay_ms: 2_000,
            failure_rate: 0.0,
            seed: 0,
        }
    }
}

/// The longest delay a service will inject, in milliseconds.
pub const MAX_DELAY_MS: u32 = 60_000;

/// A change to the configuration: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigUpdate {
    /// A new mode.
    pub mode: Option<Mode>,
    /// A new slow-mode delay.
    pub delay_ms: Option<u32>,
    /// A new failure rate.
    pub failure_rate: Option<f64>,
    /// A new seed (which also restarts the draw sequence).
    pub seed: Option<u64>,
}

/// Every member a configuration body may have.
const FIELDS: [&str; 5] = ["mode", "delay_ms", "failure_rate", "seed", "delay"];

impl ConfigUpdate {
    /// Parses a `POST /configure` (or `/set_failure_mode`) body, a JSON object in one of two
    /// forms (a `null` member counts as absent):
    ///
    /// - Orderly's: any of `mode` (`normal`, `slow`, `down`, `error`), `delay_ms` (the slow
    ///   mode's wait, 0 to [`MAX_DELAY_MS`]), `failure_rate` (0 to 1) and `seed` (a whole
    ///   number; setting it restarts the draw sequence);
    /// - the Campus seed's: `delay` in seconds (any number from 0 to 60; above 0, every call
    ///   waits that long: mode `slow` with that delay, rounded to the millisecond and at least
    ///   1 ms; 0: mode `normal`), with `failure_rate` (and `seed`) as above.
    ///
    /// `delay` does not combine with `mode` or `delay_ms`. Unknown members are refused.
    pub fn parse(body: &[u8]) -> Result<Self, ConfigError> {
        let object: Map<String, Value> =
            serde_json::from_slice(body).map_err(ConfigError::Malformed)?;
        if let Some(unknown) = object.keys().find(|name| !FIELDS.contains(&name.as_str())) {
            return Err(ConfigError::UnknownField(unknown.clone()));
        }
        let given = |name: &str| object.get(name).filter(|value| !value.is_null());
        let mut update = Self {
            mode: given("mode").map(mode).transpose()?,
            delay_ms: given("delay_ms")
                .map(|value| whole("delay_ms", value, u64::from(MAX_DELAY_MS)))
                .transpose()?
                .map(|ms| ms as u32),
            failure_rate: given("failure_rate").map(failure_rate).transpose()?,
            seed: given("seed")
                .map(|value| whole("seed", value, u64::MAX))
                .transpose()?,
        };
        if let Some(delay) = given("delay") {
            if update.mode.is_some() || update.delay_ms.is_some() {
                return Err(ConfigError::Invalid {
                    field: "delay",
                    reason: "the Campus form's delay (seconds) sets the mode itself: give it without mode and delay_ms".into(),
                });
            }
            match campus_delay_ms(delay)? {
                0 => update.mode = Some(Mode::Normal),
                delay_ms => {
                    update.mode = Some(Mode::Slow);
                    update.delay_ms = Some(delay_ms);
                }
            }
        }
        if update == Self::default() {
            return Err(ConfigError::Empty);
        }
        Ok(update)
    }
}

fn mode(value: &Value) -> Result<Mode, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| ConfigError::Invalid {
            field: "mode",
            reason: "must be a string: normal, slow, down or error".into(),
        })?
        .parse()
}

fn whole(field: &'static str, value: &Value, max: u64) -> Result<u64, ConfigError> {
    value
        .as_u64()
        .filter(|whole| *whole <= max)
        .ok_or(ConfigError::Invalid {
            field,
            reason: format!("must be a whole number from 0 to {max}"),
        })
}

fn failure_rate(value: &Value) -> Result<f64, ConfigError> {
    value
        .as_f64()
        .filter(|rate| (0.0..=1.0).contains(rate))
        .ok_or(ConfigError::Invalid {
            field: "failure_rate",
            reason: "must be a number from 0 to 1".into(),
        })
}

/// The Campus form's `delay` (seconds, a JSON number) in milliseconds: 0 for 0, else rounded
/// to the millisecond but at least 1, so any positive delay still waits.
fn campus_delay_ms(value: &Value) -> Result<u32, ConfigError> {
    let max_seconds = f64::from(MAX_DELAY_MS) / 1_000.0;
    let seconds = value
        .as_f64()
        .filter(|seconds| (0.0..=max_seconds).contains(seconds))
        .ok_or_else(|| ConfigError::Invalid {
            field: "delay",
            reason: format!("must be a number of seconds from 0 to {max_seconds}"),
        })?;
    if seconds == 0.0 {
        return Ok(0);
    }
    // In range: at most MAX_DELAY_MS, so the cast is exact.
    Ok(((seconds * 1_000.0).round() as u32).max(1))
}
/// What a service does with one call of its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Wait `delay_ms`, then do the work and answer.
    Respond {
        /// The wait.
        delay_ms: u32,
    },
    /// Wait `delay_ms`, then fail with 500.
    Fail {
        /// The wait.
        delay_ms: u32,
    },
    /// Refuse at once with 503, as if unreachable.
    Unavailable,
}

/// What a service's health endpoint reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Fast and well.
    Healthy,
    /// Answers, but only after `delay_ms`.
    Degraded {
        /// The wait.
        delay_ms: u32,
    },
    /// Answers with errors.
    Failing,
    /// Unreachable.
    Down,
}

impl FaultConfig {
    /// The configuration after `update`.
    pub fn apply(&self, update: &ConfigUpdate) -> Self {
        Self {
            mode: update.mode.unwrap_or(self.mode),
            delay_ms: update.delay_ms.unwrap_or(self.delay_ms),
            failure_rate: update.failure_rate.unwrap_or(self.failure_rate),
            seed: update.seed.unwrap_or(self.seed),
        }
    }

    /// Whether calls take a numbered draw (in every mode): only random failures use it, so with
    /// `failure_rate` 0 callers may skip counting and pass any draw to [`decide`](Self::decide).
    pub fn needs_draw(&self) -> bool {
        self.failure_rate > 0.0
    }

    /// What happens to call number `draw` (counting from 0 since the seed was set).
    pub fn decide(&self, draw: u64) -> Outcome {
        let fails_at_random = || {
            self.needs_draw() && SeededRng::for_draw(self.seed, draw).next_f64() < self.failure_rate
        };
        match self.mode {
            Mode::Down => Outcome::Unavailable,
            Mode::Error => Outcome::Fail { delay_ms: 0 },
            Mode::Normal | Mode::Slow => {
                let delay_ms = if self.mode == Mode::Slow {
                    self.delay_ms
                } else {
                    0
                };
                if fails_at_random() {
                    Outcome::Fail { delay_ms }
                } else {
                    Outcome::Respond { delay_ms }
                }
            }
        }
    }

    /// What a health probe sees.
    pub fn probe(&self) -> ProbeOutcome {
        match self.mode {
            Mode::Normal => ProbeOutcome::Healthy,
            Mode::Slow => ProbeOutcome::Degraded {
                delay_ms: self.delay_ms,
            },
            Mode::Error => ProbeOutcome::Failing,
            Mode::Down => ProbeOutcome::Down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(body: &str) -> Result<ConfigUpdate, ConfigError> {
        ConfigUpdate::parse(body.as_bytes())
    }

    #[test]
    fn updates_change_only_given_fields() {
        let config =
            FaultConfig::default().apply(&update(r#"{"mode": "slow", "delay_ms": 250}"#).unwrap());
        assert_eq!(config.mode, Mode::Slow);
        assert_eq!(config.delay_ms, 250);
        assert_eq!(config.failure_rate, 0.0);
        let config = config.apply(&update(r#"{"failure_rate": 0.5, "seed": 9}"#).unwrap());
        assert_eq!(
            (
                config.mode,
                config.delay_ms,
                config.failure_rate,
                config.seed
            ),
            (Mode::Slow, 250, 0.5, 9)
        );
    }

    #[test]
    fn refuses_bad_updates_naming_the_field() {
        let field = |body: &str| match update(body) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(field(r#"{"mode": "flaky"}"#), "mode");
        assert_eq!(field(r#"{"mode": 3}"#), "mode");
        assert_eq!(field(r#"{"delay_ms": 60001}"#), "delay_ms");
        assert_eq!(field(r#"{"delay_ms": -1}"#), "delay_ms");
        assert_eq!(field(r#"{"delay_ms": 2.5}"#), "delay_ms");
        assert_eq!(field(r#"{"failure_rate": 1.5}"#), "failure_rate");
        assert_eq!(field(r#"{"failure_rate": "half"}"#), "failure_rate");
        assert_eq!(field(r#"{"seed": "x"}"#), "seed");
        assert_eq!(field(r#"{"delay": -0.5}"#), "delay");
        assert_eq!(field(r#"{"delay": 61}"#), "delay");
        assert_eq!(field(r#"{"delay": "2s"}"#), "delay");
        for malformed in ["", "[1]", "nope", r#""mode""#, "{"] {
            assert!(
                matches!(update(malformed), Err(ConfigError::Malformed(_))),
                "{malformed}"
            );
        }
        for empty in ["{}", r#"{"mode": null}"#] {
            assert!(matches!(update(empty), Err(ConfigError::Empty)), "{empty}");
        }
        match update(r#"{"mode": "down", "colour": 1}"#) {
            Err(ConfigError::UnknownField(name)) => assert_eq!(name, "colour"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_campus_delay_form_sets_the_mode() {
        let parsed = |body: &str| update(body).unwrap();
        assert_eq!(
            parsed(r#"{"delay": 2, "failure_rate": 0.25}"#),
            ConfigUpdate {
                mode: Some(Mode::Slow),
                delay_ms: Some(2_000),
                failure_rate: Some(0.25),
                seed: None,
            }
        );
        assert_eq!(parsed(r#"{"delay": 0.3}"#).delay_ms, Some(300));
        assert_eq!(parsed(r#"{"delay": 1.2346}"#).delay_ms, Some(1_235));
        assert_eq!(parsed(r#"{"delay": 60}"#).delay_ms, Some(MAX_DELAY_MS));
        assert_eq!(
            parsed(r#"{"delay": 0.0001}"#).delay_ms,
            Some(1),
            "any positive delay waits"
        );
        let none = parsed(r#"{"delay": 0, "failure_rate": 0}"#);
        assert_eq!(
            (none.mode, none.delay_ms, none.failure_rate),
            (Some(Mode::Normal), None, Some(0.0))
        );
        let slow = FaultConfig::default().apply(&parsed(r#"{"delay": 10, "seed": 4}"#));
        assert_eq!(slow.decide(0), Outcome::Respond { delay_ms: 10_000 });
        let back = slow.apply(&parsed(r#"{"delay": 0}"#));
        assert_eq!(back.decide(0), Outcome::Respond { delay_ms: 0 });
        let failing = back.apply(&parsed(r#"{"failure_rate": 1}"#));
        assert_eq!(failing.decide(7), Outcome::Fail { delay_ms: 0 });
    }

    #[test]
    fn the_two_forms_do_not_mix() {
        for body in [
            r#"{"delay": 1, "mode": "slow"}"#,
            r#"{"delay": 1, "delay_ms": 1000}"#,
            r#"{"delay": 0, "mode": "down"}"#,
        ] {
            match update(body) {
                Err(ConfigError::Invalid { field, reason }) => {
                    assert_eq!(field, "delay", "{body}");
                    assert!(reason.contains("without mode and delay_ms"), "{reason}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_explain_themselves() {
        let unknown = update(r#"{"colour": 1}"#).unwrap_err();
        assert!(unknown.to_string().starts_with("unknown field \"colour\""));
        let malformed = update("[1]").unwrap_err();
        assert_eq!(malformed.to_string(), "the body is not a JSON object");
        assert!(
            std::error::Error::source(&malformed).is_some(),
            "carries the JSON error"
        );
        assert_eq!(
            update(r#"{"failure_rate": 2}"#).unwrap_err().to_string(),
            "failure_rate: must be a number from 0 to 1"
        );
    }

    #[test]
    fn modes_decide_outcomes() {
        let with = |mode| FaultConfig {
            mode,
            delay_ms: 300,
            ..FaultConfig::default()
        };
        assert_eq!(
            with(Mode::Normal).decide(0),
            Outcome::Respond { delay_ms: 0 }
        );
        assert_eq!(
            with(Mode::Slow).decide(0),
            Outcome::Respond { delay_ms: 300 }
        );
        assert_eq!(with(Mode::Down).decide(0), Outcome::Unavailable);
        assert_eq!(with(Mode::Error).decide(0), Outcome::Fail { delay_ms: 0 });
        assert_eq!(
            with(Mode::Slow).probe(),
            ProbeOutcome::Degraded { delay_ms: 300 }
        );
    }

    #[test]
    fn random_failures_follow_the_rate_and_replay_from_the_seed() {
        let config = FaultConfig {
            failure_rate: 0.2,
            seed: 42,
            ..FaultConfig::default()
        };
        let run: Vec<Outcome> = (0..1000).map(|draw| config.decide(draw)).collect();
        let failures = run
            .iter()
            .filter(|o| matches!(o, Outcome::Fail { .. }))
            .count();
        assert!((150..250).contains(&failures), "{failures}");
        let replay: Vec<Outcome> = (0..1000).map(|draw| config.decide(draw)).collect();
        assert_eq!(run, replay);
        let other_seed = FaultConfig {
            seed: 43,
            ..config.clone()
        };
        assert_ne!(
            run,
            (0..1000)
                .map(|draw| other_seed.decide(draw))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn only_random_failures_need_a_draw() {
        assert!(!FaultConfig::default().needs_draw());
        for mode in [Mode::Normal, Mode::Slow, Mode::Down, Mode::Error] {
            let config = FaultConfig {
                mode,
                failure_rate: 0.1,
                ..FaultConfig::default()
            };
            assert!(config.needs_draw(), "{mode:?}");
        }
    }
}
