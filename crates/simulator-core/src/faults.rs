//! Fault injection: the mode the simulator is in, and what it does to each request, decided
//! from the configured seed and the request's number so a run can be replayed.

use crate::SeededRng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The simulator's behaviour, as the seed lab's `set_failure_mode` names it.
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not a JSON object of the expected shape.
    #[error("the body is not a valid configuration: {0}")]
    Malformed(String),
    /// A field has a bad value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The JSON member.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The fault configuration, shared by every instance (it lives in the key-value store).
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

/// The longest delay the simulator will inject, in milliseconds.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    mode: Option<String>,
    delay_ms: Option<serde_json::Value>,
    failure_rate: Option<serde_json::Value>,
    seed: Option<serde_json::Value>,
}

impl ConfigUpdate {
    /// Parses a `POST /configure` (or `/set_failure_mode`) body.
    pub fn parse(body: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawUpdate = serde_json::from_slice(body)
            .map_err(|error| ConfigError::Malformed(error.to_string()))?;
        let whole = |field: &'static str, value: serde_json::Value, max: u64| {
            value
                .as_u64()
                .filter(|v| *v <= max)
                .ok_or(ConfigError::Invalid {
                    field,
                    reason: format!("must be a whole number from 0 to {max}"),
                })
        };
        let update = Self {
            mode: raw.mode.as_deref().map(str::parse).transpose()?,
            delay_ms: raw
                .delay_ms
                .map(|v| whole("delay_ms", v, u64::from(MAX_DELAY_MS)).map(|v| v as u32))
                .transpose()?,
            failure_rate: raw
                .failure_rate
                .map(|v| {
                    v.as_f64().filter(|rate| (0.0..=1.0).contains(rate)).ok_or(
                        ConfigError::Invalid {
                            field: "failure_rate",
                            reason: "must be a number from 0 to 1".into(),
                        },
                    )
                })
                .transpose()?,
            seed: raw.seed.map(|v| whole("seed", v, u64::MAX)).transpose()?,
        };
        if update == Self::default() {
            return Err(ConfigError::Malformed(
                "give at least one of mode, delay_ms, failure_rate, seed".into(),
            ));
        }
        Ok(update)
    }
}

/// What the simulator does with one validation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Wait `delay_ms`, then answer with the verdict.
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

/// What the simulator's health endpoint reports.
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

    /// Whether validation calls take a numbered draw (in every mode): only random failures
    /// use it, so with `failure_rate` 0 callers may skip counting and pass any draw to
    /// [`decide`](Self::decide).
    pub fn needs_draw(&self) -> bool {
        self.failure_rate > 0.0
    }

    /// What happens to validation call number `draw` (counting from 0 since the seed was set).
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
        assert_eq!(field(r#"{"delay_ms": 60001}"#), "delay_ms");
        assert_eq!(field(r#"{"delay_ms": -1}"#), "delay_ms");
        assert_eq!(field(r#"{"failure_rate": 1.5}"#), "failure_rate");
        assert_eq!(field(r#"{"seed": "x"}"#), "seed");
        for malformed in ["", "{}", "[1]", r#"{"mode": "down", "other": 1}"#] {
            assert!(
                matches!(update(malformed), Err(ConfigError::Malformed(_))),
                "{malformed}"
            );
        }
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
