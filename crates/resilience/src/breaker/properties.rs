//! Property tests of the breaker running over one store: many simulated instances, racing
//! between each other's reads and writes, on a clock that moves forward by random steps.

use super::*;
use crate::clock::ManualClock;
use crate::kv::MemoryStore;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const NAME: &str = "dep";
const STATE_KEY: &str = "breaker/dep/state";
/// Latency of a call that is slow under [`policies`].
const SLOW_MS: u64 = 500;

/// Small, fast-moving policies: everything happens within a few hundred milliseconds.
fn policies() -> impl Strategy<Value = BreakerPolicy> {
    (
        1u32..=3,
        20u64..200,
        0u64..400,
        50u64..600,
        2u64..8,
        1u64..5,
    )
        .prop_map(
            |(probes, open_ms, extra_open_ms, probe_timeout_ms, min_calls, consecutive)| {
                BreakerPolicy {
                    window_ms: 1_000,
                    buckets: 10,
                    min_calls,
                    failure_rate: 0.5,
                    slow_call_ms: 400,
                    slow_call_rate: 0.8,
                    consecutive_failures: consecutive,
                    open_ms,
                    open_max_ms: open_ms + extra_open_ms,
                    half_open_probes: probes,
                    probe_timeout_ms,
                    forced_recheck_ms: 100,
                }
            },
        )
}

fn outcomes() -> impl Strategy<Value = CallOutcome> {
    (any::<bool>(), prop_oneof![Just(10u64), Just(SLOW_MS)])
        .prop_map(|(failed, latency_ms)| CallOutcome { failed, latency_ms })
}

fn forced_states() -> impl Strategy<Value = ForcedState> {
    prop_oneof![
        Just(ForcedState::Open),
        Just(ForcedState::Disabled),
        Just(ForcedState::Closed)
    ]
}

/// One step of the simulated fleet.
#[derive(Debug, Clone)]
enum Step {
    /// Time passes.
    Advance(u64),
    /// An instance asks to call (and, if admitted as closed or disabled, calls at once) while
    /// `racers` other instances admit between its read and its write.
    Call { racers: usize, outcome: CallOutcome },
    /// One of the outstanding probes answers (possibly long after it became stale).
    Answer { pick: usize, outcome: CallOutcome },
    /// An operator forces a state.
    Force(ForcedState),
}

fn steps() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u64..300).prop_map(Step::Advance),
        6 => (0usize..3, outcomes()).prop_map(|(racers, outcome)| Step::Call { racers, outcome }),
        4 => (any::<usize>(), outcomes()).prop_map(|(pick, outcome)| Step::Answer { pick, outcome }),
        1 => forced_states().prop_map(Step::Force),
    ]
}

/// A probe ticket someone holds, and when its lease expires.
#[derive(Debug, Clone, Copy)]
struct Issued {
    ticket: ProbeTicket,
    expires_ms: u64,
}

/// The transitions a run may contain: the breaker's own edges, and anything into a forced state.
fn allowed_edge(from: CircuitState, to: CircuitState, forced: bool) -> bool {
    use CircuitState::*;
    let natural = matches!(
        (from, to),
        (Closed, Open) | (Open, HalfOpen) | (HalfOpen, Closed) | (HalfOpen, Open)
    );
    let by_force = matches!(to, ForcedOpen | Disabled | Closed);
    if forced { by_force } else { natural }
}

