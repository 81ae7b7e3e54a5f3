//! Benchmarks of the decisions made on every request: the rate limiter's check, the circuit
//! breaker's admission (and recording a call), and the `Idempotency-Key` decisions. The stateful
//! ones run over the crate's own [`MemoryStore`] and [`ManualClock`], so they measure the
//! mechanism and an in-process store, not a real key-value store's round trips.
//!
//! Every benchmark makes one decision per iteration, so the throughput reads as decisions/s.
//! Run with `cargo bench -p resilience --bench decisions`.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use resilience::{
    Admission, BreakerPolicy, CallOutcome, CircuitBreaker, CircuitState, ClientKey, IdempotencyKey,
    KeyDecision, KeyRecord, ManualClock, MemoryStore, RateLimitPolicy, RateLimiter, decide,
};
use std::hint::black_box;

/// Where every benchmark's clock starts (November 2023), in ms since the epoch.
const START_MS: u64 = 1_700_000_000_000;

/// A policy no benchmark client reaches while its clock moves 1 ms per request: a million
/// requests a second, all at once if need be (each request uses 1 µs of it).
const GENEROUS: RateLimitPolicy = RateLimitPolicy {
    limit: 1_000_000,
    period_ms: 1_000,
    burst: 1_000_000,
};

/// A policy that allows one request a day: every request after the first is refused.
const STINGY: RateLimitPolicy = RateLimitPolicy {
    limit: 1,
    period_ms: 86_400_000,
    burst: 1,
};

/// How many distinct clients `rate_limit/check_many_clients` rotates over.
const MANY_CLIENTS: usize = 10_000;

/// A successful, quick call to the breaker's dependency.
const SUCCEEDED: CallOutcome = CallOutcome {
    failed: false,
    latency_ms: 20,
};

/// A failed call to the breaker's dependency.
const FAILED: CallOutcome = CallOutcome {
    failed: true,
    latency_ms: 20,
};

/// A request fingerprint as a caller would make one: a SHA-256, in hex.
const FINGERPRINT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// How long an idempotency key lives: a day.
const KEY_TTL_MS: u64 = 86_400_000;

/// An `Idempotency-Key` header as the draft writes it: a quoted UUID.
const KEY_HEADER: &str = "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"";

/// The rate limiter's benchmarks.
fn rate_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    group.throughput(Throughput::Elements(1));
    check_allowed(&mut group);
    check_refused(&mut group);
    check_many_clients(&mut group);
    group.finish();
}

/// `RateLimiter::check` for a client well under its limit: one read and one compare-and-swap.
fn check_allowed(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
    let limiter = RateLimiter::new(&store, &clock, "api", &GENEROUS);
    let client = ClientKey::new("key:alice");
    let seeded = limiter
        .check(&client)
        .expect("the first check seeds the client");
    assert!(seeded.allowed, "a new client is allowed");
    group.bench_function("check_allowed", |b| {
        b.iter(|| {
            clock.advance(1);
            limiter.check(black_box(&client))
        });
    });
    let last = limiter.check(&client).expect("the store never fails");
    assert!(last.allowed, "the client stayed under its limit");
}

/// `RateLimiter::check` for a client over its limit: one read, a refusal, nothing written.
fn check_refused(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
    let limiter = RateLimiter::new(&store, &clock, "api", &STINGY);
    let client = ClientKey::new("key:mallory");
    let seeded = limiter
        .check(&client)
        .expect("the first check seeds the client");
    assert!(seeded.allowed, "a new client is allowed once");
    group.bench_function("check_refused", |b| {
        b.iter(|| limiter.check(black_box(&client)));
    });
    let last = limiter.check(&client).expect("the store never fails");
    assert!(!last.allowed, "the client stayed over its limit");
}

/// `RateLimiter::check` rotating over 10,000 clients already seen, each well under its limit.
fn check_many_clients(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
    let limiter = RateLimiter::new(&store, &clock, "api", &GENEROUS);
    let clients: Vec<ClientKey> = (0..MANY_CLIENTS)
        .map(|n| ClientKey::new(&format!("key:client-{n}")))
        .collect();
    for client in &clients {
        let seeded = limiter
            .check(client)
            .expect("the first check seeds the client");
        assert!(seeded.allowed, "a new client is allowed");
    }
    let mut next = clients.iter().cycle();
    group.bench_function("check_many_clients", |b| {
        b.iter(|| {
            clock.advance(1);
            let client = next.next().expect("cycling over clients never ends");
            limiter.check(black_box(client))
        });
    });
    for client in &clients {
        let last = limiter.check(client).expect("the store never fails");
        assert!(last.allowed, "every client stayed under its limit");
    }
}

