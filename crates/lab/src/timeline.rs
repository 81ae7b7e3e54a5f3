//! An order's timeline (`GET /orders/:id/events`) tallied: how often each thing happened to it,
//! what happened more than once that must happen once at most, and what an order in its final
//! status lacks. The evidence that redeliveries, retries and crashes repeat no transition.

use crate::app_http::Http;
use crate::control::parse_timestamp;
use anyhow::Context as _;
use futures::StreamExt as _;
use saga_audit::state;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Orders read at once.
const READS_IN_FLIGHT: usize = 16;

/// The events that decide a validation.
const DECISIONS: [&str; 3] = ["validated", "rejected", "failed"];
/// The events that end a saga.
const SAGA_ENDS: [&str; 2] = ["confirmed", "cancelled"];
/// The saga's steps, each done once for a confirmed order.
pub const SAGA_STEPS: [&str; 4] = ["reserve", "authorize", "ship", "capture"];

/// How often each thing happened to one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Events by kind (`attempt`, `validated`, `step_done`, ...).
    pub kinds: BTreeMap<String, usize>,
    /// `step_done` events by step.
    pub steps_done: BTreeMap<String, usize>,
    /// `compensated` events by compensation.
    pub compensations: BTreeMap<String, usize>,
    /// From the order's acceptance to its first decision, when it has both.
    pub decided_after: Option<Duration>,
}

impl Timeline {
    /// Tallies the body of `GET /orders/:id/events` (`{"events": [...]}`).
    pub fn parse(body: &Value) -> anyhow::Result<Self> {
        let events = body["events"]
            .as_array()
            .with_context(|| format!("no `events` list in {body}"))?;
        let mut timeline = Self::default();
        let (mut accepted_at, mut decided_at) = (None, None);
        for event in events {
            let kind = event["kind"]
                .as_str()
                .with_context(|| format!("an event without a kind: {event}"))?;
            *timeline.kinds.entry(kind.to_owned()).or_default() += 1;
            let at = || {
                let text = event["at"].as_str().unwrap_or("");
                parse_timestamp(text).with_context(|| format!("an event's time: {event}"))
            };
            if kind == "accepted" && accepted_at.is_none() {
                accepted_at = Some(at()?);
            } else if DECISIONS.contains(&kind) && decided_at.is_none() {
                decided_at = Some(at()?);
            }
            let by_outcome = match kind {
                "step_done" => &mut timeline.steps_done,
                "compensated" => &mut timeline.compensations,
                _ => continue,
            };
            let outcome = event["outcome"].as_str().unwrap_or("?");
            *by_outcome.entry(outcome.to_owned()).or_default() += 1;
        }
        if let (Some(accepted), Some(decided)) = (accepted_at, decided_at) {
            timeline.decided_after = Some(decided.duration_since(accepted).unwrap_or_default());
        }
        Ok(timeline)
    }

    /// How many events of `kind`.
    pub fn count(&self, kind: &str) -> usize {
        self.kinds.get(kind).copied().unwrap_or(0)
    }

    /// Validation decisions (`validated`, `rejected`, `failed`).
    pub fn decisions(&self) -> usize {
        DECISIONS.iter().map(|kind| self.count(kind)).sum()
    }

    /// Saga ends (`confirmed`, `cancelled`).
    pub fn saga_ends(&self) -> usize {
        SAGA_ENDS.iter().map(|kind| self.count(kind)).sum()
    }

    /// What happened more than once that may happen once at most: a decision, a saga step, a
    /// step refused, a compensation, the saga's end.
    pub fn repeated(&self) -> Vec<String> {
        let mut repeated = Vec::new();
        if self.decisions() > 1 {
            repeated.push(format!("{} decisions", self.decisions()));
        }
        if self.saga_ends() > 1 {
            repeated.push(format!("{} saga ends", self.saga_ends()));
        }
        if self.count("step_refused") > 1 {
            repeated.push(format!("{} steps refused", self.count("step_refused")));
        }
        for (what, counts) in [
            ("step_done", &self.steps_done),
            ("compensated", &self.compensations),
        ] {
            for (outcome, count) in counts.iter().filter(|(_, count)| **count > 1) {
                repeated.push(format!("{what} {outcome} × {count}"));
            }
        }
        repeated
    }

    /// What an order whose status is `status` should show once and does not: its decision
    /// (rejected, failed, and any order that got as far as a saga), and for a confirmed order
    /// every step and its confirmation; for a cancelled one its cancellation.
    pub fn missing(&self, status: &str) -> Vec<String> {
        let mut missing = Vec::new();
        let decided = matches!(status, "rejected" | "failed") || self.count("step_done") > 0;
        if decided && self.decisions() == 0 {
            missing.push("no decision".to_owned());
        }
        match status {
            "confirmed" => {
                for step in SAGA_STEPS {
                    if !self.steps_done.contains_key(step) {
                        missing.push(format!("no step_done {step}"));
                    }
                }
                if self.count("confirmed") == 0 {
                    missing.push("no confirmed event".to_owned());
                }
            }
            "cancelled" if self.count("cancelled") == 0 => {
                missing.push("no cancelled event".to_owned());
            }
            _ => {}
        }
        missing
    }
}

/// One order as it stands (`GET /orders/:id`) and its timeline.
#[derive(Debug, Clone)]
pub struct Traced {
    /// Its id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// The whole order.
    pub order: Value,
    /// Its timeline.
    pub timeline: Timeline,
}

