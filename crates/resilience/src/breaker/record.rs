//! The breaker's shared state, as stored, and the pure transitions between its states.

use super::policy::BreakerPolicy;
use serde::{Deserialize, Serialize};

/// How long a caller turned away by a full half-open circuit waits at most before asking again.
pub(crate) const RECHECK_MS: u64 = 250;

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are rejected until the open time has passed.
    Open,
    /// A few probe calls test whether the dependency recovered.
    HalfOpen,
    /// An operator opened the circuit; it stays open until forced otherwise.
    ForcedOpen,
    /// An operator disabled the breaker: calls flow and are counted, nothing trips.
    Disabled,
}

impl CircuitState {
    /// Every state, in declaration order.
    pub const ALL: [CircuitState; 5] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
    ];

    /// The state's snake_case name, as serialized and used in keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
        }
    }
}

/// The states an operator can force a circuit into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedState {
    /// Reject every call until forced otherwise.
    Open,
    /// Let every call through and never trip.
    Disabled,
    /// Reset to closed, forgetting past trips.
    Closed,
}

impl ForcedState {
    fn circuit_state(self) -> CircuitState {
        match self {
            ForcedState::Open => CircuitState::ForcedOpen,
            ForcedState::Disabled => CircuitState::Disabled,
            ForcedState::Closed => CircuitState::Closed,
        }
    }
}

/// Why the circuit opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TripReason {
    /// Too many of the window's calls failed.
    FailureRate {
        /// Failures per call.
        rate: f64,
        /// Calls in the window.
        calls: u64,
    },
    /// Too many of the window's calls were slow.
    SlowCallRate {
        /// Slow calls per call.
        rate: f64,
        /// Calls in the window.
        calls: u64,
    },
    /// Too many failures in a row, fleet-wide.
    ConsecutiveFailures {
        /// Failures in the run.
        count: u64,
    },
    /// A half-open probe failed or was slow.
    ProbeFailed,
    /// An operator forced the state.
    Forced,
}

/// A half-open probe's hold on one of the probe slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeLease {
    /// The lease's id, unique within its half-open generation.
    pub id: u64,
    /// When the slot frees itself if the probe never answers.
    pub expires_ms: u64,
}

/// What a caller holds while it makes a probe call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTicket {
    /// The half-open generation the probe belongs to.
    pub generation: u64,
    /// The lease it holds.
    pub lease_id: u64,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed: call, then record the outcome.
    Closed {
        /// The closed generation the call was admitted in.
        generation: u64,
    },
    /// The breaker is disabled: call, then record the outcome.
    Disabled,
    /// The caller is one of the half-open probes: call, then record the outcome with this.
    Probe(ProbeTicket),
    /// Do not call.
    Rejected {
        /// When asking again may be worthwhile.
        until_ms: u64,
        /// The state that rejected the call.
        state: CircuitState,
    },
}

/// A change of state, as won by one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// The generation of the new state.
    pub generation: u64,
    /// When it happened.
    pub at_ms: u64,
    /// Why, for trips and forced changes.
    pub reason: Option<TripReason>,
}

/// The breaker's state as stored (JSON) at `breaker/{name}/state`, shared by the whole fleet and
/// changed only by compare-and-swap. Every write makes a value never stored before (the
/// generation, lease ids and run epoch only grow), so comparing by value is safe from ABA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerRecord {
    /// The circuit's state.
    pub state: CircuitState,
    /// Bumped on every transition.
    pub generation: u64,
    /// When the current state began.
    pub since_ms: u64,
    /// Open only: when the next probe may go (0 in every other state).
    pub open_until_ms: u64,
    /// Trips since the circuit last closed; sets the open duration.
    pub trips: u32,
    /// The consecutive-failure run is counted at `breaker/{name}/run/{run_epoch}`; a new epoch
    /// starts a new run.
    pub run_epoch: u64,
    /// Half-open only: the probes' leases.
    pub probes: Vec<ProbeLease>,
    /// Half-open only: probes that succeeded in this generation.
    pub probe_successes: u32,
    /// Half-open only: the id the next lease gets.
    pub next_probe_id: u64,
    /// Why the circuit last tripped or was forced.
    pub last_reason: Option<TripReason>,
    /// Closed only: from when calls count toward the rates that trip it. A circuit closed
    /// after a trip (or forced closed) ignores what was counted before, so that the calls that
    /// opened it cannot re-open it; one that never tripped counts everything (0).
    #[serde(default)]
    pub rates_since_ms: u64,
}

