//! The fleet-wide circuit breaker. Its state is one JSON record in the store, changed only by
//! compare-and-swap, so every instance, process and replica sees (and moves) the same circuit.
//! The rules are pure functions over values ([`BreakerPolicy`], [`BreakerRecord`]);
//! [`CircuitBreaker`] runs them over a [`KvStore`].

mod policy;
mod record;

#[cfg(test)]
mod properties;

pub use policy::{BreakerPolicy, CallOutcome};
pub use record::{
    Admission, BreakerRecord, CircuitState, ForcedState, ProbeLease, ProbeTicket, Transition,
    TripReason,
};

use crate::clock::Clock;
use crate::kv::KvStore;
use crate::window::{CallTally, CallWindow, WindowTotals};
use record::{AdmissionPlan, RECHECK_MS};

/// How many times a lost compare-and-swap is retried before giving up for now.
const MAX_CAS_ATTEMPTS: u32 = 16;

/// A record still missing after this many callers found it missing is seeded again: whoever
/// was to seed it failed between claiming the seeding and writing.
const RESEED_EVERY: i64 = 1_000;

/// What can go wrong running the breaker.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError {
    /// The key-value store failed.
    #[error("the key-value store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The stored record is not a breaker record.
    #[error("the breaker record at {key:?} is not valid")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// Other instances kept changing the record; try again later.
    #[error("the breaker record at {key:?} kept changing: gave up after {attempts} attempts")]
    Contended {
        /// The record's key.
        key: String,
        /// Compare-and-swap attempts made.
        attempts: u32,
    },
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> BreakerError {
    BreakerError::Store(Box::new(error))
}

/// The stored record together with the exact bytes it was read from (the compare-and-swap
/// expects those bytes). No bytes: the record is not in the store yet, so it must not be
/// compare-and-swapped (on the real store that would be an unconditional write).
struct Snapshot {
    record: BreakerRecord,
    raw: Option<Vec<u8>>,
}

/// A circuit breaker for one dependency, shared fleet-wide through the store under
/// `breaker/{name}`.
pub struct CircuitBreaker<'a, S: KvStore, C: Clock> {
    store: &'a S,
    clock: &'a C,
    policy: BreakerPolicy,
    prefix: String,
    window: CallWindow<'a, S>,
}

impl<'a, S: KvStore, C: Clock> CircuitBreaker<'a, S, C> {
    /// The breaker named `name` (validate `policy` first; every instance should use the same).
    pub fn new(store: &'a S, clock: &'a C, name: &str, policy: BreakerPolicy) -> Self {
        let prefix = format!("breaker/{name}");
        let window = CallWindow::new(store, &prefix, policy.window_ms, policy.buckets);
        Self {
            store,
            clock,
            policy,
            prefix,
            window,
        }
    }