impl Traced {
    /// What is wrong with its timeline: transitions repeated, or lacking for its status.
    pub fn faults(&self) -> Vec<String> {
        let mut faults = self.timeline.repeated();
        faults.extend(self.timeline.missing(&self.status));
        faults
    }
}

/// Reads each of `ids` and its timeline, [`READS_IN_FLIGHT`] at a time.
pub async fn trace_all(http: &Http, ids: &[String]) -> anyhow::Result<Vec<Traced>> {
    futures::stream::iter(ids)
        .map(|id| async move {
            let read = |path: String| async move {
                state::get_json(http, &path)
                    .await
                    .map_err(anyhow::Error::msg)?
                    .with_context(|| format!("GET {path}: 404"))
            };
            let order = read(format!("/orders/{id}")).await?;
            let timeline = Timeline::parse(&read(format!("/orders/{id}/events")).await?)?;
            Ok(Traced {
                id: id.clone(),
                status: order["status"].as_str().unwrap_or("?").to_owned(),
                order,
                timeline,
            })
        })
        .buffered(READS_IN_FLIGHT)
        .collect::<Vec<anyhow::Result<Traced>>>()
        .await
        .into_iter()
        .collect()
}

/// Every fault of every order, as `<id>: <fault>`.
pub fn faults(traced: &[Traced]) -> Vec<String> {
    traced
        .iter()
        .flat_map(|order| {
            order
                .faults()
                .into_iter()
                .map(move |fault| format!("{}: {fault}", order.id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A timeline of `events` (kind, outcome), one every 100 ms from 10:00:00.
    fn timeline(events: &[(&str, Option<&str>)]) -> Timeline {
        let events: Vec<Value> = (0..)
            .zip(events)
            .map(|(n, (kind, outcome))| {
                let at = format!("2026-11-30T10:00:0{}.{}00Z", n / 10, n % 10);
                match outcome {
                    Some(outcome) => json!({"kind": kind, "outcome": outcome, "at": at}),
                    None => json!({"kind": kind, "at": at}),
                }
            })
            .collect();
        Timeline::parse(&json!({ "events": events })).unwrap()
    }

    /// The events of an order validated and confirmed, each step once.
    fn confirmed_saga() -> Vec<(&'static str, Option<&'static str>)> {
        vec![
            ("accepted", None),
            ("attempt", Some("valid")),
            ("validated", None),
            ("step_done", Some("reserve")),
            ("step_done", Some("authorize")),
            ("step_done", Some("ship")),
            ("step_done", Some("capture")),
            ("confirmed", None),
        ]
    }

    #[test]
    fn a_confirmed_order_done_once_is_complete_and_unrepeated() {
        let once = timeline(&confirmed_saga());
        assert_eq!(once.decisions(), 1);
        assert_eq!(once.count("attempt"), 1);
        assert_eq!(once.saga_ends(), 1);
        assert_eq!(once.decided_after, Some(Duration::from_millis(200)));
        assert!(once.repeated().is_empty(), "{:?}", once.repeated());
        assert!(once.missing("confirmed").is_empty());
    }

    #[test]
    fn anything_done_twice_is_repeated() {
        let mut events = confirmed_saga();
        events.push(("step_done", Some("authorize")));
        events.push(("validated", None));
        events.push(("confirmed", None));
        events.push(("compensated", Some("release_stock")));
        events.push(("compensated", Some("release_stock")));
        let twice = timeline(&events);
        assert_eq!(
            twice.repeated(),
            [
                "2 decisions",
                "2 saga ends",
                "step_done authorize × 2",
                "compensated release_stock × 2"
            ]
        );
        let ignored = timeline(&[
            ("validated", None),
            ("duplicate_ignored", None),
            ("duplicate_ignored", None),
            ("attempt", None),
            ("attempt", None),
        ]);
        assert!(
            ignored.repeated().is_empty(),
            "ignored duplicates and attempts are not transitions"
        );
    }

    #[test]
    fn a_final_order_lacking_its_steps_or_end_is_incomplete() {
        let mut events = confirmed_saga();
        events.retain(|(kind, outcome)| *outcome != Some("ship") && *kind != "confirmed");
        assert_eq!(
            timeline(&events).missing("confirmed"),
            ["no step_done ship", "no confirmed event"]
        );
        let refused = timeline(&[
            ("validated", None),
            ("step_done", Some("reserve")),
            ("step_refused", Some("authorize")),
            ("compensated", Some("release_stock")),
            ("cancelled", Some("authorize_refused")),
        ]);
        assert!(refused.missing("cancelled").is_empty());
        assert!(refused.repeated().is_empty());
        let undecided = timeline(&[("step_done", Some("reserve")), ("cancelled", None)]);
        assert_eq!(undecided.missing("cancelled"), ["no decision"]);
        assert_eq!(
            timeline(&[("accepted", None)]).missing("failed"),
            ["no decision"]
        );
        assert_eq!(
            timeline(&[("accepted", None)]).missing("cancelled"),
            ["no cancelled event"]
        );
    }

    #[test]
    fn a_body_without_events_is_an_error() {
        assert!(Timeline::parse(&json!({"order_id": "o-1"})).is_err());
        assert!(Timeline::parse(&json!({"events": [{"outcome": "valid"}]})).is_err());
        assert!(Timeline::parse(&json!({"events": [{"kind": "accepted", "at": "soon"}]})).is_err());
        assert_eq!(timeline(&[("accepted", None)]).decided_after, None);
    }
}