/// Runs `steps` against one store and checks the fleet-wide invariants after each.
fn run_fleet(policy: &BreakerPolicy, steps: &[Step]) -> Result<(), TestCaseError> {
    let store = MemoryStore::new();
    let clock = ManualClock::new(1_000_000);
    let breaker = CircuitBreaker::new(&store, &clock, NAME, policy.clone());
    let raced: Arc<Mutex<Vec<Issued>>> = Arc::default();
    let mut outstanding: Vec<Issued> = Vec::new();
    let mut last_generation = 0;
    let mut last_reported_generation = 0;
    let mut reported: Vec<(Transition, bool)> = Vec::new();

    for step in steps {
        match step {
            Step::Advance(ms) => clock.advance(*ms),
            Step::Call { racers, outcome } => {
                for _ in 0..*racers {
                    let (policy, raced, now_ms) = (policy.clone(), raced.clone(), clock.now_ms());
                    store.before_next_compare_and_swap(move |store| {
                        // Another instance, with the clock as it was when it started.
                        let clock = ManualClock::new(now_ms);
                        let other = CircuitBreaker::new(store, &clock, NAME, policy.clone());
                        if let Admission::Probe(ticket) = other.admit().unwrap() {
                            let expires_ms = now_ms + policy.probe_timeout_ms;
                            raced.lock().unwrap().push(Issued { ticket, expires_ms });
                        }
                    });
                }
                let admission = breaker.admit().unwrap();
                match admission {
                    Admission::Closed { .. } | Admission::Disabled => {
                        if let Some(transition) = breaker.record(&admission, &[*outcome]).unwrap() {
                            reported.push((transition, false));
                        }
                    }
                    Admission::Probe(ticket) => outstanding.push(Issued {
                        ticket,
                        expires_ms: clock.now_ms() + policy.probe_timeout_ms,
                    }),
                    Admission::Rejected { until_ms, .. } => {
                        prop_assert!(until_ms >= clock.now_ms());
                    }
                }
            }
            Step::Answer { pick, outcome } => {
                if outstanding.is_empty() {
                    continue;
                }
                let issued = outstanding.remove(pick % outstanding.len());
                let before = store.get(STATE_KEY).unwrap();
                let stale = !breaker
                    .record_snapshot()
                    .unwrap()
                    .holds_probe(&issued.ticket);
                let answer = breaker
                    .record(&Admission::Probe(issued.ticket), &[*outcome])
                    .unwrap();
                if stale {
                    prop_assert_eq!(&answer, &None);
                    prop_assert_eq!(store.get(STATE_KEY).unwrap(), before);
                }
                if let Some(transition) = answer {
                    reported.push((transition, false));
                }
            }
            Step::Force(target) => match breaker.force(*target) {
                Ok(transition) => reported.push((transition, true)),
                // Queued racers kept winning: the operator would try again.
                Err(BreakerError::Contended { .. }) => {}
                Err(error) => return Err(TestCaseError::fail(error.to_string())),
            },
        }
        outstanding.append(&mut raced.lock().unwrap());

        let now_ms = clock.now_ms();
        let record = breaker.record_snapshot().unwrap();

        // (1) At most `half_open_probes` live probes per half-open generation.
        let mut live: HashMap<u64, u32> = HashMap::new();
        for issued in outstanding
            .iter()
            .filter(|issued| issued.expires_ms > now_ms)
        {
            *live.entry(issued.ticket.generation).or_default() += 1;
        }
        for (generation, count) in live {
            prop_assert!(
                count <= policy.half_open_probes,
                "{count} live probes in generation {generation}"
            );
        }
        prop_assert!(record.live_probes(now_ms) <= policy.half_open_probes as usize);

        // (3) Generations only grow, each by one transition along an allowed edge.
        prop_assert!(record.generation >= last_generation);
        last_generation = record.generation;
        let mut transitions = 0;
        for (from, to, count) in breaker.transition_counts().unwrap() {
            if count > 0 {
                prop_assert!(
                    allowed_edge(from, to, false) || allowed_edge(from, to, true),
                    "{from:?} -> {to:?}"
                );
            }
            transitions += count;
        }
        prop_assert_eq!(transitions as u64, record.generation - 1);
        for (transition, forced) in reported.drain(..) {
            prop_assert!(transition.generation > last_reported_generation);
            last_reported_generation = transition.generation;
            prop_assert!(
                allowed_edge(transition.from, transition.to, forced),
                "{transition:?}"
            );
            prop_assert_eq!(forced, transition.reason == Some(TripReason::Forced));
        }

        // (4) The circuit is never open for longer than the cap.
        if record.state == CircuitState::Open {
            prop_assert!(record.open_until_ms - record.since_ms <= policy.open_max_ms);
            prop_assert!(record.trips >= 1);
        }
    }
    Ok(())
}

