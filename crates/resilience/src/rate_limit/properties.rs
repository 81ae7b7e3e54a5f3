//! Property tests of the rate limiter over any request schedule: against the token bucket GCRA
//! is equivalent to, against the policy's bound, with two instances racing on one store, and for
//! denied requests leaving the store alone.

use super::*;
use crate::clock::ManualClock;
use crate::kv::MemoryStore;
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const START_MS: u64 = 1_000_000;
const NAME: &str = "api";

/// Small policies, so schedules of a few seconds reach every regime.
fn policies() -> impl Strategy<Value = RateLimitPolicy> {
    (1u32..=20, 10u64..=5_000, 1u32..=10).prop_map(|(limit, period_ms, burst)| RateLimitPolicy {
        limit,
        period_ms,
        burst,
    })
}

/// A schedule: before each batch of requests, the clock moves forward by 0 to 400 ms.
fn schedules() -> impl Strategy<Value = Vec<(u64, usize)>> {
    proptest::collection::vec((0u64..400, 1usize..4), 1..80)
}

/// The token bucket GCRA is equivalent to, as the reference: `level_us` of credit, at most
/// `burst × T`, refilled as time passes; a request takes `T` of it.
struct Bucket {
    interval_us: u64,
    capacity_us: u64,
    burst: u32,
    level_us: u64,
    last_us: Option<u64>,
}

impl Bucket {
    fn new(policy: &RateLimitPolicy) -> Self {
        let interval_us = policy.interval_us();
        let capacity_us = interval_us * u64::from(policy.burst);
        Self {
            interval_us,
            capacity_us,
            burst: policy.burst,
            level_us: capacity_us,
            last_us: None,
        }
    }

    fn request(&mut self, now_ms: u64) -> RateDecision {
        let now_us = now_ms * 1_000;
        if let Some(last_us) = self.last_us {
            self.level_us = (self.level_us + (now_us - last_us)).min(self.capacity_us);
        }
        self.last_us = Some(now_us);
        let allowed = self.level_us >= self.interval_us;
        if allowed {
            self.level_us -= self.interval_us;
        }
        RateDecision {
            allowed,
            limit: self.burst,
            remaining: if allowed {
                (self.level_us / self.interval_us) as u32
            } else {
                0
            },
            reset_after_ms: ms_up(self.capacity_us - self.level_us),
            retry_after_ms: if allowed {
                0
            } else {
                ms_up(self.interval_us - self.level_us).max(1)
            },
        }
    }
}

/// (a)'s bound: in every interval `[t, t + d]`, at most `burst + limit × d / period` allowed
/// requests. The tightest intervals start and end at allowed requests (`allowed_ms` in order).
fn check_bound(policy: &RateLimitPolicy, allowed_ms: &[u64]) -> Result<(), TestCaseError> {
    let (limit, period, burst) = (
        u128::from(policy.limit),
        u128::from(policy.period_ms),
        u128::from(policy.burst),
    );
    for (first, start) in allowed_ms.iter().enumerate() {
        for (last, end) in allowed_ms.iter().enumerate().skip(first) {
            let count = (last - first + 1) as u128;
            let d = u128::from(end - start);
            prop_assert!(
                count * period <= burst * period + d * limit,
                "{count} allowed in [{start}, {end}] under {policy:?}"
            );
        }
    }
    Ok(())
}

/// Every key and value in `store`, sorted.
fn dump(store: &MemoryStore) -> Vec<(String, Option<Vec<u8>>)> {
    let mut keys = store.keys_with_prefix("").unwrap();
    keys.sort();
    let values = store.get_many(&keys).unwrap();
    keys.into_iter().zip(values).collect()
}

/// One step of two processes sharing a store.
#[derive(Debug, Clone)]
enum Step {
    /// Time passes for both.
    Advance(u64),
    /// A request to one process while `racers` requests to the other land between its read and
    /// its write.
    Request { second: bool, racers: usize },
}

