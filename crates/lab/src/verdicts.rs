//! Jepsen-style judgement of a load run: what became of every request, from its history (each
//! attempt, keyed by idempotency key) and the orders the server holds after the drain. Pure:
//! the caller reads the server; this only classifies.

use crate::history::{Attempt, AttemptOutcome};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// An order as the server holds it after the drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOrder {
    /// Its status.
    pub status: String,
    /// Whether the status is final (confirmed, cancelled, rejected, failed).
    pub is_final: bool,
}

/// An acknowledged request the server did not keep as it promised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostRequest {
    /// Its idempotency key.
    pub key: String,
    /// The order it was acknowledged with.
    pub order_id: Option<String>,
    /// What is wrong: missing, or its status when not final.
    pub why: String,
}

/// What became of a run's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// Attempts sent, retries included.
    pub attempts: usize,
    /// Logical requests (distinct keys).
    pub requests: usize,
    /// Requests answered with success at least once.
    pub acknowledged: usize,
    /// Acknowledged, held and final.
    pub ok: usize,
    /// Acknowledged but missing, or not final after the drain.
    pub lost: Vec<LostRequest>,
    /// Requests that created more than one order (keys).
    pub duplicated: Vec<String>,
    /// Orders the server holds that no attempt named.
    pub unexpected: Vec<String>,
    /// Requests never acknowledged whose order exists anyway (keys): the server took them,
    /// the answer was lost or refused late. Not an error.
    pub recovered: Vec<String>,
    /// Requests never acknowledged and never created.
    pub never_created: usize,
}

/// Classifies every request of `attempts` against `held` (the orders the server holds, by
/// id, among those the attempts named) and `listed` (every order id of the run the server
/// lists, to find unexpected ones).
pub fn classify(
    attempts: &[Attempt],
    held: &BTreeMap<String, HeldOrder>,
    listed: &[String],
) -> Classification {
    let mut by_key: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for attempt in attempts {
        by_key
            .entry(attempt.key.as_str())
            .or_default()
            .push(attempt);
    }
    let mut verdict = Classification {
        attempts: attempts.len(),
        requests: by_key.len(),
        ..Classification::default()
    };
    let named: BTreeSet<&str> = attempts
        .iter()
        .filter_map(|attempt| attempt.order_id.as_deref())
        .collect();
    for (key, tries) in &by_key {
        let acknowledged = tries
            .iter()
            .find(|attempt| attempt.outcome == AttemptOutcome::Acknowledged);
        let existing: BTreeSet<&str> = tries
            .iter()
            .filter_map(|attempt| attempt.order_id.as_deref())
            .filter(|id| held.contains_key(*id))
            .collect();
        if existing.len() > 1 {
            verdict.duplicated.push((*key).to_owned());
        }
        match acknowledged {
            Some(attempt) => {
                verdict.acknowledged += 1;
                let order_id = attempt.order_id.clone();
                let found = order_id.as_deref().and_then(|id| held.get(id));
                match found {
                    Some(order) if order.is_final => verdict.ok += 1,
                    Some(order) => verdict.lost.push(LostRequest {
                        key: (*key).to_owned(),
                        order_id,
                        why: format!("not final: {}", order.status),
                    }),
                    None => verdict.lost.push(LostRequest {
                        key: (*key).to_owned(),
                        order_id,
                        why: "missing".to_owned(),
                    }),
                }
            }
            None if existing.is_empty() => verdict.never_created += 1,
            None => verdict.recovered.push((*key).to_owned()),
        }
    }
    verdict.unexpected = listed
        .iter()
        .filter(|id| !named.contains(id.as_str()))
        .cloned()
        .collect();
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(key: &str, order_id: Option<&str>, outcome: AttemptOutcome) -> Attempt {
        Attempt {
            key: key.into(),
            order_id: order_id.map(Into::into),
            sent_ms: 0,
            latency_us: None,
            outcome,
        }
    }

    fn held(entries: &[(&str, &str)]) -> BTreeMap<String, HeldOrder> {
        entries
            .iter()
            .map(|(id, status)| {
                let is_final = ["confirmed", "cancelled", "rejected", "failed"].contains(status);
                (
                    (*id).to_owned(),
                    HeldOrder {
                        status: (*status).to_owned(),
                        is_final,
                    },
                )
            })
            .collect()
    }

    const ACK: AttemptOutcome = AttemptOutcome::Acknowledged;
    const LOST_ANSWER: AttemptOutcome = AttemptOutcome::Transport;

    #[test]
    fn each_request_lands_in_exactly_one_class() {
        let attempts = [
            // ok: acknowledged after a retry.
            attempt("a", Some("a"), LOST_ANSWER),
            attempt("a", Some("a"), ACK),
            // lost: acknowledged, missing.
            attempt("b", Some("b"), ACK),
            // lost: acknowledged, stuck.
            attempt("c", Some("c"), ACK),
            // recovered: refused, exists anyway.
            attempt("d", Some("d"), AttemptOutcome::Refused { status: 503 }),
            // never created.
            attempt("e", Some("e"), LOST_ANSWER),
        ];
        let verdict = classify(
            &attempts,
            &held(&[("a", "confirmed"), ("c", "processing"), ("d", "cancelled")]),
            &["a".into(), "c".into(), "d".into()],
        );
        assert_eq!((verdict.attempts, verdict.requests), (6, 5));
        assert_eq!((verdict.acknowledged, verdict.ok), (3, 1));
        let lost: Vec<(&str, &str)> = verdict
            .lost
            .iter()
            .map(|lost| (lost.key.as_str(), lost.why.as_str()))
            .collect();
        assert_eq!(lost, [("b", "missing"), ("c", "not final: processing")]);
        assert_eq!(verdict.recovered, ["d"]);
        assert_eq!(verdict.never_created, 1);
        assert!(verdict.duplicated.is_empty() && verdict.unexpected.is_empty());
    }

    #[test]
    fn a_request_that_made_two_orders_is_duplicated_and_strays_are_unexpected() {
        // The server named a fresh order for each try (no idempotency on its side).
        let attempts = [
            attempt("k", Some("srv-1"), LOST_ANSWER),
            attempt("k", Some("srv-2"), ACK),
        ];
        let verdict = classify(
            &attempts,
            &held(&[("srv-1", "confirmed"), ("srv-2", "confirmed")]),
            &["srv-1".into(), "srv-2".into(), "srv-9".into()],
        );
        assert_eq!(verdict.duplicated, ["k"]);
        assert_eq!(verdict.unexpected, ["srv-9"]);
        assert_eq!(verdict.ok, 1);
    }

    #[test]
    fn a_clean_run_is_clean() {
        let attempts = [attempt("x", Some("x"), ACK), attempt("y", Some("y"), ACK)];
        let verdict = classify(
            &attempts,
            &held(&[("x", "confirmed"), ("y", "rejected")]),
            &["x".into(), "y".into()],
        );
        assert_eq!(verdict.ok, 2);
        assert!(verdict.lost.is_empty() && verdict.duplicated.is_empty());
        assert!(verdict.unexpected.is_empty() && verdict.recovered.is_empty());
    }
}
