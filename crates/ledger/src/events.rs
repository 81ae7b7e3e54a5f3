//! An order's timeline: what happened to it, in order.

use orders_core::Timestamp;
use serde::{Deserialize, Serialize};

/// What happened to an order; stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The order was accepted and its validation job queued.
    Accepted,
    /// The validator was called (`attempt`, `outcome`, `latency_ms` say how it went).
    Attempt,
    /// A failed attempt will be retried (`detail` says when and why).
    RetryScheduled,
    /// The job was put off without an attempt, because the validator's circuit is open.
    Deferred,
    /// The job was put off without an attempt, because the retry budget is spent.
    BudgetExhausted,
    /// A worker took the job over from one whose lease had expired.
    LeaseExpired,
    /// The order was validated.
    Validated,
    /// The order was rejected (`outcome` is the reason code).
    Rejected,
    /// The order failed (`outcome` is the reason code).
    Failed,
    /// A decision arrived for an order that was already decided, and changed nothing.
    DuplicateIgnored,
    /// The job was moved to the dead-letter queue.
    DeadLettered,
    /// The job was replayed from the dead-letter queue.
    Replayed,
    /// A fulfilment step was done (`outcome` names it: `reserve`, `authorize`, ...).
    StepDone,
    /// A service refused a fulfilment step for good (`outcome` names it, `detail` says why):
    /// the saga undoes what it did.
    StepRefused,
    /// A compensation was done (`outcome` names it: `release_stock`, ...).
    Compensated,
    /// The customer asked to cancel the order.
    CancelRequested,
    /// The order was fulfilled.
    Confirmed,
    /// The order was cancelled (`outcome` is the reason code).
    Cancelled,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 18] = [
        Self::Accepted,
        Self::Attempt,
        Self::RetryScheduled,
        Self::Deferred,
        Self::BudgetExhausted,
        Self::LeaseExpired,
        Self::Validated,
        Self::Rejected,
        Self::Failed,
        Self::DuplicateIgnored,
        Self::DeadLettered,
        Self::Replayed,
        Self::StepDone,
        Self::StepRefused,
        Self::Compensated,
        Self::CancelRequested,
        Self::Confirmed,
        Self::Cancelled,
    ];

    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Attempt => "attempt",
            Self::RetryScheduled => "retry_scheduled",
            Self::Deferred => "deferred",
            Self::BudgetExhausted => "budget_exhausted",
            Self::LeaseExpired => "lease_expired",
            Self::Validated => "validated",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::DuplicateIgnored => "duplicate_ignored",
            Self::DeadLettered => "dead_lettered",
            Self::Replayed => "replayed",
            Self::StepDone => "step_done",
            Self::StepRefused => "step_refused",
            Self::Compensated => "compensated",
            Self::CancelRequested => "cancel_requested",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The kind stored as `text`, if it is one.
    pub(crate) fn from_stored(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    /// Its place in the ledger's sequence of events (increasing); 0 for `accepted`, which is
    /// derived from the order rather than stored.
    pub seq: i64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
    /// The attempt's number (1 for the first call), for attempts and what followed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How the call went (`valid`, `http 503`, `timeout`, ...) or the decision's reason code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// How long the call took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// A human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_as_snake_case() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_stored(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
        assert_eq!(EventKind::from_stored("Validated"), None);
    }

    #[test]
    fn events_serialize_with_rfc3339_times() {
        let event = OrderEvent {
            seq: 3,
            at: Timestamp(1_000),
            kind: EventKind::Attempt,
            attempt: Some(1),
            outcome: Some("http 503".into()),
            latency_ms: Some(12),
            detail: None,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "seq": 3,
                "at": "1970-01-01T00:00:01.000Z",
                "kind": "attempt",
                "attempt": 1,
                "outcome": "http 503",
                "latency_ms": 12
            })
        );
    }
}