fn steps() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0u64..400).prop_map(Step::Advance),
        3 => (any::<bool>(), 0usize..4).prop_map(|(second, racers)| Step::Request { second, racers }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// (a) One instance decides exactly as the token bucket does, so the allowed requests in any
    /// interval `[t, t + d]` never exceed `burst + rate × d`.
    #[test]
    fn one_instance_keeps_the_bound(policy in policies(), schedule in schedules()) {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = RateLimiter::new(&store, &clock, NAME, &policy);
        let client = ClientKey::new("key:alice");
        let mut model = Bucket::new(&policy);
        let mut allowed_ms = Vec::new();
        for (advance_ms, requests) in schedule {
            clock.advance(advance_ms);
            for _ in 0..requests {
                let decision = limiter.check(&client).unwrap();
                prop_assert_eq!(decision, model.request(clock.now_ms()));
                if decision.allowed {
                    allowed_ms.push(clock.now_ms());
                }
            }
        }
        check_bound(&policy, &allowed_ms)?;
    }

    /// (b) Two processes on one store, racing between each other's reads and writes, enforce one
    /// limit together: their decisions, in the order they land, are the token bucket's.
    #[test]
    fn two_processes_enforce_one_limit(
        policy in policies(),
        steps in proptest::collection::vec(steps(), 1..120),
    ) {
        let store = MemoryStore::new();
        let clocks = [ManualClock::new(START_MS), ManualClock::new(START_MS)];
        let limiters = [
            RateLimiter::new(&store, &clocks[0], NAME, &policy),
            RateLimiter::new(&store, &clocks[1], NAME, &policy),
        ];
        let client = ClientKey::new("addr:192.0.2.7");
        let landed: Arc<Mutex<Vec<(u64, RateDecision)>>> = Arc::default();
        let (queued, ran) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for step in &steps {
            match step {
                Step::Advance(ms) => clocks.iter().for_each(|clock| clock.advance(*ms)),
                Step::Request { second, racers } => {
                    let now_ms = clocks[0].now_ms();
                    for _ in 0..*racers {
                        let (policy, client) = (policy.clone(), client.clone());
                        let (landed, ran) = (landed.clone(), ran.clone());
                        queued.fetch_add(1, Ordering::SeqCst);
                        store.before_next_compare_and_swap(move |store| {
                            let clock = ManualClock::new(now_ms);
                            let other = RateLimiter::new(store, &clock, NAME, &policy);
                            let decision = other.check(&client).unwrap();
                            landed.lock().unwrap().push((now_ms, decision));
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    let decision = limiters[usize::from(*second)].check(&client).unwrap();
                    landed.lock().unwrap().push((now_ms, decision));
                    // Racers still queued (the request wrote nothing) land now.
                    while ran.load(Ordering::SeqCst) < queued.load(Ordering::SeqCst) {
                        store.compare_and_swap("flush", b"", b"").unwrap();
                    }
                }
            }
        }
        let landed = landed.lock().unwrap();
        let mut model = Bucket::new(&policy);
        for (now_ms, decision) in landed.iter() {
            prop_assert_eq!(*decision, model.request(*now_ms));
        }
        let allowed_ms: Vec<u64> = landed
            .iter()
            .filter(|(_, decision)| decision.allowed)
            .map(|(now_ms, _)| *now_ms)
            .collect();
        check_bound(&policy, &allowed_ms)?;
    }

    /// (c) A denied request changes nothing in the store.
    #[test]
    fn a_denied_request_changes_nothing(
        policy in policies(),
        schedule in schedules(),
        clients in proptest::collection::vec(0usize..3, 1..200),
    ) {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = RateLimiter::new(&store, &clock, NAME, &policy);
        let keys = ["key:a", "key:b", "addr:c"].map(ClientKey::new);
        let mut picks = clients.iter().cycle();
        for (advance_ms, requests) in schedule {
            clock.advance(advance_ms);
            for _ in 0..requests {
                let client = &keys[*picks.next().expect("cycles")];
                let before = dump(&store);
                if !limiter.check(client).unwrap().allowed {
                    prop_assert_eq!(dump(&store), before);
                }
            }
        }
    }
}
