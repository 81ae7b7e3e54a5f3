//! Chaos scenarios (`orderly lab chaos SCENARIO.toml`): phases (baseline, inject, recover, ...)
//! each with fault actions at set times, and an open-model order load through all of them.
//! Random faults are drawn from the scenario's seed, so the same seed always gives the same
//! schedule (and the same order mix): a run can be replayed.
//!
//! ```toml
//! name = "validator-outage"
//! description = "The validator goes down under steady load, then comes back."
//! seed = 7
//! rate = 100                 # orders per second, through every phase
//!
//! [[phases]]
//! name = "baseline"
//! seconds = 10
//!
//! [[phases]]
//! name = "inject"
//! seconds = 20
//! actions = [
//!   { at = 0, do = "fault", service = "validator", mode = "down" },
//!   { at = 5, do = "random-faults", count = 3, services = ["inventory", "payment"] },
//!   { at = 8, do = "kill-orderly" },
//!   { at = 10, do = "restart-orderly" },
//! ]
//! ```

use crate::control::FaultMode;
use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// A service whose faults a scenario sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultTarget {
    /// The external validator simulator (`/external/configure`).
    Validator,
    /// The inventory service.
    Inventory,
    /// The payment service.
    Payment,
    /// The shipping service.
    Shipping,
}

impl FaultTarget {
    /// Every service a scenario can fault.
    pub const ALL: [Self; 4] = [
        Self::Validator,
        Self::Inventory,
        Self::Payment,
        Self::Shipping,
    ];

    /// Its fault control route.
    pub fn configure_path(self) -> &'static str {
        match self {
            Self::Validator => "/external/configure",
            Self::Inventory => "/internal/inventory/configure",
            Self::Payment => "/internal/payment/configure",
            Self::Shipping => "/internal/shipping/configure",
        }
    }

    /// Its name in scenarios and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::Inventory => "inventory",
            Self::Payment => "payment",
            Self::Shipping => "shipping",
        }
    }
}

/// One service's faults, as set by a `fault` action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The service.
    pub service: FaultTarget,
    /// Its mode.
    pub mode: FaultMode,
    /// Its delay, in slow mode.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// The share of calls it fails (0 to 1), whatever the mode.
    #[serde(default)]
    pub failure_rate: Option<f64>,
}

impl Fault {
    /// The body of the service's `POST /configure`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({"mode": self.mode.as_str()});
        if let Some(delay) = self.delay_ms {
            body["delay_ms"] = delay.into();
        }
        if let Some(rate) = self.failure_rate {
            body["failure_rate"] = rate.into();
        }
        body
    }

    /// The fault in words, for timelines.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.service.name(), self.mode.as_str());
        if let Some(delay) = self.delay_ms {
            text.push_str(&format!(" {delay} ms"));
        }
        if let Some(rate) = self.failure_rate {
            text.push_str(&format!(", failing {:.0} %", rate * 100.0));
        }
        text
    }
}

/// What an action does, as a scenario writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ActionKind {
    /// Sets one service's faults.
    Fault {
        /// The faults.
        #[serde(flatten)]
        fault: Fault,
    },
    /// `count` faults drawn from the seed, spread over the rest of the phase, on `services`
    /// (every service when empty).
    RandomFaults {
        /// How many.
        count: u32,
        /// The services to draw from.
        #[serde(default)]
        services: Vec<FaultTarget>,
    },
    /// Kills the `redis-server` (its clients see their connections drop).
    StopRedis,
    /// Starts the `redis-server` again on the same port.
    StartRedis,
    /// SIGKILLs `orderly up`.
    KillOrderly,
    /// Starts `orderly up` again on the same state and port.
    RestartOrderly,
}

/// An action at a time within its phase.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PhaseAction {
    /// Seconds after the phase starts.
    pub at: f64,
    /// What it does.
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// One phase of a scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Its name (`baseline`, `inject`, `recover`, ...).
    pub name: String,
    /// How long it lasts, in seconds.
    pub seconds: f64,
    /// What happens in it.
    #[serde(default)]
    pub actions: Vec<PhaseAction>,
}

/// A chaos scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows, in a sentence or two.
    pub description: String,
    /// Seeds the random faults and the order mix.
    pub seed: u64,
    /// Orders per second (open model), through every phase.
    pub rate: f64,
    /// Its phases, in order.
    pub phases: Vec<Phase>,
}