/// Trips the breaker with consecutive failures and lets its open time pass.
fn trip_and_wait(breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>, clock: &ManualClock) {
    let failed = CallOutcome {
        failed: true,
        latency_ms: 1,
    };
    while breaker.record_snapshot().unwrap().state != CircuitState::Open {
        let admission = breaker.admit().unwrap();
        breaker.record(&admission, &[failed]).unwrap();
    }
    clock.advance(breaker.policy.open_max_ms);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// (1), (3), (4): any interleaving of instances keeps the invariants.
    #[test]
    fn the_fleet_keeps_the_invariants(
        policy in policies(),
        steps in proptest::collection::vec(steps(), 1..150),
    ) {
        run_fleet(&policy, &steps)?;
    }

    /// (2): a ticket from an older generation (or whose lease was taken over, or that already
    /// answered) never changes the state, whatever happened since and whatever it reports.
    #[test]
    fn a_stale_ticket_never_changes_the_state(
        policy in policies(),
        how in 0u8..4,
        target in forced_states(),
        later in proptest::collection::vec(steps(), 0..30),
        answer in proptest::collection::vec(outcomes(), 1..4),
    ) {
        let store = MemoryStore::new();
        let clock = ManualClock::new(1_000_000);
        let breaker = CircuitBreaker::new(&store, &clock, NAME, policy.clone());
        trip_and_wait(&breaker, &clock);
        let Admission::Probe(ticket) = breaker.admit().unwrap() else {
            return Err(TestCaseError::fail("no probe after the open time"));
        };
        let succeeded = [CallOutcome { failed: false, latency_ms: 1 }];
        match how {
            0 => {
                breaker.force(target).unwrap();
            }
            1 => {
                // Its lease expires and a newer probe takes the slot.
                clock.advance(policy.probe_timeout_ms);
                prop_assert!(matches!(breaker.admit().unwrap(), Admission::Probe(_)));
            }
            2 => {
                // It already answered: a duplicate answer.
                breaker.record(&Admission::Probe(ticket), &succeeded).unwrap();
            }
            _ => {
                // Another probe of its generation failed (or, alone, it failed itself).
                let other = match breaker.admit().unwrap() {
                    Admission::Probe(other) => other,
                    _ => ticket,
                };
                let failed = [CallOutcome { failed: true, latency_ms: 1 }];
                breaker.record(&Admission::Probe(other), &failed).unwrap();
            }
        }
        run_fleet_on(&breaker, &clock, &later);
        prop_assert!(!breaker.record_snapshot().unwrap().holds_probe(&ticket));
        let before = store.get(STATE_KEY).unwrap();
        prop_assert_eq!(breaker.record(&Admission::Probe(ticket), &answer).unwrap(), None);
        prop_assert_eq!(store.get(STATE_KEY).unwrap(), before);
    }

    /// (6): outcomes of calls admitted before the circuit tripped, answering at any time after
    /// (while it is open, half-open, or closed again), never move it: a breaker that hears
    /// them goes through exactly the states of a twin that never does, step by step. So once
    /// the circuit closed again, only the new calls themselves can reopen it.
    #[test]
    fn late_outcomes_never_reopen_a_circuit_that_closed_again(
        policy in policies(),
        in_flight in 1usize..4,
        early in proptest::collection::vec(outcomes(), 0..12),
        early_at in 0u64..1_000,
        later in proptest::collection::vec(late_steps(), 1..80),
    ) {
        let clock = ManualClock::new(1_000_000);
        let (noisy_store, quiet_store) = (MemoryStore::new(), MemoryStore::new());
        let noisy = CircuitBreaker::new(&noisy_store, &clock, NAME, policy.clone());
        let quiet = CircuitBreaker::new(&quiet_store, &clock, NAME, policy.clone());
        let same = |noisy_step: (Admission, Option<Transition>), quiet_step| {
            prop_assert_eq!(noisy_step, quiet_step);
            prop_assert_eq!(noisy.record_snapshot().unwrap(), quiet.record_snapshot().unwrap());
            Ok(())
        };
        // Calls admitted while the circuit is closed, answering only much later.
        let stale: Vec<Admission> = (0..in_flight).map(|_| noisy.admit().unwrap()).collect();
        let all_closed = stale.iter().all(|a| matches!(a, Admission::Closed { .. }));
        prop_assert!(all_closed, "{:?}", stale);
        // Both trip ...
        let failed = CallOutcome { failed: true, latency_ms: 1 };
        while quiet.record_snapshot().unwrap().state != CircuitState::Open {
            same(call_now(&noisy, failed), call_now(&quiet, failed))?;
        }
        // ... the late answers start while the circuit is open ...
        clock.advance(early_at % policy.open_ms);
        for (index, outcome) in early.iter().enumerate() {
            let admission = &stale[index % stale.len()];
            prop_assert_eq!(noisy.record(admission, &[*outcome]).unwrap(), None);
        }
        clock.advance(policy.open_max_ms);
        // ... both close again through their probes ...
        let succeeded = CallOutcome { failed: false, latency_ms: 1 };
        while quiet.record_snapshot().unwrap().state != CircuitState::Closed {
            same(call_now(&noisy, succeeded), call_now(&quiet, succeeded))?;
        }
        // ... and from then on only `noisy` hears the late answers.
        for step in &later {
            match step {
                Late::Advance(ms) => clock.advance(*ms),
                Late::Fresh(outcome) => {
                    same(call_now(&noisy, *outcome), call_now(&quiet, *outcome))?;
                }
                Late::Stale { pick, outcomes } => {
                    let before = noisy_store.get(STATE_KEY).unwrap();
                    let admission = &stale[pick % stale.len()];
                    prop_assert_eq!(noisy.record(admission, outcomes).unwrap(), None);
                    prop_assert_eq!(noisy_store.get(STATE_KEY).unwrap(), before);
                }
            }
            prop_assert_eq!(noisy.record_snapshot().unwrap(), quiet.record_snapshot().unwrap());
        }
    }

    /// (4): whatever the trips, the open duration stays within the cap.
    #[test]
    fn trips_never_open_longer_than_the_cap(policy in policies(), trips in any::<u32>()) {
        let record = BreakerRecord { trips, ..BreakerRecord::closed(1, 0) };
        let (open, _) = record.trip(&policy, 5, TripReason::ProbeFailed);
        prop_assert!(open.open_until_ms - 5 <= policy.open_max_ms);
    }

    /// (5a): with rates out of reach, the breaker opens on exactly the `consecutive_failures`-th
    /// failure in a row, whatever shorter runs came before.
    #[test]
    fn opens_after_exactly_n_consecutive_failures(
        consecutive in 1u64..8,
        earlier_runs in proptest::collection::vec(0u64..8, 0..6),
    ) {
        let policy = BreakerPolicy {
            min_calls: 1_000_000,
            consecutive_failures: consecutive,
            ..Default::default()
        };
        let store = MemoryStore::new();
        let clock = ManualClock::new(1_000_000);
        let breaker = CircuitBreaker::new(&store, &clock, NAME, policy);
        let call = |failed: bool| {
            let admission = breaker.admit().unwrap();
            prop_assert!(matches!(admission, Admission::Closed { .. }), "{:?}", admission);
            Ok(breaker.record(&admission, &[CallOutcome { failed, latency_ms: 1 }]).unwrap())
        };
        for run in earlier_runs {
            for _ in 0..run % consecutive {
                prop_assert_eq!(call(true)?, None);
            }
            prop_assert_eq!(call(false)?, None);
        }
        for _ in 1..consecutive {
            prop_assert_eq!(call(true)?, None);
        }
        let transition = call(true)?.expect("the n-th failure in a row trips");
        prop_assert_eq!(transition.reason, Some(TripReason::ConsecutiveFailures { count: consecutive }));
        prop_assert_eq!(breaker.record_snapshot().unwrap().state, CircuitState::Open);
    }

    /// (5b): with runs out of reach, the breaker opens on the first failure that leaves the
    /// window at or above the failure rate with at least `min_calls` calls, and not before.
    #[test]
    fn opens_on_the_failure_rate_once_min_calls_is_reached(
        min_calls in 1u64..20,
        failure_rate in 0.05f64..=1.0,
        failures in proptest::collection::vec(any::<bool>(), 1..60),
    ) {
        let policy = BreakerPolicy {
            min_calls,
            failure_rate,
            consecutive_failures: 1_000_000,
            ..Default::default()
        };
        let store = MemoryStore::new();
        let clock = ManualClock::new(1_000_000);
        let breaker = CircuitBreaker::new(&store, &clock, NAME, policy);
        let (mut calls, mut failed_calls) = (0_u64, 0_u64);
        for failed in failures {
            let admission = breaker.admit().unwrap();
            prop_assert!(matches!(admission, Admission::Closed { .. }), "{:?}", admission);
            let transition = breaker
                .record(&admission, &[CallOutcome { failed, latency_ms: 1 }])
                .unwrap();
            calls += 1;
            failed_calls += u64::from(failed);
            let should_trip = failed
                && calls >= min_calls
                && failed_calls as f64 / calls as f64 >= failure_rate;
            prop_assert_eq!(transition.is_some(), should_trip);
            if should_trip {
                let reason = transition.unwrap().reason;
                let expected_rate = failed_calls as f64 / calls as f64;
                prop_assert_eq!(reason, Some(TripReason::FailureRate { rate: expected_rate, calls }));
                break;
            }
        }
    }
}

