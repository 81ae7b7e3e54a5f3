//! Orderly's resilience mechanisms, for components sharing a Spin key-value store: a fleet-wide
//! circuit breaker, a fleet-wide bulkhead (a concurrency limit with leases), a fleet-wide
//! per-client rate limiter (GCRA), time-bucketed call counters, retries with jittered backoff
//! under a shared retry budget, and the decisions of the `Idempotency-Key` draft.
//!
//! Policies (what to do) are plain values with defaults, validated and read from variables;
//! mechanisms (how) run them over a [`KvStore`]. Time ([`Clock`]) and randomness ([`Random`])
//! are injected: nothing here reads the wall clock, spawns threads or does I/O of its own, so it
//! runs unchanged inside WebAssembly components and deterministically in tests.
//!
//! Seeding. Compare-and-swap on a missing key is not safe on Spin's store, so the breaker's
//! record is created once: the caller that gets 1 from incrementing `breaker/{name}/seeded`
//! writes it; everyone else works from an unstored closed record (generation 0) and never
//! compare-and-swaps it. Should the seeder fail before writing, the caller that sees the record
//! missing for the 1000th time (and every 1000th after) seeds it instead. The bulkhead's record
//! and each rate-limited client's state are seeded the same way.

pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod clock;
pub mod idempotency;
pub mod kv;
pub mod random;
pub mod rate_limit;
pub mod retry;
pub mod settings;
pub mod window;

pub use breaker::{
    Admission, BreakerError, BreakerPolicy, BreakerRecord, CallOutcome, CircuitBreaker,
    CircuitState, ForcedState, ProbeLease, ProbeTicket, Transition, TripReason,
};
pub use budget::{BudgetPolicy, RetryBudget};
pub use bulkhead::{Bulkhead, BulkheadError, BulkheadPermit, BulkheadPolicy};
pub use clock::{Clock, ManualClock};
pub use idempotency::{IdempotencyKey, KeyDecision, KeyError, KeyRecord, decide};
pub use kv::{KvStore, MemoryStore, MemoryStoreError};
pub use random::{Random, SplitMix64};
pub use rate_limit::{
    ClientKey, RATE_LIMIT_VARIABLES, RateDecision, RateLimitError, RateLimitPolicy, RateLimiter,
};
pub use retry::{CallFailure, FailureClass, HttpAnswer, RetryPolicy, classify, parse_retry_after};
pub use settings::{
    ResilienceSettings, SettingError, VARIABLES, read_settings, whole_number_setting,
};
pub use window::{CallTally, CallWindow, WindowTotals};