/// The circuit breaker's benchmarks.
fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    group.throughput(Throughput::Elements(1));
    admit_closed(&mut group);
    admit_record_success(&mut group);
    admit_open(&mut group);
    group.finish();
}

/// `CircuitBreaker::admit` on a closed circuit: one read and parsing the JSON record.
fn admit_closed(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
    let breaker = CircuitBreaker::new(&store, &clock, "payments", BreakerPolicy::default());
    let first = breaker
        .admit()
        .expect("the first admission seeds the record");
    assert!(matches!(first, Admission::Closed { .. }), "{first:?}");
    group.bench_function("admit_closed", |b| {
        b.iter(|| black_box(&breaker).admit());
    });
    assert_eq!(breaker.admit().expect("the store never fails"), first);
}

/// `CircuitBreaker::admit` then `record` of one success on a closed circuit: a whole call's
/// bookkeeping.
fn admit_record_success(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
    let breaker = CircuitBreaker::new(&store, &clock, "payments", BreakerPolicy::default());
    let first = breaker
        .admit()
        .expect("the first admission seeds the record");
    assert!(matches!(first, Admission::Closed { .. }), "{first:?}");
    group.bench_function("admit_record_success", |b| {
        b.iter(|| {
            let breaker = black_box(&breaker);
            breaker
                .admit()
                .and_then(|admission| breaker.record(&admission, black_box(&[SUCCEEDED])))
        });
    });
    assert_eq!(breaker.admit().expect("the store never fails"), first);
}

/// `CircuitBreaker::admit` on an open circuit: one read, parsing the record, a rejection.
fn admit_open(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START_MS));
    let policy = BreakerPolicy::default();
    let breaker = CircuitBreaker::new(&store, &clock, "payments", policy.clone());
    let mut tripped = None;
    for _ in 0..policy.consecutive_failures {
        let admission = breaker.admit().expect("the store never fails");
        tripped = breaker
            .record(&admission, &[FAILED])
            .expect("the store never fails");
    }
    assert!(
        tripped.is_some_and(|transition| transition.to == CircuitState::Open),
        "a run of failures trips the circuit"
    );
    let open = |admission: &Admission| {
        matches!(
            admission,
            Admission::Rejected {
                state: CircuitState::Open,
                ..
            }
        )
    };
    let rejected = breaker.admit().expect("the store never fails");
    assert!(open(&rejected), "{rejected:?}");
    group.bench_function("admit_open", |b| {
        b.iter(|| black_box(&breaker).admit());
    });
    let last = breaker.admit().expect("the store never fails");
    assert!(open(&last), "the circuit stayed open: {last:?}");
}

/// The `Idempotency-Key` benchmarks.
fn idempotency(c: &mut Criterion) {
    let mut group = c.benchmark_group("idempotency");
    group.throughput(Throughput::Elements(1));
    decide_replay(&mut group);
    decide_new(&mut group);
    parse(&mut group);
    group.finish();
}

/// `decide` for a repeated key whose first request finished: a replay.
fn decide_replay(group: &mut BenchmarkGroup<'_, WallTime>) {
    let now_ms = START_MS + 60_000;
    let stored = KeyRecord {
        fingerprint: FINGERPRINT.to_owned(),
        created_ms: START_MS,
        completed: true,
        locked_until_ms: START_MS + 10_000,
    };
    let decision = decide(Some(&stored), FINGERPRINT, now_ms, KEY_TTL_MS);
    assert_eq!(decision, KeyDecision::Replay);
    group.bench_function("decide_replay", |b| {
        b.iter(|| {
            decide(
                black_box(Some(&stored)),
                black_box(FINGERPRINT),
                black_box(now_ms),
                black_box(KEY_TTL_MS),
            )
        });
    });
}

/// `decide` for a key nothing is stored about: proceed.
fn decide_new(group: &mut BenchmarkGroup<'_, WallTime>) {
    let decision = decide(None, FINGERPRINT, START_MS, KEY_TTL_MS);
    assert_eq!(decision, KeyDecision::Proceed);
    group.bench_function("decide_new", |b| {
        b.iter(|| {
            decide(
                black_box(None),
                black_box(FINGERPRINT),
                black_box(START_MS),
                black_box(KEY_TTL_MS),
            )
        });
    });
}

/// `IdempotencyKey::parse` of a quoted UUID, the header's usual form.
fn parse(group: &mut BenchmarkGroup<'_, WallTime>) {
    let key = IdempotencyKey::parse(KEY_HEADER).expect("a quoted UUID is a valid key");
    assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
    group.bench_function("parse", |b| {
        b.iter(|| IdempotencyKey::parse(black_box(KEY_HEADER)));
    });
}

criterion_group!(decisions, rate_limit, breaker, idempotency);
criterion_main!(decisions);