/// What happens after the circuit tripped with calls still out: time passes, new calls are
/// made, and the calls admitted before the trip answer late.
#[derive(Debug, Clone)]
enum Late {
    Advance(u64),
    Fresh(CallOutcome),
    Stale {
        pick: usize,
        outcomes: Vec<CallOutcome>,
    },
}

fn late_steps() -> impl Strategy<Value = Late> {
    prop_oneof![
        2 => (1u64..300).prop_map(Late::Advance),
        4 => outcomes().prop_map(Late::Fresh),
        2 => (any::<usize>(), proptest::collection::vec(outcomes(), 1..6))
            .prop_map(|(pick, outcomes)| Late::Stale { pick, outcomes }),
    ]
}

/// Admits one call on `breaker` and records `outcome` at once (probes included); the
/// admission and the transition it brought.
fn call_now(
    breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>,
    outcome: CallOutcome,
) -> (Admission, Option<Transition>) {
    let admission = breaker.admit().unwrap();
    let transition = match admission {
        Admission::Rejected { .. } => None,
        _ => breaker.record(&admission, &[outcome]).unwrap(),
    };
    (admission, transition)
}

/// Runs more steps on an existing breaker (one instance, no checks): history for stale tickets.
fn run_fleet_on(
    breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>,
    clock: &ManualClock,
    steps: &[Step],
) {
    let mut outstanding: Vec<ProbeTicket> = Vec::new();
    for step in steps {
        match step {
            Step::Advance(ms) => clock.advance(*ms),
            Step::Call { outcome, .. } => match breaker.admit().unwrap() {
                Admission::Probe(ticket) => outstanding.push(ticket),
                admission => {
                    breaker.record(&admission, &[*outcome]).unwrap();
                }
            },
            Step::Answer { pick, outcome } => {
                if !outstanding.is_empty() {
                    let ticket = outstanding.remove(pick % outstanding.len());
                    breaker
                        .record(&Admission::Probe(ticket), &[*outcome])
                        .unwrap();
                }
            }
            Step::Force(target) => {
                breaker.force(*target).unwrap();
            }
        }
    }
}