/// What an admission takes: either a decision from the record alone, or a change to win.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdmissionPlan {
    /// The answer, with nothing to write.
    Decided(Admission),
    /// A probe slot, if `record` replaces the current record.
    Claim {
        record: BreakerRecord,
        ticket: ProbeTicket,
        transition: Option<Transition>,
    },
}

impl BreakerRecord {
    /// A closed circuit with no history, in `generation`, since `since_ms`.
    pub fn closed(generation: u64, since_ms: u64) -> Self {
        Self {
            state: CircuitState::Closed,
            generation,
            since_ms,
            open_until_ms: 0,
            trips: 0,
            run_epoch: 0,
            probes: Vec::new(),
            probe_successes: 0,
            next_probe_id: 1,
            last_reason: None,
            rates_since_ms: 0,
        }
    }

    /// Leases that have not expired at `now_ms`.
    pub fn live_probes(&self, now_ms: u64) -> usize {
        self.probes
            .iter()
            .filter(|lease| lease.expires_ms > now_ms)
            .count()
    }

    /// Whether `ticket` still counts: same half-open generation, and its lease is still held (an
    /// expired lease counts until another probe takes its slot).
    pub fn holds_probe(&self, ticket: &ProbeTicket) -> bool {
        self.state == CircuitState::HalfOpen
            && self.generation == ticket.generation
            && self.probes.iter().any(|lease| lease.id == ticket.lease_id)
    }

    /// What admitting a call at `now_ms` takes.
    pub(crate) fn plan_admission(&self, policy: &BreakerPolicy, now_ms: u64) -> AdmissionPlan {
        let rejected =
            |until_ms, state| AdmissionPlan::Decided(Admission::Rejected { until_ms, state });
        match self.state {
            CircuitState::Closed => AdmissionPlan::Decided(Admission::Closed {
                generation: self.generation,
            }),
            CircuitState::Disabled => AdmissionPlan::Decided(Admission::Disabled),
            CircuitState::ForcedOpen => rejected(
                now_ms.saturating_add(policy.forced_recheck_ms),
                CircuitState::ForcedOpen,
            ),
            CircuitState::Open if now_ms < self.open_until_ms => {
                rejected(self.open_until_ms, CircuitState::Open)
            }
            CircuitState::Open => {
                let mut record = self.next_generation(CircuitState::HalfOpen, now_ms);
                let ticket = record.add_lease(policy, now_ms);
                let transition = self.transition_to(&record, now_ms, None);
                AdmissionPlan::Claim {
                    record,
                    ticket,
                    transition: Some(transition),
                }
            }
            CircuitState::HalfOpen => {
                if self.live_probes(now_ms) >= policy.half_open_probes as usize {
                    return rejected(self.probe_recheck_ms(now_ms), CircuitState::HalfOpen);
                }
                let mut record = self.clone();
                record.probes.retain(|lease| lease.expires_ms > now_ms);
                let ticket = record.add_lease(policy, now_ms);
                AdmissionPlan::Claim {
                    record,
                    ticket,
                    transition: None,
                }
            }
        }
    }