    /// The window the breaker counts calls in (share it with the retry budget).
    pub fn window(&self) -> &CallWindow<'a, S> {
        &self.window
    }

    /// The stored record, seeding it if absent (see the crate docs on seeding): the one caller
    /// that claims the seeding writes a closed record of generation 1; others get an unstored
    /// closed record of generation 0.
    pub fn record_snapshot(&self) -> Result<BreakerRecord, BreakerError> {
        Ok(self.load()?.record)
    }

    /// Whether a call may go ahead now; see [`Admission`]. At most `half_open_probes` callers
    /// fleet-wide hold live probe leases at once.
    pub fn admit(&self) -> Result<Admission, BreakerError> {
        let mut last_state = CircuitState::Closed;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now_ms = self.clock.now_ms();
            let snapshot = self.load()?;
            last_state = snapshot.record.state;
            match snapshot.record.plan_admission(&self.policy, now_ms) {
                AdmissionPlan::Decided(admission) => return Ok(admission),
                AdmissionPlan::Claim {
                    record,
                    ticket,
                    transition,
                } => {
                    if self
                        .commit(&snapshot, record, transition.as_ref())?
                        .is_some()
                    {
                        return Ok(Admission::Probe(ticket));
                    }
                }
            }
        }
        Ok(Admission::Rejected {
            until_ms: self.clock.now_ms().saturating_add(RECHECK_MS),
            state: last_state,
        })
    }

    /// When the circuit refuses calls now without any change to its state (open before its
    /// probe time, forced open, half-open with every probe slot taken): the time to retry.
    /// `None` when [`admit`](Self::admit) may let a call through. A cheap look (one read, no
    /// write) that lets a caller skip work it would only have to undo.
    pub fn refuses_until(&self) -> Result<Option<u64>, BreakerError> {
        let snapshot = self.load()?;
        Ok(
            match snapshot
                .record
                .plan_admission(&self.policy, self.clock.now_ms())
            {
                AdmissionPlan::Decided(Admission::Rejected { until_ms, .. }) => Some(until_ms),
                _ => None,
            },
        )
    }

    /// Records what the calls made under `admission` did, in order, and moves the circuit if
    /// they warrant it. Returns the transition if this caller won one. Nothing is recorded for a
    /// rejected admission or an empty `outcomes`.
    ///
    /// Stale outcomes never change the state: those of a closed admission whose generation is
    /// no longer the stored one (calls admitted before the circuit tripped, answering late), and
    /// a probe's answer whose generation or lease is gone. They count in the window, but never
    /// in the failure run, and never in the rates of a circuit that closed after they were
    /// admitted.
    pub fn record(
        &self,
        admission: &Admission,
        outcomes: &[CallOutcome],
    ) -> Result<Option<Transition>, BreakerError> {
        if outcomes.is_empty() {
            return Ok(None);
        }
        let now_ms = self.clock.now_ms();
        match admission {
            Admission::Rejected { .. } => Ok(None),
            Admission::Disabled => {
                self.count_in_window(now_ms, outcomes)?;
                Ok(None)
            }
            Admission::Closed { generation } => self.record_closed(now_ms, *generation, outcomes),
            Admission::Probe(ticket) => self.record_probe(now_ms, ticket, outcomes),
        }
    }

    /// Forces the circuit into `target` (operators only).
    pub fn force(&self, target: ForcedState) -> Result<Transition, BreakerError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now_ms = self.clock.now_ms();
            let snapshot = self.load()?;
            let (record, transition) = snapshot.record.force(target, now_ms);
            if self.commit(&snapshot, record, Some(&transition))?.is_some() {
                return Ok(transition);
            }
        }
        Err(BreakerError::Contended {
            key: self.state_key(),
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// How many times each transition happened, fleet-wide: every (from, to) pair of states.
    pub fn transition_counts(
        &self,
    ) -> Result<Vec<(CircuitState, CircuitState, i64)>, BreakerError> {
        let pairs: Vec<(CircuitState, CircuitState)> = CircuitState::ALL
            .iter()
            .flat_map(|from| CircuitState::ALL.map(|to| (*from, to)))
            .collect();
        let keys: Vec<String> = pairs
            .iter()
            .map(|(from, to)| self.transition_key(*from, *to))
            .collect();
        let counts = self.store.counters(&keys).map_err(store_error)?;
        Ok(pairs
            .into_iter()
            .zip(counts)
            .map(|((from, to), count)| (from, to, count))
            .collect())
    }

    /// The window's totals now.
    pub fn window_totals(&self) -> Result<WindowTotals, BreakerError> {
        self.window.totals(self.clock.now_ms()).map_err(store_error)
    }

    /// Deletes old window buckets and the counters of finished failure runs; returns how many
    /// keys it deleted.
    pub fn prune(&self) -> Result<usize, BreakerError> {
        let buckets = self
            .window
            .prune(self.clock.now_ms())
            .map_err(store_error)?;
        let current_epoch = self.load()?.record.run_epoch;
        let run_prefix = format!("{}/run/", self.prefix);
        let finished: Vec<String> = self
            .store
            .keys_with_prefix(&run_prefix)
            .map_err(store_error)?
            .into_iter()
            .filter(|key| {
                key[run_prefix.len()..]
                    .parse::<u64>()
                    .is_ok_and(|epoch| epoch < current_epoch)
            })
            .collect();
        if !finished.is_empty() {
            self.store.delete_many(&finished).map_err(store_error)?;
        }
        Ok(buckets + finished.len())
    }

    /// Closed: extends or ends the failure run, then trips if the window or the run says so;
    /// unless the calls were admitted in another generation than the stored one (the circuit
    /// moved since), whose outcomes are only counted.
    fn record_closed(
        &self,
        now_ms: u64,
        generation: u64,
        outcomes: &[CallOutcome],
    ) -> Result<Option<Transition>, BreakerError> {
        let mut snapshot = self.load()?;
        if snapshot.record.generation != generation {
            self.count_stale(&snapshot.record, now_ms, outcomes)?;
            return Ok(None);
        }
        self.count_in_window(now_ms, outcomes)?;
        let last_success = outcomes.iter().rposition(|outcome| !outcome.failed);
        if last_success.is_some() {
            snapshot = self.end_failure_run(snapshot)?;
        }
        if snapshot.record.state != CircuitState::Closed {
            return Ok(None);
        }
        let trailing_failures = outcomes.len() - last_success.map_or(0, |index| index + 1);
        let run = if trailing_failures > 0 {
            let delta = i64::try_from(trailing_failures).unwrap_or(i64::MAX);
            let run = self
                .store
                .increment(&self.run_key(snapshot.record.run_epoch), delta)
                .map_err(store_error)?;
            u64::try_from(run).unwrap_or(0)
        } else {
            0
        };
        let troubled = outcomes
            .iter()
            .any(|outcome| outcome.failed || self.policy.is_slow(outcome.latency_ms));
        if !troubled {
            return Ok(None);
        }
        self.trip_if_warranted(snapshot, now_ms, run)
    }

    /// A success ends the current failure run: a new run epoch, unless the run is already empty
    /// or another instance ended it first. Returns the latest snapshot.
    fn end_failure_run(&self, snapshot: Snapshot) -> Result<Snapshot, BreakerError> {
        let epoch = snapshot.record.run_epoch;
        let run = self
            .store
            .counter(&self.run_key(epoch))
            .map_err(store_error)?;
        if run <= 0 {
            return Ok(snapshot);
        }
        let mut snapshot = snapshot;
        for _ in 0..MAX_CAS_ATTEMPTS {
            if snapshot.record.state != CircuitState::Closed || snapshot.record.run_epoch != epoch {
                return Ok(snapshot);
            }
            let fresh = snapshot.record.with_fresh_run();
            if let Some(updated) = self.commit(&snapshot, fresh, None)? {
                return Ok(updated);
            }
            snapshot = self.load()?;
        }
        Ok(snapshot)
    }

    /// Trips the closed circuit if the calls since it closed (within the window) or the failure
    /// run warrant it. Gives up if the record moves to another generation or run meanwhile: the
    /// evidence was about the circuit as it was.
    ///
    /// After a close, the rates count only the window's buckets that start at or after it
    /// (`rates_since_ms`): a bucket the close fell in also holds calls from before it, so its
    /// calls count only once the next bucket begins (until then only the failure run can trip
    /// a circuit just closed). A circuit that never tripped counts its whole window.
    fn trip_if_warranted(
        &self,
        snapshot: Snapshot,
        now_ms: u64,
        run: u64,
    ) -> Result<Option<Transition>, BreakerError> {
        let totals = self
            .window
            .totals_since(now_ms, snapshot.record.rates_since_ms)
            .map_err(store_error)?;
        let Some(reason) = self.policy.trip_reason(&totals, run) else {
            return Ok(None);
        };
        let (generation, epoch) = (snapshot.record.generation, snapshot.record.run_epoch);
        let mut snapshot = snapshot;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let record = &snapshot.record;
            if record.state != CircuitState::Closed
                || record.generation != generation
                || record.run_epoch != epoch
            {
                return Ok(None);
            }
            let (open, transition) = record.trip(&self.policy, now_ms, reason.clone());
            if self.commit(&snapshot, open, Some(&transition))?.is_some() {
                return Ok(Some(transition));
            }
            snapshot = self.load()?;
        }
        Ok(None)
    }

    /// A probe answered: close, reopen, or free its slot, unless the answer is stale.
    fn record_probe(
        &self,
        now_ms: u64,
        ticket: &ProbeTicket,
        outcomes: &[CallOutcome],
    ) -> Result<Option<Transition>, BreakerError> {
        let mut snapshot = self.load()?;
        if !snapshot.record.holds_probe(ticket) {
            self.count_stale(&snapshot.record, now_ms, outcomes)?;
            return Ok(None);
        }
        self.count_in_window(now_ms, outcomes)?;
        let succeeded = outcomes
            .iter()
            .all(|outcome| !outcome.failed && !self.policy.is_slow(outcome.latency_ms));
        for _ in 0..MAX_CAS_ATTEMPTS {
            if !snapshot.record.holds_probe(ticket) {
                return Ok(None);
            }
            let (record, transition) =
                snapshot
                    .record
                    .finish_probe(&self.policy, ticket, succeeded, now_ms);
            if self
                .commit(&snapshot, record, transition.as_ref())?
                .is_some()
            {
                return Ok(transition);
            }
            snapshot = self.load()?;
        }
        Ok(None)
    }

    /// Counts stale outcomes (admitted before the circuit last moved; see
    /// [`CircuitBreaker::record`]) in the window, as of just before the last close if the
    /// circuit is closed again: its rates count only the buckets that start at or after the
    /// close, so calls admitted before it never count there. In any other state they land
    /// a millisecond in the past, so before any later close even one on a bucket boundary. A
    /// circuit that never tripped counts them as they come.
    fn count_stale(
        &self,
        current: &BreakerRecord,
        now_ms: u64,
        outcomes: &[CallOutcome],
    ) -> Result<(), BreakerError> {
        let at_ms = match current.state {
            CircuitState::Closed if current.rates_since_ms == 0 => now_ms,
            CircuitState::Closed => now_ms.min(current.rates_since_ms.saturating_sub(1)),
            _ => now_ms.saturating_sub(1),
        };
        self.count_in_window(at_ms, outcomes)
    }

    fn count_in_window(&self, now_ms: u64, outcomes: &[CallOutcome]) -> Result<(), BreakerError> {
        let count = |keep: &dyn Fn(&CallOutcome) -> bool| {
            u32::try_from(outcomes.iter().filter(|outcome| keep(outcome)).count())
                .unwrap_or(u32::MAX)
        };
        let tally = CallTally {
            calls: count(&|_| true),
            failures: count(&|outcome| outcome.failed),
            slow: count(&|outcome| self.policy.is_slow(outcome.latency_ms)),
        };
        self.window.record(now_ms, &tally).map_err(store_error)
    }

    /// Reads the record, seeding it when absent.
    fn load(&self) -> Result<Snapshot, BreakerError> {
        let key = self.state_key();
        if let Some(raw) = self.store.get(&key).map_err(store_error)? {
            let record = serde_json::from_slice(&raw)
                .map_err(|source| BreakerError::Corrupt { key, source })?;
            return Ok(Snapshot {
                record,
                raw: Some(raw),
            });
        }
        let sightings = self
            .store
            .increment(&format!("{}/seeded", self.prefix), 1)
            .map_err(store_error)?;
        if sightings == 1 || sightings % RESEED_EVERY == 0 {
            let record = BreakerRecord::closed(1, self.clock.now_ms());
            let raw = encode(&record);
            self.store.set(&key, &raw).map_err(store_error)?;
            return Ok(Snapshot {
                record,
                raw: Some(raw),
            });
        }
        Ok(Snapshot {
            record: BreakerRecord::closed(0, 0),
            raw: None,
        })
    }

    /// Replaces `current` with `next` if nobody changed it meanwhile; the winner also counts the
    /// transition and deletes the counter of a failure run that ended. Returns the new snapshot
    /// if this caller won.
    fn commit(
        &self,
        current: &Snapshot,
        next: BreakerRecord,
        transition: Option<&Transition>,
    ) -> Result<Option<Snapshot>, BreakerError> {
        let Some(expected) = &current.raw else {
            return Ok(None);
        };
        let raw = encode(&next);
        let won = self
            .store
            .compare_and_swap(&self.state_key(), expected, &raw)
            .map_err(store_error)?;
        if !won {
            return Ok(None);
        }
        if let Some(transition) = transition {
            self.store
                .increment(&self.transition_key(transition.from, transition.to), 1)
                .map_err(store_error)?;
        }
        let old_epoch = current.record.run_epoch;
        if next.run_epoch != old_epoch {
            self.store
                .delete_many(&[self.run_key(old_epoch)])
                .map_err(store_error)?;
        }
        Ok(Some(Snapshot {
            record: next,
            raw: Some(raw),
        }))
    }

    fn state_key(&self) -> String {
        format!("{}/state", self.prefix)
    }

    fn run_key(&self, epoch: u64) -> String {
        format!("{}/run/{epoch}", self.prefix)
    }

    fn transition_key(&self, from: CircuitState, to: CircuitState) -> String {
        format!(
            "{}/transitions/{}/{}",
            self.prefix,
            from.as_str(),
            to.as_str()
        )
    }
}

