//! A fleet-wide rate limiter: the generic cell rate algorithm (GCRA) over the shared
//! [`KvStore`], so every instance, process and replica using one store enforces one limit per
//! client.
//!
//! The policy allows `limit` requests per `period` with bursts of up to `burst` at once. Each
//! request's share of the limit is the emission interval `T = period / limit` (rounded up to
//! the microsecond, so the limiter never allows more than the policy). A client's whole state is
//! its theoretical arrival time (TAT): a request at `now` is allowed when
//! `max(TAT, now) + T - now <= burst × T`, and then moves the TAT to `max(TAT, now) + T`. So any
//! interval of length `d` holds at most `burst + d / T` allowed requests.
//!
//! Keys, for limiter `name` and client `c` (a [`ClientKey`], the hash of the client's identity):
//! `ratelimit/{name}/{c}/tat` holds the TAT in microseconds since the epoch (decimal text), and
//! `ratelimit/{name}/{c}/seeded` is a counter (see below). Spin's store has no expiry, so every
//! client ever seen keeps these two keys.
//!
//! One request costs one read and one compare-and-swap, and a denied request writes nothing. The
//! TAT strictly grows with every allowed request and the decision depends on nothing else, so a
//! stored value never comes back to fool a compare-and-swap (no generation is needed). A lost
//! compare-and-swap is retried from a fresh read, at most 64 times; a request that still has not
//! won is denied (it is never allowed without being recorded). Only one client's own requests
//! race for its key: 32 concurrent connections of one client under a lifted limit lost 15 % of
//! their requests to contention with 16 tries, a few in 10,000 with 64 (`orderly lab
//! gateway-cost`).
//!
//! A new client. A compare-and-swap cannot create a key on Spin's store (after `current()`
//! found nothing, a swap is an unconditional write), so the first request's state is seeded as
//! the crate docs describe: the request that gets 1 from incrementing the client's `seeded`
//! counter writes the state with its own admission; a racing first request (which gets more
//! than 1) reads again until the seeder's write is there and then takes the ordinary
//! compare-and-swap path. Racing first requests are therefore never over-admitted; one that
//! still finds no state after every attempt is denied, to try again after one interval. Should
//! the seeder's write fail, it deletes the counter so that the next request seeds; should the
//! seeder die between claiming and writing, every 1000th request that finds the state missing
//! seeds it again (a seeder writing very late could then overwrite up to a burst of admissions,
//! as the breaker's would).

#[cfg(test)]
mod properties;

use crate::clock::Clock;
use crate::kv::KvStore;
use crate::settings::{SettingError, Variables};
use sha2::{Digest, Sha256};
use std::num::ParseIntError;

/// How many times a request reads and tries to record its admission before it is denied: as
/// many as a busy client's concurrent requests, so that contention alone rarely denies one.
const MAX_CAS_ATTEMPTS: u32 = 64;

/// A state still missing after this many requests found it missing is seeded again: whoever
/// was to seed it failed between claiming the seeding and writing.
const RESEED_EVERY: i64 = 1_000;

/// The most requests per period, and the largest burst, a policy may set.
const MAX_REQUESTS: u32 = 1_000_000;

/// The longest period a policy may set: a day, in ms.
const MAX_PERIOD_MS: u64 = 86_400_000;

/// Every variable [`RateLimitPolicy::from_variables`] reads: (name, default as text,
/// description), for the README and `spin.toml`.
pub const RATE_LIMIT_VARIABLES: &[(&str, &str, &str)] = &[
    (
        "rate_limit",
        "100",
        "Rate limit: requests each client may make per period",
    ),
    (
        "rate_limit_period_secs",
        "60",
        "Rate limit: the period, in seconds",
    ),
    (
        "rate_limit_burst",
        "100",
        "Rate limit: requests a client may make at once",
    ),
];

/// How many requests a client may make. Validate with [`RateLimitPolicy::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Requests allowed per period (1 to 1,000,000).
    pub limit: u32,
    /// The period, in ms (1 to a day).
    pub period_ms: u64,
    /// Requests allowed at once, after a quiet spell (1 to 1,000,000).
    pub burst: u32,
}