    /// When a caller turned away by a full half-open circuit should ask again: when the first
    /// lease expires, but no later than [`RECHECK_MS`] from now (a probe may answer sooner).
    fn probe_recheck_ms(&self, now_ms: u64) -> u64 {
        let soon = now_ms.saturating_add(RECHECK_MS);
        self.probes
            .iter()
            .map(|lease| lease.expires_ms)
            .filter(|expires_ms| *expires_ms > now_ms)
            .min()
            .map_or(soon, |first| first.min(soon))
    }

    /// The circuit opened at `now_ms` for `reason`: one more trip in a row, open for the
    /// (doubling, capped) open duration.
    pub fn trip(
        &self,
        policy: &BreakerPolicy,
        now_ms: u64,
        reason: TripReason,
    ) -> (Self, Transition) {
        let mut record = self.next_generation(CircuitState::Open, now_ms);
        record.trips = self.trips.saturating_add(1);
        record.open_until_ms = now_ms.saturating_add(policy.open_duration_ms(record.trips));
        record.last_reason = Some(reason.clone());
        let transition = self.transition_to(&record, now_ms, Some(reason));
        (record, transition)
    }

    /// The probe holding `ticket` answered (call only when [`BreakerRecord::holds_probe`]). A
    /// success frees its slot and closes the circuit once `half_open_probes` probes succeeded;
    /// a failure opens it again for longer.
    pub fn finish_probe(
        &self,
        policy: &BreakerPolicy,
        ticket: &ProbeTicket,
        succeeded: bool,
        now_ms: u64,
    ) -> (Self, Option<Transition>) {
        if !succeeded {
            let (record, transition) = self.trip(policy, now_ms, TripReason::ProbeFailed);
            return (record, Some(transition));
        }
        let successes = self.probe_successes.saturating_add(1);
        if successes >= policy.half_open_probes {
            let mut record = self.next_generation(CircuitState::Closed, now_ms);
            record.trips = 0;
            record.run_epoch = self.run_epoch.saturating_add(1);
            record.rates_since_ms = now_ms;
            let transition = self.transition_to(&record, now_ms, None);
            return (record, Some(transition));
        }
        let mut record = self.clone();
        record.probes.retain(|lease| lease.id != ticket.lease_id);
        record.probe_successes = successes;
        (record, None)
    }

    /// The same record with a new consecutive-failure run (after a success ends the old one).
    pub fn with_fresh_run(&self) -> Self {
        Self {
            run_epoch: self.run_epoch.saturating_add(1),
            ..self.clone()
        }
    }

    /// An operator forces `target` at `now_ms`. Forcing closed also forgets past trips and
    /// starts a new failure run.
    pub fn force(&self, target: ForcedState, now_ms: u64) -> (Self, Transition) {
        let mut record = self.next_generation(target.circuit_state(), now_ms);
        record.last_reason = Some(TripReason::Forced);
        if target == ForcedState::Closed {
            record.trips = 0;
            record.run_epoch = self.run_epoch.saturating_add(1);
            record.rates_since_ms = now_ms;
        }
        let transition = self.transition_to(&record, now_ms, Some(TripReason::Forced));
        (record, transition)
    }

    /// The record of a new generation in `state`, without any half-open bookkeeping.
    fn next_generation(&self, state: CircuitState, now_ms: u64) -> Self {
        Self {
            state,
            generation: self.generation.saturating_add(1),
            since_ms: now_ms,
            open_until_ms: 0,
            probes: Vec::new(),
            probe_successes: 0,
            next_probe_id: 1,
            ..self.clone()
        }
    }

    /// Takes the next probe lease, expiring after the probe timeout.
    fn add_lease(&mut self, policy: &BreakerPolicy, now_ms: u64) -> ProbeTicket {
        let id = self.next_probe_id;
        self.next_probe_id = id.saturating_add(1);
        self.probes.push(ProbeLease {
            id,
            expires_ms: now_ms.saturating_add(policy.probe_timeout_ms),
        });
        ProbeTicket {
            generation: self.generation,
            lease_id: id,
        }
    }