/// One action of the schedule, at its time from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// From the start of the run.
    pub at: Duration,
    /// The phase it belongs to.
    pub phase: String,
    /// What to do (random faults already drawn: never [`ActionKind::RandomFaults`]).
    pub kind: ActionKind,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scenario: Self = toml::from_str(text)?;
        if scenario.phases.is_empty() {
            bail!("a scenario needs at least one phase");
        }
        if !(scenario.rate.is_finite() && scenario.rate > 0.0) {
            bail!("rate must be a positive number of orders per second");
        }
        for phase in &scenario.phases {
            if !(phase.seconds.is_finite() && phase.seconds > 0.0) {
                bail!("phase {:?}: seconds must be positive", phase.name);
            }
            for action in &phase.actions {
                if !(0.0..phase.seconds).contains(&action.at) {
                    bail!(
                        "phase {:?}: an action at {} s is outside the phase (0 to {} s)",
                        phase.name,
                        action.at,
                        phase.seconds
                    );
                }
                if let ActionKind::Fault { fault } = &action.kind {
                    check_fault(fault).with_context(|| format!("phase {:?}", phase.name))?;
                }
            }
        }
        Ok(scenario)
    }

    /// How long the whole scenario lasts.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|phase| phase.seconds).sum())
    }

    /// Where each phase starts, from the start of the run: `(name, start, end)`.
    pub fn phase_spans(&self) -> Vec<(String, Duration, Duration)> {
        let mut start = 0.0;
        self.phases
            .iter()
            .map(|phase| {
                let span = (
                    phase.name.clone(),
                    Duration::from_secs_f64(start),
                    Duration::from_secs_f64(start + phase.seconds),
                );
                start += phase.seconds;
                span
            })
            .collect()
    }

    /// Every action in time order, random faults drawn from the seed: the same scenario always
    /// gives the same schedule.
    pub fn schedule(&self) -> Vec<Scheduled> {
        let mut draws = fastrand::Rng::with_seed(self.seed);
        let mut schedule = Vec::new();
        for (phase, (name, start, end)) in self.phases.iter().zip(self.phase_spans()) {
            for action in &phase.actions {
                let at = start + Duration::from_secs_f64(action.at);
                match &action.kind {
                    ActionKind::RandomFaults { count, services } => {
                        let services = if services.is_empty() {
                            FaultTarget::ALL.to_vec()
                        } else {
                            services.clone()
                        };
                        for _ in 0..*count {
                            let when = at + (end - at).mul_f64(draws.f64());
                            schedule.push(Scheduled {
                                at: when,
                                phase: name.clone(),
                                kind: ActionKind::Fault {
                                    fault: random_fault(&mut draws, &services),
                                },
                            });
                        }
                    }
                    kind => schedule.push(Scheduled {
                        at,
                        phase: name.clone(),
                        kind: kind.clone(),
                    }),
                }
            }
        }
        schedule.sort_by_key(|action| action.at);
        schedule
    }
}

fn check_fault(fault: &Fault) -> anyhow::Result<()> {
    if let Some(rate) = fault.failure_rate
        && !(0.0..=1.0).contains(&rate)
    {
        bail!("{}: failure_rate must be from 0 to 1", fault.service.name());
    }
    if fault.delay_ms.is_some() && fault.mode != FaultMode::Slow {
        bail!("{}: delay_ms goes with mode slow", fault.service.name());
    }
    Ok(())
}

/// One fault drawn for `services`: a mode, a delay for slow, a failure rate for the others.
fn random_fault(draws: &mut fastrand::Rng, services: &[FaultTarget]) -> Fault {
    let service = services[draws.usize(..services.len())];
    let mode = [
        FaultMode::Normal,
        FaultMode::Slow,
        FaultMode::Down,
        FaultMode::Error,
    ][draws.usize(..4)];
    Fault {
        service,
        mode,
        delay_ms: (mode == FaultMode::Slow).then(|| draws.u64(10..=500)),
        failure_rate: (mode == FaultMode::Normal).then(|| f64::from(draws.u32(0..=50)) / 100.0),
    }
}

