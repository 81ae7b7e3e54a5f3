//! Health: what one probe's answer means, how the validation worker is judged from its
//! heartbeat and its queue, and the report the monitor serves.

use ledger::PipelineStats;
use orders_core::Timestamp;
use resilience::{BreakerRecord, CircuitState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a service is doing, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Answers well and fast.
    Healthy,
    /// Answers, but slowly (or says it is degraded).
    Degraded,
    /// Answers with errors.
    Unhealthy,
    /// Does not answer, or says it is unavailable.
    Down,
}

/// Why a probe got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailure {
    /// No connection.
    Connect(String),
    /// No answer in time.
    Timeout(String),
    /// Anything else.
    Other(String),
}

/// One probe of a service's `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The answer's status and its body's `status` member, or why there is none.
    pub answer: Result<(u16, Option<String>), ProbeFailure>,
    /// How long the probe took.
    pub latency_ms: u64,
}

/// Classifies a probe: no answer (or 503, "unavailable") is `Down`; any other error status is
/// `Unhealthy`; a success that took `degraded_ms` or more, or whose body says `degraded`, is
/// `Degraded`; anything else is `Healthy`.
pub fn classify(probe: &ProbeReport, degraded_ms: u64) -> Health {
    match &probe.answer {
        Err(_) => Health::Down,
        Ok((503, _)) => Health::Down,
        Ok((status, _)) if !(200..300).contains(status) => Health::Unhealthy,
        Ok((_, Some(said))) if said.eq_ignore_ascii_case("degraded") => Health::Degraded,
        Ok(_) if probe.latency_ms >= degraded_ms => Health::Degraded,
        Ok(_) => Health::Healthy,
    }
}

/// One service's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// The verdict.
    pub status: Health,
    /// How long the probe took, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The HTTP status the probe got, when it got one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why the verdict is not `healthy`, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ServiceHealth {
    /// The line for a probed service.
    pub fn from_probe(probe: &ProbeReport, degraded_ms: u64) -> Self {
        let status = classify(probe, degraded_ms);
        let detail = match (&probe.answer, status) {
            (Err(ProbeFailure::Connect(why)), _) => Some(format!("unreachable: {why}")),
            (Err(ProbeFailure::Timeout(why)), _) => Some(format!("no answer in time: {why}")),
            (Err(ProbeFailure::Other(why)), _) => Some(why.clone()),
            (Ok((code, _)), Health::Down | Health::Unhealthy) => Some(format!("HTTP {code}")),
            (Ok(_), Health::Degraded) => {
                Some(format!("slow or degraded ({} ms)", probe.latency_ms))
            }
            _ => None,
        };
        Self {
            status,
            latency_ms: Some(probe.latency_ms),
            http_status: probe.answer.as_ref().ok().map(|(code, _)| *code),
            detail,
        }
    }
}

/// The validation worker's heartbeat, left by every sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When the sweep ran, in milliseconds since the epoch.
    pub at_ms: u64,
}

/// When the worker counts as degraded or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLimits {
    /// No sweep for this long: down.
    pub silent_ms: u64,
    /// A due job this old while the circuit is closed: degraded (the backlog is not draining).
    pub backlog_ms: u64,
}

/// Judges the validation worker, which has no HTTP route of its own: it is down when no sweep
/// has run for `silent_ms` (counted from its last heartbeat, or from `watching_since`, when the
/// monitor first looked, if none has run yet), degraded when due jobs wait longer than they
/// should while the validator is callable (an open circuit explains a backlog), healthy
/// otherwise.
pub fn worker_health(
    heartbeat: Option<&Heartbeat>,
    watching_since: Timestamp,
    stats: Option<&PipelineStats>,
    circuit: CircuitState,
    now: Timestamp,
    limits: WorkerLimits,
) -> ServiceHealth {
    let last_seen = heartbeat.map_or(watching_since.millis(), |beat| beat.at_ms);
    let silent = now.millis().saturating_sub(last_seen);
    let (status, detail) = match heartbeat {
        _ if silent >= limits.silent_ms => (
            Health::Down,
            Some(match heartbeat {
                Some(_) => format!("no sweep for {} s", silent / 1000),
                None => format!(
                    "no sweep in {} s (is the cron trigger running?)",
                    silent / 1000
                ),
            }),
        ),
        None => (
            Health::Healthy,
            Some("waiting for the first sweep".to_owned()),
        ),
        Some(_) => match stats {
            Some(stats)
                if stats.oldest_due_age_ms >= limits.backlog_ms
                    && matches!(circuit, CircuitState::Closed | CircuitState::Disabled) =>
            {
                (
                    Health::Degraded,
                    Some(format!(
                        "{} due jobs, the oldest waiting {} s",
                        stats.jobs_due,
                        stats.oldest_due_age_ms / 1000
                    )),
                )
            }
            _ => (Health::Healthy, None),
        },
    };
    ServiceHealth {
        status,
        latency_ms: None,
        http_status: None,
        detail,
    }
}

/// The circuit breaker, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerSummary {
    /// The state.
    pub state: CircuitState,
    /// Since when.
    pub since: Timestamp,
    /// When the next probe may go, while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_probe_at: Option<Timestamp>,
    /// Trips in a row since it last closed.
    pub trips: u32,
}

impl BreakerSummary {
    /// The summary of a stored breaker record.
    pub fn of(record: &BreakerRecord) -> Self {
        Self {
            state: record.state,
            since: Timestamp(record.since_ms),
            next_probe_at: (record.state == CircuitState::Open)
                .then_some(Timestamp(record.open_until_ms)),
            trips: record.trips,
        }
    }
}