impl Default for RateLimitPolicy {
    /// 100 requests a minute, all of them at once if the client likes (as in the Lab 4 seed).
    fn default() -> Self {
        Self {
            limit: 100,
            period_ms: 60_000,
            burst: 100,
        }
    }
}

impl RateLimitPolicy {
    /// Reads the policy through `lookup` (variable name to value; see
    /// [`RATE_LIMIT_VARIABLES`]): an absent or empty variable keeps its default; one that does
    /// not parse, or gives a policy that does not validate, is an error naming the variable.
    pub fn from_variables(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let variables = Variables { lookup };
        let mut policy = Self::default();
        variables.number("rate_limit", &mut policy.limit)?;
        variables.seconds("rate_limit_period_secs", &mut policy.period_ms)?;
        variables.number("rate_limit_burst", &mut policy.burst)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks every field; an error names the setting variable that sets the field.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(1..=MAX_REQUESTS).contains(&self.limit) {
            return Err(SettingError::invalid(
                "rate_limit",
                self.limit,
                format!("must be between 1 and {MAX_REQUESTS}"),
            ));
        }
        if !(1..=MAX_PERIOD_MS).contains(&self.period_ms) {
            return Err(SettingError::invalid(
                "rate_limit_period_secs",
                self.period_ms / 1_000,
                "must be between 1 and 86400 (a day)",
            ));
        }
        if !(1..=MAX_REQUESTS).contains(&self.burst) {
            return Err(SettingError::invalid(
                "rate_limit_burst",
                self.burst,
                format!("must be between 1 and {MAX_REQUESTS}"),
            ));
        }
        Ok(())
    }

    /// The emission interval `T`: one request's share of the limit, in µs, rounded up (at least
    /// 1 µs for a valid policy).
    fn interval_us(&self) -> u64 {
        (self.period_ms * 1_000).div_ceil(u64::from(self.limit.max(1)))
    }
}

/// A client, as the limiter keys it: the first 128 bits of the SHA-256 of its identity (an API
/// key, an address, anything), in hex. Any identity gives a short key of safe characters, and
/// the store (like this value's `Debug`) never shows a client's API key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(String);

impl ClientKey {
    /// The key of the client identified by `identity`. Prefix the kind of identity
    /// (`key:...`, `addr:...`) so that different kinds never share a limit.
    pub fn new(identity: &str) -> Self {
        let digest = Sha256::digest(identity.as_bytes());
        Self(
            digest[..16]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    }

    /// The key, 32 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The answer to one request, with what the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// The most requests the client may make at once (the policy's burst).
    pub limit: u32,
    /// Requests the client may still make right now, after this one.
    pub remaining: u32,
    /// In how long the client may make `limit` requests at once again, in ms (rounded up).
    pub reset_after_ms: u64,
    /// For a denied request, in how long the same request would be allowed, in ms (rounded up,
    /// at least 1); 0 when allowed.
    pub retry_after_ms: u64,
}

impl RateDecision {
    /// The response headers: `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
    /// (seconds, rounded up; IETF draft `ratelimit-headers`), and `Retry-After` (seconds,
    /// rounded up, at least 1) when denied.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let seconds = |ms: u64| ms.div_ceil(1_000);
        let mut headers = vec![
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", seconds(self.reset_after_ms).to_string()),
        ];
        if !self.allowed {
            headers.push((
                "retry-after",
                seconds(self.retry_after_ms).max(1).to_string(),
            ));
        }
        headers
    }
}

/// What can go wrong running the limiter.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// The key-value store failed.
    #[error("the key-value store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The stored state is not a theoretical arrival time.
    #[error("the rate state at {key:?} is not a theoretical arrival time")]
    Corrupt {
        /// The state's key.
        key: String,
        /// Why it does not parse.
        #[source]
        source: ParseIntError,
    },
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> RateLimitError {
    RateLimitError::Store(Box::new(error))
}

