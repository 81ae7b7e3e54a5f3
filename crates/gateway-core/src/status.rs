//! `/mesh/service-status`: each service's health, probed through service chaining.

use crate::routes::Service;
use serde_json::{Value, json};

/// How a service's health probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// It answered with this status (up when 2xx).
    Answered(u16),
    /// It did not answer in time.
    Timeout,
    /// It could not be reached, or the call failed.
    Failed(String),
}

/// One service's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The service.
    pub service: Service,
    /// How it went.
    pub outcome: ProbeOutcome,
    /// How long it took, in ms.
    pub latency_ms: u64,
}

/// The view: `status` is `healthy` when every service is up, `down` when none is, and
/// `degraded` otherwise; `services` maps each component to `status` (`up` or `down`),
/// `latency_ms`, and `http_status` or `error`.
pub fn view(probes: &[Probe]) -> Value {
    let mut services = serde_json::Map::new();
    let mut up = 0;
    for probe in probes {
        let mut entry = json!({"latency_ms": probe.latency_ms});
        let is_up = match &probe.outcome {
            ProbeOutcome::Answered(status) => {
                entry["http_status"] = json!(status);
                (200..300).contains(status)
            }
            ProbeOutcome::Timeout => {
                entry["error"] = json!("timed out");
                false
            }
            ProbeOutcome::Failed(detail) => {
                entry["error"] = json!(detail);
                false
            }
        };
        entry["status"] = json!(if is_up { "up" } else { "down" });
        up += usize::from(is_up);
        services.insert(probe.service.component().to_owned(), entry);
    }
    let status = match up {
        _ if up == probes.len() => "healthy",
        0 => "down",
        _ => "degraded",
    };
    json!({"status": status, "services": services})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(service: Service, outcome: ProbeOutcome) -> Probe {
        Probe {
            service,
            outcome,
            latency_ms: 4,
        }
    }

    #[test]
    fn services_are_up_only_when_they_answer_2xx() {
        let all_up = view(&[probe(Service::Orders, ProbeOutcome::Answered(200))]);
        assert_eq!(
            all_up,
            json!({"status": "healthy", "services": {"orders": {"status": "up", "latency_ms": 4, "http_status": 200}}})
        );
        let mixed = view(&[
            probe(Service::Orders, ProbeOutcome::Answered(200)),
            probe(Service::Payment, ProbeOutcome::Answered(503)),
            probe(Service::Shipping, ProbeOutcome::Timeout),
            probe(Service::Admin, ProbeOutcome::Failed("refused".into())),
        ]);
        assert_eq!(mixed["status"], "degraded");
        assert_eq!(mixed["services"]["payment"]["status"], "down");
        assert_eq!(mixed["services"]["shipping"]["error"], "timed out");
        assert_eq!(mixed["services"]["admin"]["error"], "refused");
        let none = view(&[probe(Service::Orders, ProbeOutcome::Timeout)]);
        assert_eq!(none["status"], "down");
    }
}