    fn transition_to(&self, next: &Self, now_ms: u64, reason: Option<TripReason>) -> Transition {
        Transition {
            from: self.state,
            to: next.state,
            generation: next.generation,
            at_ms: now_ms,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            half_open_probes: 2,
            ..Default::default()
        }
    }

    fn claim(plan: AdmissionPlan) -> (BreakerRecord, ProbeTicket, Option<Transition>) {
        match plan {
            AdmissionPlan::Claim {
                record,
                ticket,
                transition,
            } => (record, ticket, transition),
            AdmissionPlan::Decided(admission) => panic!("expected a claim, got {admission:?}"),
        }
    }

    fn decided(plan: AdmissionPlan) -> Admission {
        match plan {
            AdmissionPlan::Decided(admission) => admission,
            AdmissionPlan::Claim { .. } => panic!("expected a decision"),
        }
    }

    fn open_at(now_ms: u64) -> BreakerRecord {
        BreakerRecord::closed(1, 0)
            .trip(
                &policy(),
                now_ms,
                TripReason::ConsecutiveFailures { count: 5 },
            )
            .0
    }

    #[test]
    fn state_names_match_serde() {
        for state in CircuitState::ALL {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
    }

    #[test]
    fn record_round_trips_through_json() {
        let record = open_at(100);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""kind":"consecutive_failures""#), "{json}");
        assert_eq!(
            serde_json::from_str::<BreakerRecord>(&json).unwrap(),
            record
        );
    }

    #[test]
    fn closed_and_disabled_admit_without_writing() {
        let closed = BreakerRecord::closed(3, 0);
        assert_eq!(
            decided(closed.plan_admission(&policy(), 5)),
            Admission::Closed { generation: 3 }
        );
        let (disabled, _) = closed.force(ForcedState::Disabled, 5);
        assert_eq!(
            decided(disabled.plan_admission(&policy(), 6)),
            Admission::Disabled
        );
    }

    #[test]
    fn forced_open_rejects_until_the_recheck() {
        let (forced, transition) = BreakerRecord::closed(1, 0).force(ForcedState::Open, 10);
        assert_eq!(transition.to, CircuitState::ForcedOpen);
        assert_eq!(transition.reason, Some(TripReason::Forced));
        assert_eq!(
            decided(forced.plan_admission(&policy(), 20)),
            Admission::Rejected {
                until_ms: 5_020,
                state: CircuitState::ForcedOpen
            }
        );
    }

    #[test]
    fn trip_opens_for_the_open_duration() {
        let (open, transition) =
            BreakerRecord::closed(1, 0).trip(&policy(), 100, TripReason::ProbeFailed);
        assert_eq!(open.state, CircuitState::Open);
        assert_eq!(open.generation, 2);
        assert_eq!(open.trips, 1);
        assert_eq!(open.open_until_ms, 1_100);
        assert_eq!(transition.from, CircuitState::Closed);
        assert_eq!(transition.generation, 2);
        assert_eq!(
            decided(open.plan_admission(&policy(), 1_099)),
            Admission::Rejected {
                until_ms: 1_100,
                state: CircuitState::Open
            }
        );
    }

    #[test]
    fn open_past_its_time_goes_half_open_with_lease_one() {
        let open = open_at(0);
        let (half_open, ticket, transition) = claim(open.plan_admission(&policy(), 1_000));
        assert_eq!(half_open.state, CircuitState::HalfOpen);
        assert_eq!(half_open.generation, open.generation + 1);
        assert_eq!(
            ticket,
            ProbeTicket {
                generation: half_open.generation,
                lease_id: 1
            }
        );
        assert_eq!(
            half_open.probes,
            vec![ProbeLease {
                id: 1,
                expires_ms: 11_000
            }]
        );
        let transition = transition.unwrap();
        assert_eq!(
            (transition.from, transition.to),
            (CircuitState::Open, CircuitState::HalfOpen)
        );
    }

    #[test]
    fn half_open_hands_out_only_free_slots() {
        let (half_open, _, _) = claim(open_at(0).plan_admission(&policy(), 1_000));
        let (full, second, transition) = claim(half_open.plan_admission(&policy(), 1_100));
        assert_eq!(second.lease_id, 2);
        assert_eq!(second.generation, half_open.generation);
        assert_eq!(transition, None);
        // Full: come back when the first lease expires, or in 250 ms, whichever is sooner.
        assert_eq!(
            decided(full.plan_admission(&policy(), 1_200)),
            Admission::Rejected {
                until_ms: 1_450,
                state: CircuitState::HalfOpen
            }
        );
        assert_eq!(
            decided(full.plan_admission(&policy(), 10_900)),
            Admission::Rejected {
                until_ms: 11_000,
                state: CircuitState::HalfOpen
            }
        );
        // An expired lease frees its slot: the new lease replaces it.
        let (replaced, third, _) = claim(full.plan_admission(&policy(), 11_000));
        assert_eq!(third.lease_id, 3);
        assert_eq!(
            replaced.probes.iter().map(|l| l.id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let first = ProbeTicket {
            generation: half_open.generation,
            lease_id: 1,
        };
        assert!(full.holds_probe(&first), "expired but not yet replaced");
        assert!(!replaced.holds_probe(&first));
    }

    #[test]
    fn probes_close_the_circuit_once_enough_succeed() {
        let policy = policy();
        let (half_open, first, _) = claim(open_at(0).plan_admission(&policy, 1_000));
        let (both, second, _) = claim(half_open.plan_admission(&policy, 1_000));
        let (one_done, transition) = both.finish_probe(&policy, &first, true, 1_500);
        assert_eq!(transition, None);
        assert_eq!(one_done.probe_successes, 1);
        assert!(!one_done.holds_probe(&first));
        assert_eq!(one_done.live_probes(1_500), 1);
        let (closed, transition) = one_done.finish_probe(&policy, &second, true, 1_600);
        let transition = transition.unwrap();
        assert_eq!(
            (transition.from, transition.to),
            (CircuitState::HalfOpen, CircuitState::Closed)
        );
        assert_eq!(closed.state, CircuitState::Closed);
        assert_eq!(closed.trips, 0);
        assert_eq!(closed.run_epoch, both.run_epoch + 1);
        assert!(closed.probes.is_empty());
        assert_eq!(closed.since_ms, 1_600);
    }

    #[test]
    fn a_failed_probe_reopens_for_longer() {
        let policy = policy();
        let open = open_at(0);
        let (half_open, ticket, _) = claim(open.plan_admission(&policy, 1_000));
        let (reopened, transition) = half_open.finish_probe(&policy, &ticket, false, 1_200);
        assert_eq!(reopened.state, CircuitState::Open);
        assert_eq!(reopened.trips, 2);
        assert_eq!(reopened.open_until_ms, 3_200);
        assert_eq!(reopened.last_reason, Some(TripReason::ProbeFailed));
        assert_eq!(transition.unwrap().reason, Some(TripReason::ProbeFailed));
        assert!(!reopened.holds_probe(&ticket), "the generation moved on");
    }

    #[test]
    fn forcing_closed_resets_trips_and_run() {
        let open = open_at(0);
        let (closed, transition) = open.force(ForcedState::Closed, 50);
        assert_eq!(closed.state, CircuitState::Closed);
        assert_eq!(closed.trips, 0);
        assert_eq!(closed.run_epoch, open.run_epoch + 1);
        assert_eq!(closed.open_until_ms, 0);
        assert_eq!(transition.generation, open.generation + 1);
    }

    #[test]
    fn a_fresh_run_changes_only_the_epoch() {
        let closed = BreakerRecord::closed(4, 9);
        let fresh = closed.with_fresh_run();
        assert_eq!(fresh.run_epoch, 1);
        assert_eq!(
            BreakerRecord {
                run_epoch: 0,
                ..fresh
            },
            closed
        );
    }
}