/// The algorithm's arithmetic, in µs, for one policy.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval_us: u64,
    capacity_us: u64,
    burst: u32,
}

impl Gcra {
    fn new(policy: &RateLimitPolicy) -> Self {
        let interval_us = policy.interval_us();
        Self {
            interval_us,
            capacity_us: interval_us.saturating_mul(u64::from(policy.burst)),
            burst: policy.burst,
        }
    }

    /// The decision on a request at `now_us` given the client's TAT (`None`: never seen), and
    /// the TAT to record when it is allowed.
    fn decide(&self, tat_us: Option<u64>, now_us: u64) -> (RateDecision, Option<u64>) {
        let base = tat_us.unwrap_or(0).max(now_us);
        let next = base.saturating_add(self.interval_us);
        if next - now_us <= self.capacity_us {
            let spare = self.capacity_us - (next - now_us);
            let decision = RateDecision {
                allowed: true,
                limit: self.burst,
                remaining: u32::try_from(spare / self.interval_us).unwrap_or(u32::MAX),
                reset_after_ms: ms_up(next - now_us),
                retry_after_ms: 0,
            };
            (decision, Some(next))
        } else {
            let decision = RateDecision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset_after_ms: ms_up(base - now_us),
                retry_after_ms: ms_up(next - self.capacity_us - now_us).max(1),
            };
            (decision, None)
        }
    }

    /// The denial of a request that could not record its admission: try again in one interval.
    fn contended(&self) -> RateDecision {
        let interval_ms = ms_up(self.interval_us).max(1);
        RateDecision {
            allowed: false,
            limit: self.burst,
            remaining: 0,
            reset_after_ms: interval_ms,
            retry_after_ms: interval_ms,
        }
    }
}

fn ms_up(us: u64) -> u64 {
    us.div_ceil(1_000)
}

/// A rate limiter shared fleet-wide through the store under `ratelimit/{name}`.
pub struct RateLimiter<'a, S: KvStore, C: Clock> {
    store: &'a S,
    clock: &'a C,
    gcra: Gcra,
    prefix: String,
}

impl<'a, S: KvStore, C: Clock> RateLimiter<'a, S, C> {
    /// The limiter named `name` (validate `policy` first; every instance should use the same).
    pub fn new(store: &'a S, clock: &'a C, name: &str, policy: &RateLimitPolicy) -> Self {
        Self {
            store,
            clock,
            gcra: Gcra::new(policy),
            prefix: format!("ratelimit/{name}"),
        }
    }

    /// Decides on one request from `client` now, and records it if allowed.
    pub fn check(&self, client: &ClientKey) -> Result<RateDecision, RateLimitError> {
        let state_key = format!("{}/{}/tat", self.prefix, client.as_str());
        let mut sighted = false;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now_us = self.clock.now_ms().saturating_mul(1_000);
            match self.store.get(&state_key).map_err(store_error)? {
                Some(raw) => {
                    let tat_us = decode(&state_key, &raw)?;
                    let (decision, next) = self.gcra.decide(Some(tat_us), now_us);
                    let Some(next) = next else {
                        return Ok(decision);
                    };
                    let won = self
                        .store
                        .compare_and_swap(&state_key, &raw, next.to_string().as_bytes())
                        .map_err(store_error)?;
                    if won {
                        return Ok(decision);
                    }
                }
                None if !sighted => {
                    sighted = true;
                    let claim_key = format!("{}/{}/seeded", self.prefix, client.as_str());
                    let sightings = self.store.increment(&claim_key, 1).map_err(store_error)?;
                    if sightings == 1 || sightings % RESEED_EVERY == 0 {
                        return self.seed(&state_key, &claim_key, now_us);
                    }
                }
                // Another request is seeding the state: look again.
                None => {}
            }
        }
        Ok(self.gcra.contended())
    }

    /// Writes a new client's state with this request's admission. If the write fails, deletes
    /// the seeding claim (best effort) so that the client's next request seeds instead.
    fn seed(
        &self,
        state_key: &str,
        claim_key: &str,
        now_us: u64,
    ) -> Result<RateDecision, RateLimitError> {
        let (decision, next) = self.gcra.decide(None, now_us);
        // A valid policy's burst is at least 1, so a first request is always allowed.
        let tat_us = next.unwrap_or(now_us);
        if let Err(error) = self.store.set(state_key, tat_us.to_string().as_bytes()) {
            let _ = self.store.delete_many(&[claim_key.to_owned()]);
            return Err(store_error(error));
        }
        Ok(decision)
    }
}