/// A user's error in a scenario, for tests.
#[cfg(test)]
fn parse_error(text: &str) -> String {
    format!("{:#}", Scenario::parse(text).unwrap_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
        name = "outage"
        description = "The validator goes down."
        seed = 7
        rate = 50

        [[phases]]
        name = "baseline"
        seconds = 5

        [[phases]]
        name = "inject"
        seconds = 10
        actions = [
          { at = 0, do = "fault", service = "validator", mode = "down" },
          { at = 2, do = "random-faults", count = 4, services = ["inventory", "payment"] },
          { at = 3, do = "kill-orderly" },
          { at = 4.5, do = "restart-orderly" },
          { at = 6, do = "stop-redis" },
          { at = 7, do = "start-redis" },
        ]

        [[phases]]
        name = "recover"
        seconds = 5
        actions = [{ at = 0, do = "fault", service = "validator", mode = "normal" }]
    "#;

    #[test]
    fn a_scenario_parses_into_phases_and_a_schedule_in_time_order() {
        let scenario = Scenario::parse(SCENARIO).unwrap();
        assert_eq!(scenario.duration(), Duration::from_secs(20));
        let spans = scenario.phase_spans();
        assert_eq!(spans[1].1, Duration::from_secs(5));
        assert_eq!(spans[2].2, Duration::from_secs(20));
        let schedule = scenario.schedule();
        assert_eq!(schedule.len(), 10, "4 random faults drawn, 6 written");
        assert!(schedule.windows(2).all(|pair| pair[0].at <= pair[1].at));
        assert_eq!(schedule[0].at, Duration::from_secs(5));
        assert_eq!(schedule.last().unwrap().phase, "recover");
        let kill = schedule
            .iter()
            .find(|action| action.kind == ActionKind::KillOrderly)
            .unwrap();
        assert_eq!(kill.at, Duration::from_secs(8));
        for action in &schedule {
            if let ActionKind::Fault { fault } = &action.kind
                && action.phase == "inject"
                && action.at > Duration::from_secs(5)
            {
                assert!(
                    [FaultTarget::Inventory, FaultTarget::Payment].contains(&fault.service),
                    "{fault:?}"
                );
                assert!(action.at >= Duration::from_secs(7));
                assert!(action.at <= Duration::from_secs(15));
            }
            assert!(!matches!(action.kind, ActionKind::RandomFaults { .. }));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let scenario = Scenario::parse(SCENARIO).unwrap();
        assert_eq!(scenario.schedule(), scenario.schedule());
        let other = Scenario::parse(&SCENARIO.replace("seed = 7", "seed = 8")).unwrap();
        assert_ne!(scenario.schedule(), other.schedule());
    }

    #[test]
    fn faults_become_the_services_configure_bodies() {
        let fault = Fault {
            service: FaultTarget::Inventory,
            mode: FaultMode::Slow,
            delay_ms: Some(200),
            failure_rate: Some(0.1),
        };
        assert_eq!(
            fault.body(),
            serde_json::json!({"mode": "slow", "delay_ms": 200, "failure_rate": 0.1})
        );
        assert_eq!(fault.describe(), "inventory slow 200 ms, failing 10 %");
        assert_eq!(
            fault.service.configure_path(),
            "/internal/inventory/configure"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let outside = SCENARIO.replace(
            "at = 7, do = \"start-redis\"",
            "at = 12, do = \"start-redis\"",
        );
        assert!(parse_error(&outside).contains("outside the phase"));
        let service = SCENARIO.replace(
            "service = \"validator\", mode = \"down\"",
            "service = \"oven\", mode = \"down\"",
        );
        assert!(
            parse_error(&service).contains("oven"),
            "{}",
            parse_error(&service)
        );
        let rate = SCENARIO.replace("rate = 50", "rate = 0");
        assert!(parse_error(&rate).contains("rate"));
        let delay = SCENARIO.replace("mode = \"down\" }", "mode = \"down\", delay_ms = 5 }");
        assert!(parse_error(&delay).contains("delay_ms goes with mode slow"));
        let unknown = SCENARIO.replace("seed = 7", "seed = 7\nsurprise = 1");
        assert!(parse_error(&unknown).contains("surprise"));
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let mut parsed = 0;
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let scenario = Scenario::load(&path).unwrap();
                assert!(!scenario.schedule().is_empty() || scenario.phases.len() == 1);
                parsed += 1;
            }
        }
        assert!(parsed >= 5, "{parsed} scenarios in {}", folder.display());
    }
}