fn encode(record: &BreakerRecord) -> Vec<u8> {
    // Plain structs with string keys: serializing to JSON cannot fail.
    serde_json::to_vec(record).expect("a breaker record always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::kv::MemoryStore;

    const FAILED: CallOutcome = CallOutcome {
        failed: true,
        latency_ms: 10,
    };
    const SUCCEEDED: CallOutcome = CallOutcome {
        failed: false,
        latency_ms: 10,
    };
    const SLOW: CallOutcome = CallOutcome {
        failed: false,
        latency_ms: 3_000,
    };

    fn breaker<'a>(
        store: &'a MemoryStore,
        clock: &'a ManualClock,
    ) -> CircuitBreaker<'a, MemoryStore, ManualClock> {
        CircuitBreaker::new(store, clock, "dep", BreakerPolicy::default())
    }

    /// Admits one call (which must be let through) and records its outcome.
    fn call(
        breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>,
        outcome: CallOutcome,
    ) -> Option<Transition> {
        let admission = breaker.admit().unwrap();
        assert!(
            !matches!(admission, Admission::Rejected { .. }),
            "{admission:?}"
        );
        breaker.record(&admission, &[outcome]).unwrap()
    }

    fn trip(breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>) -> Transition {
        for _ in 0..4 {
            assert_eq!(call(breaker, FAILED), None);
        }
        call(breaker, FAILED).expect("the fifth failure in a row trips")
    }

    /// Ten calls, every other one failing (never a run of failures): the tenth trips the
    /// circuit on the failure rate.
    fn trips_on_half_failing_calls(breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>) {
        for _ in 0..4 {
            assert_eq!(call(breaker, SUCCEEDED), None);
            assert_eq!(call(breaker, FAILED), None);
        }
        assert_eq!(call(breaker, SUCCEEDED), None);
        let transition = call(breaker, FAILED).unwrap();
        assert_eq!(
            transition.reason,
            Some(TripReason::FailureRate {
                rate: 0.5,
                calls: 10
            })
        );
    }

    fn probe(breaker: &CircuitBreaker<'_, MemoryStore, ManualClock>) -> Admission {
        let admission = breaker.admit().unwrap();
        assert!(matches!(admission, Admission::Probe(_)), "{admission:?}");
        admission
    }

    fn state(store: &MemoryStore) -> Option<Vec<u8>> {
        store.get("breaker/dep/state").unwrap()
    }

    #[test]
    fn refuses_until_looks_without_taking_a_probe() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        assert_eq!(breaker.refuses_until().unwrap(), None);
        let opened = trip(&breaker);
        assert_eq!(opened.to, CircuitState::Open);
        let open_until = breaker.record_snapshot().unwrap().open_until_ms;
        assert_eq!(breaker.refuses_until().unwrap(), Some(open_until));
        clock.set(open_until);
        // Probe time: a call may go, and looking took no probe slot.
        assert_eq!(breaker.refuses_until().unwrap(), None);
        assert_eq!(breaker.refuses_until().unwrap(), None);
        let _probe = probe(&breaker);
        // The only slot is taken now.
        assert!(breaker.refuses_until().unwrap().is_some());
    }

    #[test]
    fn the_first_caller_seeds_the_record() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        let record = breaker.record_snapshot().unwrap();
        assert_eq!(record, BreakerRecord::closed(1, 1_000));
        assert!(state(&store).is_some());
        clock.advance(5);
        assert_eq!(breaker.record_snapshot().unwrap(), record);
        assert_eq!(store.counter("breaker/dep/seeded").unwrap(), 1);
    }

    #[test]
    fn others_work_unseeded_and_write_nothing() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        // Another instance claimed the seeding and has not written yet.
        store.increment("breaker/dep/seeded", 1).unwrap();
        let breaker = breaker(&store, &clock);
        assert_eq!(breaker.record_snapshot().unwrap().generation, 0);
        assert_eq!(
            breaker.admit().unwrap(),
            Admission::Closed { generation: 0 }
        );
        for _ in 0..10 {
            let admission = breaker.admit().unwrap();
            assert_eq!(breaker.record(&admission, &[FAILED]).unwrap(), None);
        }
        assert_eq!(
            state(&store),
            None,
            "never compare-and-swapped a missing record"
        );
        assert!(matches!(
            breaker.force(ForcedState::Open),
            Err(BreakerError::Contended { .. })
        ));
    }

    #[test]
    fn a_seeder_that_never_wrote_is_replaced() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        store.increment("breaker/dep/seeded", 998).unwrap();
        let breaker = breaker(&store, &clock);
        assert_eq!(breaker.record_snapshot().unwrap().generation, 0);
        assert_eq!(breaker.record_snapshot().unwrap().generation, 1);
        assert!(state(&store).is_some());
    }

    #[test]
    fn a_corrupt_record_is_reported() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        store.set("breaker/dep/state", b"{not json").unwrap();
        let error = breaker(&store, &clock).admit().unwrap_err();
        assert!(matches!(&error, BreakerError::Corrupt { key, .. } if key == "breaker/dep/state"));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn consecutive_failures_trip_the_breaker() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        let transition = trip(&breaker);
        assert_eq!(
            transition,
            Transition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
                generation: 2,
                at_ms: 1_000,
                reason: Some(TripReason::ConsecutiveFailures { count: 5 }),
            }
        );
        assert_eq!(
            breaker.admit().unwrap(),
            Admission::Rejected {
                until_ms: 2_000,
                state: CircuitState::Open
            }
        );
        let counts = breaker.transition_counts().unwrap();
        assert_eq!(counts.len(), 25);
        assert!(counts.contains(&(CircuitState::Closed, CircuitState::Open, 1)));
        assert_eq!(counts.iter().map(|(_, _, count)| count).sum::<i64>(), 1);
    }

    #[test]
    fn a_success_ends_the_failure_run() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let policy = BreakerPolicy {
            min_calls: 100,
            ..Default::default()
        };
        let breaker = CircuitBreaker::new(&store, &clock, "dep", policy);
        for _ in 0..4 {
            call(&breaker, FAILED);
        }
        assert_eq!(call(&breaker, SUCCEEDED), None);
        let record = breaker.record_snapshot().unwrap();
        assert_eq!(record.run_epoch, 1);
        assert_eq!(record.generation, 1, "a new run is not a transition");
        assert_eq!(
            store.get("breaker/dep/run/0").unwrap(),
            None,
            "the old run is deleted"
        );
        // A success with no run behind it writes nothing.
        call(&breaker, SUCCEEDED);
        assert_eq!(breaker.record_snapshot().unwrap().run_epoch, 1);
        for _ in 0..4 {
            assert_eq!(call(&breaker, FAILED), None);
        }
        assert_eq!(store.counter("breaker/dep/run/1").unwrap(), 4);
    }

    #[test]
    fn a_batch_counts_only_its_trailing_failures_into_the_run() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        let admission = breaker.admit().unwrap();
        let outcomes = [
            FAILED, FAILED, FAILED, SUCCEEDED, FAILED, FAILED, FAILED, FAILED,
        ];
        assert_eq!(breaker.record(&admission, &outcomes).unwrap(), None);
        let transition = breaker.record(&admission, &[FAILED]).unwrap().unwrap();
        assert_eq!(
            transition.reason,
            Some(TripReason::ConsecutiveFailures { count: 5 })
        );
    }

    #[test]
    fn a_failure_rate_trips_once_min_calls_is_reached() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        trips_on_half_failing_calls(&breaker);
    }

    #[test]
    fn a_circuit_that_never_tripped_counts_the_bucket_it_was_seeded_in() {
        // Seeded mid-bucket, with the first calls in that same bucket: they count.
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_500));
        let breaker = breaker(&store, &clock);
        trips_on_half_failing_calls(&breaker);
    }

    #[test]
    fn slow_calls_trip_on_their_rate() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        for _ in 0..2 {
            call(&breaker, SUCCEEDED);
        }
        for _ in 0..7 {
            assert_eq!(call(&breaker, SLOW), None);
        }
        let transition = call(&breaker, SLOW).unwrap();
        assert_eq!(
            transition.reason,
            Some(TripReason::SlowCallRate {
                rate: 0.8,
                calls: 10
            })
        );
    }

    #[test]
    fn a_probe_success_closes_the_circuit() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        trip(&breaker);
        clock.advance(1_000);
        let admission = probe(&breaker);
        // The only probe slot is taken.
        assert_eq!(
            breaker.admit().unwrap(),
            Admission::Rejected {
                until_ms: 2_250,
                state: CircuitState::HalfOpen
            }
        );
        clock.advance(100);
        let transition = breaker.record(&admission, &[SUCCEEDED]).unwrap().unwrap();
        assert_eq!(
            (transition.from, transition.to),
            (CircuitState::HalfOpen, CircuitState::Closed)
        );
        assert_eq!(transition.generation, 4);
        assert!(matches!(
            breaker.admit().unwrap(),
            Admission::Closed { generation: 4 }
        ));
        let record = breaker.record_snapshot().unwrap();
        assert_eq!(record.trips, 0);
        let counts = breaker.transition_counts().unwrap();
        for edge in [
            (CircuitState::Closed, CircuitState::Open, 1),
            (CircuitState::Open, CircuitState::HalfOpen, 1),
            (CircuitState::HalfOpen, CircuitState::Closed, 1),
        ] {
            assert!(counts.contains(&edge), "{edge:?}");
        }
    }

    #[test]
    fn failures_from_before_the_close_do_not_trip_it_again() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        // Nine failures and a success: a 90% failure rate over ten calls ...
        for _ in 0..4 {
            call(&breaker, FAILED);
        }
        call(&breaker, SUCCEEDED);
        trip(&breaker);
        clock.advance(1_000);
        let admission = probe(&breaker);
        breaker.record(&admission, &[SUCCEEDED]).unwrap().unwrap();
        // ... still in the window, but they belong to the circuit before it closed.
        assert_eq!(call(&breaker, FAILED), None);
        assert_eq!(breaker.window_totals().unwrap().failures, 10);
    }

    #[test]
    fn late_outcomes_of_calls_admitted_before_a_trip_do_not_reopen_the_closed_circuit() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        // A slow call admitted while the circuit was closed, in generation 1 ...
        let before_the_trip = breaker.admit().unwrap();
        assert_eq!(before_the_trip, Admission::Closed { generation: 1 });
        trip(&breaker);
        clock.advance(1_000);
        let admission = probe(&breaker);
        breaker.record(&admission, &[SUCCEEDED]).unwrap().unwrap();
        let closed = breaker.record_snapshot().unwrap();
        assert_eq!(closed.generation, 4);
        // ... answers after the circuit closed again: five failures, as many as trip it.
        clock.advance(1_500);
        let late = [FAILED; 5];
        assert_eq!(breaker.record(&before_the_trip, &late).unwrap(), None);
        assert_eq!(
            breaker.record_snapshot().unwrap(),
            closed,
            "no run, no trip"
        );
        assert_eq!(store.counter("breaker/dep/run/2").unwrap(), 0);
        // They are in the window ...
        assert_eq!(breaker.window_totals().unwrap().failures, 10);
        // ... but the circuit trips only on failures of its own.
        for _ in 0..4 {
            assert_eq!(call(&breaker, FAILED), None);
        }
        let transition = call(&breaker, FAILED).unwrap();
        assert_eq!(
            transition.reason,
            Some(TripReason::ConsecutiveFailures { count: 5 })
        );
    }

    #[test]
    fn calls_of_the_bucket_the_circuit_closed_in_do_not_count_after_the_close() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        let in_flight: Vec<Admission> = (0..9).map(|_| breaker.admit().unwrap()).collect();
        trip(&breaker);
        clock.set(2_000);
        let admission = probe(&breaker);
        // The slow calls fail while the probe is out, in the bucket [2_000, 3_000).
        clock.set(2_050);
        for admission in &in_flight {
            assert_eq!(breaker.record(admission, &[FAILED]).unwrap(), None);
        }
        clock.set(2_100);
        breaker.record(&admission, &[SUCCEEDED]).unwrap().unwrap();
        // A stale probe's failure after the close does not count there either.
        let stale_probe = Admission::Probe(ProbeTicket {
            generation: 3,
            lease_id: 7,
        });
        clock.set(2_150);
        assert_eq!(breaker.record(&stale_probe, &[FAILED]).unwrap(), None);
        // One failure after the close: eleven calls and eleven failures in that bucket, but
        // they are not the closed circuit's.
        clock.set(2_200);
        assert_eq!(call(&breaker, FAILED), None);
        assert_eq!(breaker.window_totals().unwrap().failures, 16);
        assert_eq!(
            breaker.record_snapshot().unwrap().state,
            CircuitState::Closed
        );
        // From the next bucket on, the circuit's own calls count, and only they.
        clock.set(3_000);
        trips_on_half_failing_calls(&breaker);
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        trip(&breaker);
        clock.advance(1_000);
        let admission = probe(&breaker);
        let transition = breaker.record(&admission, &[SLOW]).unwrap().unwrap();
        assert_eq!(transition.to, CircuitState::Open);
        assert_eq!(transition.reason, Some(TripReason::ProbeFailed));
        assert_eq!(
            breaker.admit().unwrap(),
            Admission::Rejected {
                until_ms: 4_000,
                state: CircuitState::Open
            }
        );
    }

    #[test]
    fn a_stale_probe_changes_nothing() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        trip(&breaker);
        clock.advance(1_000);
        let old = probe(&breaker);
        // The probe takes too long: its lease expires and another caller takes the slot.
        clock.advance(10_000);
        let new = probe(&breaker);
        let before = state(&store);
        assert_eq!(breaker.record(&old, &[SUCCEEDED]).unwrap(), None);
        assert_eq!(breaker.record(&old, &[FAILED]).unwrap(), None);
        assert_eq!(state(&store), before);
        assert!(breaker.record(&new, &[SUCCEEDED]).unwrap().is_some());
    }

    #[test]
    fn forcing_overrides_the_circuit() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        let forced = breaker.force(ForcedState::Open).unwrap();
        assert_eq!(
            (forced.from, forced.to),
            (CircuitState::Closed, CircuitState::ForcedOpen)
        );
        assert_eq!(
            breaker.admit().unwrap(),
            Admission::Rejected {
                until_ms: 6_000,
                state: CircuitState::ForcedOpen
            }
        );
        breaker.force(ForcedState::Disabled).unwrap();
        for _ in 0..20 {
            assert_eq!(
                call(&breaker, FAILED),
                None,
                "a disabled breaker never trips"
            );
        }
        assert_eq!(breaker.window_totals().unwrap().failures, 20);
        let reset = breaker.force(ForcedState::Closed).unwrap();
        assert_eq!(
            (reset.from, reset.to),
            (CircuitState::Disabled, CircuitState::Closed)
        );
        assert_eq!(reset.generation, 4);
        assert!(matches!(breaker.admit().unwrap(), Admission::Closed { .. }));
    }

    #[test]
    fn two_admitters_never_win_the_same_slot() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        trip(&breaker);
        clock.advance(1_000);
        let raced = std::sync::Arc::new(std::sync::Mutex::new(None));
        let result = raced.clone();
        store.before_next_compare_and_swap(move |store| {
            let clock = ManualClock::new(2_000);
            let other = CircuitBreaker::new(store, &clock, "dep", BreakerPolicy::default());
            *result.lock().unwrap() = Some(other.admit().unwrap());
        });
        let mine = breaker.admit().unwrap();
        let theirs = raced.lock().unwrap().take().unwrap();
        assert!(matches!(theirs, Admission::Probe(_)), "{theirs:?}");
        assert_eq!(
            mine,
            Admission::Rejected {
                until_ms: 2_250,
                state: CircuitState::HalfOpen
            }
        );
    }

    #[test]
    fn endless_contention_rejects_briefly() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        trip(&breaker);
        clock.advance(1_000);
        for _ in 0..MAX_CAS_ATTEMPTS {
            store.before_next_compare_and_swap(|store| {
                let raw = store.get("breaker/dep/state").unwrap().unwrap();
                let mut record: BreakerRecord = serde_json::from_slice(&raw).unwrap();
                record.since_ms += 1;
                store
                    .set("breaker/dep/state", &serde_json::to_vec(&record).unwrap())
                    .unwrap();
            });
        }
        assert_eq!(
            breaker.admit().unwrap(),
            Admission::Rejected {
                until_ms: 2_250,
                state: CircuitState::Open
            }
        );
        assert!(matches!(breaker.admit().unwrap(), Admission::Probe(_)));
    }

    #[test]
    fn rejected_or_empty_records_nothing() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        let rejected = Admission::Rejected {
            until_ms: 0,
            state: CircuitState::Open,
        };
        assert_eq!(breaker.record(&rejected, &[FAILED]).unwrap(), None);
        let admission = breaker.admit().unwrap();
        assert_eq!(breaker.record(&admission, &[]).unwrap(), None);
        assert_eq!(breaker.window_totals().unwrap(), WindowTotals::default());
    }

    #[test]
    fn prune_deletes_old_buckets_and_finished_runs() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let breaker = breaker(&store, &clock);
        call(&breaker, FAILED);
        // A late failure from an instance still on the old run.
        call(&breaker, SUCCEEDED);
        store.increment("breaker/dep/run/0", 1).unwrap();
        clock.advance(30_000);
        // Bucket 1 held calls and failures; run 0 is finished.
        assert_eq!(breaker.prune().unwrap(), 3);
        assert_eq!(store.get("breaker/dep/run/0").unwrap(), None);
        assert_eq!(breaker.prune().unwrap(), 0);
    }
}