fn decode(key: &str, raw: &[u8]) -> Result<u64, RateLimitError> {
    String::from_utf8_lossy(raw)
        .parse()
        .map_err(|source| RateLimitError::Corrupt {
            key: key.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::kv::{MemoryStore, MemoryStoreError};
    use std::cell::Cell;
    use std::collections::HashMap;

    const START_MS: u64 = 1_700_000_000_000;

    fn limiter<'a>(
        store: &'a MemoryStore,
        clock: &'a ManualClock,
        policy: &RateLimitPolicy,
    ) -> RateLimiter<'a, MemoryStore, ManualClock> {
        RateLimiter::new(store, clock, "api", policy)
    }

    fn alice() -> ClientKey {
        ClientKey::new("key:alice")
    }

    fn state_key(client: &ClientKey) -> String {
        format!("ratelimit/api/{}/tat", client.as_str())
    }

    fn claim_key(client: &ClientKey) -> String {
        format!("ratelimit/api/{}/seeded", client.as_str())
    }

    #[test]
    fn the_default_allows_a_burst_of_100_then_one_every_600_ms() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = limiter(&store, &clock, &RateLimitPolicy::default());
        for expected_remaining in (0..100).rev() {
            let decision = limiter.check(&alice()).unwrap();
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let denied = limiter.check(&alice()).unwrap();
        assert_eq!(
            denied,
            RateDecision {
                allowed: false,
                limit: 100,
                remaining: 0,
                reset_after_ms: 60_000,
                retry_after_ms: 600,
            }
        );
        clock.advance(599);
        assert!(!limiter.check(&alice()).unwrap().allowed);
        clock.advance(1);
        let again = limiter.check(&alice()).unwrap();
        assert_eq!((again.allowed, again.remaining), (true, 0));
        assert!(!limiter.check(&alice()).unwrap().allowed);
        clock.advance(60_000);
        let rested = limiter.check(&alice()).unwrap();
        assert_eq!((rested.remaining, rested.reset_after_ms), (99, 600));
    }

    #[test]
    fn clients_have_their_own_limits() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let policy = RateLimitPolicy {
            limit: 1,
            period_ms: 1_000,
            burst: 1,
        };
        let limiter = limiter(&store, &clock, &policy);
        assert!(limiter.check(&alice()).unwrap().allowed);
        assert!(!limiter.check(&alice()).unwrap().allowed);
        assert!(limiter.check(&ClientKey::new("key:bob")).unwrap().allowed);
        let other = RateLimiter::new(&store, &clock, "admin", &policy);
        assert!(other.check(&alice()).unwrap().allowed, "per limiter name");
    }

    #[test]
    fn a_smaller_burst_spreads_the_limit() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let policy = RateLimitPolicy {
            limit: 10,
            period_ms: 1_000,
            burst: 2,
        };
        let limiter = limiter(&store, &clock, &policy);
        let first = limiter.check(&alice()).unwrap();
        assert_eq!((first.remaining, first.reset_after_ms), (1, 100));
        let second = limiter.check(&alice()).unwrap();
        assert_eq!((second.remaining, second.reset_after_ms), (0, 200));
        let third = limiter.check(&alice()).unwrap();
        assert_eq!(
            (third.allowed, third.retry_after_ms, third.reset_after_ms),
            (false, 100, 200)
        );
        clock.advance(250);
        let later = limiter.check(&alice()).unwrap();
        assert_eq!((later.allowed, later.remaining), (true, 1), "full again");
    }

    #[test]
    fn the_interval_rounds_up_so_the_limit_is_never_exceeded() {
        let policy = RateLimitPolicy {
            limit: 3,
            period_ms: 1_000,
            burst: 1,
        };
        assert_eq!(policy.interval_us(), 333_334);
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = limiter(&store, &clock, &policy);
        let mut allowed = 0;
        for _ in 0..3_000 {
            allowed += u32::from(limiter.check(&alice()).unwrap().allowed);
            clock.advance(1);
        }
        // 3 s: the first at once, then one every 333.334 ms, which a millisecond clock sees
        // as every 334 ms: never 10.
        assert_eq!(allowed, 9);
    }

    #[test]
    fn headers_carry_the_decision() {
        let allowed = RateDecision {
            allowed: true,
            limit: 100,
            remaining: 42,
            reset_after_ms: 34_801,
            retry_after_ms: 0,
        };
        assert_eq!(
            allowed.headers(),
            vec![
                ("ratelimit-limit", "100".to_owned()),
                ("ratelimit-remaining", "42".to_owned()),
                ("ratelimit-reset", "35".to_owned()),
            ]
        );
        let denied = RateDecision {
            allowed: false,
            remaining: 0,
            retry_after_ms: 1,
            ..allowed
        };
        assert_eq!(
            denied.headers().last(),
            Some(&("retry-after", "1".to_owned()))
        );
    }

    #[test]
    fn a_first_request_seeds_the_state_once() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = limiter(&store, &clock, &RateLimitPolicy::default());
        assert!(limiter.check(&alice()).unwrap().allowed);
        assert!(limiter.check(&alice()).unwrap().allowed);
        assert_eq!(
            store.counter(&claim_key(&alice())).unwrap(),
            1,
            "seeded once"
        );
        let tat = store.get(&state_key(&alice())).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(tat).unwrap(),
            (START_MS * 1_000 + 2 * 600_000).to_string()
        );
    }

    /// A store that runs `hook` before the `n`-th read of `key` (counting from 1), as another
    /// instance acting between this one's reads.
    struct HookedStore<'a> {
        inner: &'a MemoryStore,
        key: String,
        reads: Cell<u32>,
        at_read: u32,
        hook: Box<dyn Fn(&MemoryStore) + 'a>,
    }

    impl KvStore for HookedStore<'_> {
        type Error = MemoryStoreError;

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
            if key == self.key {
                self.reads.set(self.reads.get() + 1);
                if self.reads.get() == self.at_read {
                    (self.hook)(self.inner);
                }
            }
            self.inner.get(key)
        }
        fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Self::Error> {
            self.inner.get_many(keys)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), Self::Error> {
            self.inner.set(key, value)
        }
        fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<bool, Self::Error> {
            self.inner.compare_and_swap(key, old, new)
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, Self::Error> {
            self.inner.increment(key, delta)
        }
        fn counter(&self, key: &str) -> Result<i64, Self::Error> {
            self.inner.counter(key)
        }
        fn delete_many(&self, keys: &[String]) -> Result<(), Self::Error> {
            self.inner.delete_many(keys)
        }
        fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Self::Error> {
            self.inner.keys_with_prefix(prefix)
        }
    }

    #[test]
    fn a_racing_first_request_waits_for_the_seeder_and_is_counted() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let policy = RateLimitPolicy {
            limit: 10,
            period_ms: 1_000,
            burst: 2,
        };
        // The seeder has claimed the seeding; its write lands before this request's third read.
        store.increment(&claim_key(&alice()), 1).unwrap();
        let hooked = HookedStore {
            inner: &store,
            key: state_key(&alice()),
            reads: Cell::new(0),
            at_read: 3,
            hook: Box::new(|store| {
                let clock = ManualClock::new(START_MS);
                RateLimiter::new(store, &clock, "api", &policy)
                    .seed(&state_key(&alice()), &claim_key(&alice()), START_MS * 1_000)
                    .unwrap();
            }),
        };
        let racer = RateLimiter::new(&hooked, &clock, "api", &policy);
        let decision = racer.check(&alice()).unwrap();
        assert_eq!((decision.allowed, decision.remaining), (true, 0));
        assert_eq!(store.counter(&claim_key(&alice())).unwrap(), 2);
        // Both first requests are in the state: the burst of 2 is spent.
        let third = limiter(&store, &clock, &policy).check(&alice()).unwrap();
        assert!(!third.allowed);
    }

    #[test]
    fn a_racing_first_request_that_never_sees_the_state_is_denied_without_writing_it() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = limiter(&store, &clock, &RateLimitPolicy::default());
        store.increment(&claim_key(&alice()), 1).unwrap();
        let denied = limiter.check(&alice()).unwrap();
        assert_eq!(
            denied,
            RateDecision {
                allowed: false,
                limit: 100,
                remaining: 0,
                reset_after_ms: 600,
                retry_after_ms: 600,
            }
        );
        assert_eq!(store.get(&state_key(&alice())).unwrap(), None);
        assert_eq!(
            store.counter(&claim_key(&alice())).unwrap(),
            2,
            "one sighting"
        );
    }

    #[test]
    fn a_lost_seeding_is_redone_by_the_thousandth_sighting() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        let limiter = limiter(&store, &clock, &RateLimitPolicy::default());
        // The seeder claimed the seeding and died before writing.
        store
            .increment(&claim_key(&alice()), RESEED_EVERY - 2)
            .unwrap();
        assert!(!limiter.check(&alice()).unwrap().allowed, "sighting 999");
        assert!(
            limiter.check(&alice()).unwrap().allowed,
            "sighting 1000 seeds"
        );
        assert!(
            limiter.check(&alice()).unwrap().allowed,
            "seeded: ordinary path"
        );
        assert_eq!(store.counter(&claim_key(&alice())).unwrap(), RESEED_EVERY);
    }

    /// A store whose `set` fails, as a store that is briefly unreachable.
    struct FailingSet(MemoryStore);

    impl KvStore for FailingSet {
        type Error = MemoryStoreError;

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
            self.0.get(key)
        }
        fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Self::Error> {
            self.0.get_many(keys)
        }
        fn set(&self, key: &str, _: &[u8]) -> Result<(), Self::Error> {
            Err(MemoryStoreError::CounterOverwrite { key: key.into() })
        }
        fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<bool, Self::Error> {
            self.0.compare_and_swap(key, old, new)
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, Self::Error> {
            self.0.increment(key, delta)
        }
        fn counter(&self, key: &str) -> Result<i64, Self::Error> {
            self.0.counter(key)
        }
        fn delete_many(&self, keys: &[String]) -> Result<(), Self::Error> {
            self.0.delete_many(keys)
        }
        fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Self::Error> {
            self.0.keys_with_prefix(prefix)
        }
    }

    #[test]
    fn a_failed_seeding_lets_the_next_request_seed() {
        let failing = FailingSet(MemoryStore::new());
        let clock = ManualClock::new(START_MS);
        let policy = RateLimitPolicy::default();
        let error = RateLimiter::new(&failing, &clock, "api", &policy)
            .check(&alice())
            .unwrap_err();
        assert!(matches!(error, RateLimitError::Store(_)), "{error:?}");
        assert_eq!(
            failing.0.counter(&claim_key(&alice())).unwrap(),
            0,
            "released"
        );
        let next = RateLimiter::new(&failing.0, &clock, "api", &policy)
            .check(&alice())
            .unwrap();
        assert!(next.allowed);
        assert_eq!(failing.0.counter(&claim_key(&alice())).unwrap(), 1);
    }

    /// Queues `count` other instances, each admitting one request at [`START_MS`] just before
    /// one of this instance's compare-and-swaps (writing as a winner would, without one).
    fn admit_before_each_of(store: &MemoryStore, count: usize) {
        for _ in 0..count {
            let key = state_key(&alice());
            store.before_next_compare_and_swap(move |store| {
                let tat = decode(&key, &store.get(&key).unwrap().unwrap()).unwrap();
                let next = tat.max(START_MS * 1_000) + 600_000;
                store.set(&key, next.to_string().as_bytes()).unwrap();
            });
        }
    }

    #[test]
    fn a_lost_compare_and_swap_is_retried_then_denied() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        // A burst wide enough for every racer; one request's share is still 600 ms.
        let policy = RateLimitPolicy {
            limit: 1_000,
            period_ms: 600_000,
            burst: 1_000,
        };
        let limiter = limiter(&store, &clock, &policy);
        let tries = MAX_CAS_ATTEMPTS;
        assert!(limiter.check(&alice()).unwrap().allowed);
        // Another instance wins before each of this one's attempts but the last: it records.
        admit_before_each_of(&store, tries as usize - 1);
        let decision = limiter.check(&alice()).unwrap();
        assert_eq!(
            (decision.allowed, decision.remaining),
            (true, 1_000 - tries - 1)
        );
        // Every attempt lost: denied, and nothing of this request recorded.
        admit_before_each_of(&store, tries as usize);
        let contended = limiter.check(&alice()).unwrap();
        assert_eq!((contended.allowed, contended.retry_after_ms), (false, 600));
        let remaining = limiter.check(&alice()).unwrap().remaining;
        assert_eq!(
            remaining,
            1_000 - tries - 1 - tries - 1,
            "the contended one took nothing"
        );
    }

    #[test]
    fn a_corrupt_state_is_an_error() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
        store.set(&state_key(&alice()), b"soon").unwrap();
        let error = limiter(&store, &clock, &RateLimitPolicy::default())
            .check(&alice())
            .unwrap_err();
        assert!(matches!(error, RateLimitError::Corrupt { .. }), "{error:?}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn client_keys_are_short_hashes_of_any_identity() {
        let identities = [
            "key:alice",
            "addr:10.0.0.1",
            "",
            "a/b/../c",
            "é 🚀 \u{0}\n",
            &"x".repeat(10_000),
        ];
        let mut keys: HashMap<ClientKey, &str> = HashMap::new();
        for identity in identities {
            let key = ClientKey::new(identity);
            assert_eq!(key.as_str().len(), 32);
            assert!(
                key.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{key:?}"
            );
            assert_eq!(key, ClientKey::new(identity), "stable");
            assert!(keys.insert(key, identity).is_none(), "distinct");
        }
        assert!(!format!("{:?}", ClientKey::new("key:secret")).contains("secret"));
        // SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223.
        assert_eq!(
            ClientKey::new("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223"
        );
    }

    fn read(pairs: &[(&str, &str)]) -> Result<RateLimitPolicy, SettingError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        RateLimitPolicy::from_variables(|name| map.get(name).map(|value| value.to_string()))
    }

    #[test]
    fn the_policy_is_read_from_variables() {
        assert_eq!(read(&[]).unwrap(), RateLimitPolicy::default());
        let listed: Vec<(&str, &str)> = RATE_LIMIT_VARIABLES
            .iter()
            .map(|(name, default, _)| (*name, *default))
            .collect();
        assert_eq!(read(&listed).unwrap(), RateLimitPolicy::default());
        assert_eq!(
            read(&[
                ("rate_limit", "5"),
                ("rate_limit_period_secs", "2"),
                ("rate_limit_burst", " 3 ")
            ])
            .unwrap(),
            RateLimitPolicy {
                limit: 5,
                period_ms: 2_000,
                burst: 3
            }
        );
        for (name, bad) in [
            ("rate_limit", "0"),
            ("rate_limit", "lots"),
            ("rate_limit_period_secs", "0"),
            ("rate_limit_period_secs", "86401"),
            ("rate_limit_burst", "0"),
            ("rate_limit_burst", "1000001"),
        ] {
            let SettingError::Invalid { name: named, .. } = read(&[(name, bad)]).unwrap_err();
            assert_eq!(named, name, "{bad}");
        }
    }
}