/// What `GET /health_status` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst status of all services.
    pub status: Health,
    /// When the probes ran.
    pub checked_at: Timestamp,
    /// Each service's verdict.
    pub services: BTreeMap<String, ServiceHealth>,
    /// The circuit breaker guarding the external validator.
    pub breaker: BreakerSummary,
    /// The job queue (`null` when the database did not answer).
    pub queue: serde_json::Value,
    /// Dead letters waiting for an operator (`null` when the database did not answer).
    pub dead_letters: Option<u64>,
    /// Orders by status (`null` when the database did not answer).
    pub orders: Option<BTreeMap<&'static str, u64>>,
}

impl HealthReport {
    /// The report from its parts; `stats` is `None` when the database did not answer.
    pub fn new(
        checked_at: Timestamp,
        services: BTreeMap<String, ServiceHealth>,
        breaker: BreakerSummary,
        stats: Option<&PipelineStats>,
    ) -> Self {
        let status = services
            .values()
            .map(|service| service.status)
            .max()
            .unwrap_or(Health::Healthy);
        Self {
            status,
            checked_at,
            services,
            breaker,
            queue: stats.map_or(serde_json::Value::Null, |stats| {
                serde_json::json!({
                    "due": stats.jobs_due,
                    "deferred": stats.jobs_deferred,
                    "leased": stats.jobs_leased,
                    "oldest_due_age_ms": stats.oldest_due_age_ms,
                })
            }),
            dead_letters: stats.map(|stats| stats.dead_letters),
            orders: stats.map(|stats| {
                stats
                    .orders
                    .iter()
                    .map(|(status, count)| (status.as_str(), *count))
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_core::OrderStatus;

    fn probe(answer: Result<(u16, Option<&str>), ProbeFailure>, latency_ms: u64) -> Health {
        classify(
            &ProbeReport {
                answer: answer.map(|(code, said)| (code, said.map(str::to_owned))),
                latency_ms,
            },
            1_000,
        )
    }

    #[test]
    fn the_four_modes_are_told_apart() {
        assert_eq!(probe(Ok((200, Some("healthy"))), 3), Health::Healthy);
        assert_eq!(probe(Ok((200, Some("degraded"))), 3), Health::Degraded);
        assert_eq!(probe(Ok((200, None)), 1_500), Health::Degraded);
        assert_eq!(probe(Ok((500, Some("failing"))), 3), Health::Unhealthy);
        assert_eq!(probe(Ok((404, None)), 3), Health::Unhealthy);
        assert_eq!(probe(Ok((503, Some("down"))), 3), Health::Down);
        assert_eq!(
            probe(Err(ProbeFailure::Connect("refused".into())), 1),
            Health::Down
        );
        assert_eq!(
            probe(Err(ProbeFailure::Timeout("2 s".into())), 2_000),
            Health::Down
        );
    }

    fn stats(oldest_due_age_ms: u64) -> PipelineStats {
        PipelineStats {
            orders: OrderStatus::ALL.iter().map(|s| (*s, 1)).collect(),
            jobs_due: 3,
            jobs_deferred: 0,
            jobs_leased: 0,
            oldest_due_age_ms,
            dead_letters: 0,
        }
    }

    #[test]
    fn the_worker_is_judged_by_its_heartbeat_and_backlog() {
        let limits = WorkerLimits {
            silent_ms: 5_000,
            backlog_ms: 30_000,
        };
        let now = Timestamp(100_000);
        let beat = Heartbeat { at_ms: 99_000 };
        let judge = |beat: Option<&Heartbeat>, age, circuit| {
            worker_health(
                beat,
                Timestamp(99_500),
                Some(&stats(age)),
                circuit,
                now,
                limits,
            )
            .status
        };
        assert_eq!(judge(Some(&beat), 0, CircuitState::Closed), Health::Healthy);
        // No sweep yet, but the monitor only started looking half a second ago.
        assert_eq!(judge(None, 0, CircuitState::Closed), Health::Healthy);
        let never = worker_health(
            None,
            Timestamp(80_000),
            Some(&stats(0)),
            CircuitState::Closed,
            now,
            limits,
        );
        assert_eq!(never.status, Health::Down);
        assert!(never.detail.unwrap().contains("cron"));
        assert_eq!(
            judge(Some(&Heartbeat { at_ms: 90_000 }), 0, CircuitState::Closed),
            Health::Down
        );
        assert_eq!(
            judge(Some(&beat), 60_000, CircuitState::Closed),
            Health::Degraded
        );
        assert_eq!(
            judge(Some(&beat), 60_000, CircuitState::Open),
            Health::Healthy
        );
    }

    #[test]
    fn the_report_takes_the_worst_status() {
        let mut services = BTreeMap::new();
        let line = |status| ServiceHealth {
            status,
            latency_ms: None,
            http_status: None,
            detail: None,
        };
        services.insert("orders".to_owned(), line(Health::Healthy));
        services.insert("external".to_owned(), line(Health::Unhealthy));
        let breaker = BreakerSummary {
            state: CircuitState::Closed,
            since: Timestamp(0),
            next_probe_at: None,
            trips: 0,
        };
        let report = HealthReport::new(
            Timestamp(5),
            services.clone(),
            breaker.clone(),
            Some(&stats(0)),
        );
        assert_eq!(report.status, Health::Unhealthy);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["services"]["external"]["status"], "unhealthy");
        assert_eq!(json["orders"]["processing"], 1);
        assert_eq!(json["breaker"]["state"], "closed");
        // Without the database, the counts are unknown, never made up.
        let blind =
            serde_json::to_value(HealthReport::new(Timestamp(5), services, breaker, None)).unwrap();
        assert!(
            blind["orders"].is_null() && blind["queue"].is_null(),
            "{blind}"
        );
        assert_eq!(blind["status"], "unhealthy");
    }
}
