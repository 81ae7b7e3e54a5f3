//! The validation worker on Spin, shared by its two components: the Redis-triggered
//! `validator` (a doorbell woke it) and the cron-triggered `validation-sweeper`. Spin gives
//! each trigger type its own component (a component that exported both would import the cron
//! plugin's types, which Spin's Redis trigger does not provide). This crate adapts Spin's
//! SQLite, key-value store, outbound HTTP (with timeouts) and Redis to
//! [`pipeline::ValidationWorker`]. A Redis- or cron-triggered component cannot use service
//! chaining on Spin, so the validator is reached by its full URL (`validator_url`).

use guest_kit::clients::HttpValidator;
use guest_kit::{RedisDoorbells, SpinKv, SpinSql, WallClock};
use ledger::Ledger;
use pipeline::{ValidationWorker, WorkerParts, WorkerSettings};
use resilience::SplitMix64;

/// Why the worker runs.
pub enum Invocation<'a> {
    /// A message on the jobs channel.
    Message(&'a [u8]),
    /// The cron sweep.
    Sweep,
}

/// Builds a worker over Spin's stores and runs it.
pub async fn run(invocation: Invocation<'_>) -> anyhow::Result<pipeline::DrainReport> {
    let settings = WorkerSettings::read(guest_kit::variable)?;
    let ledger = Ledger::new(SpinSql::open_default()?);
    let store = SpinKv::open("default")?;
    let validator = HttpValidator::by_url()?;
    let publisher = RedisDoorbells::from_variables();
    let seed = guest_kit::random_seed();
    let parts = WorkerParts {
        ledger: &ledger,
        store: &store,
        clock: &WallClock,
        validator: &validator,
        publisher: &publisher,
        settings: &settings,
    };
    let mut worker = ValidationWorker::new(parts, SplitMix64::new(seed), format!("w-{seed:016x}"));
    let report = match invocation {
        Invocation::Message(message) => worker.on_message(pipeline::JOBS_CHANNEL, message).await?,
        Invocation::Sweep => worker.sweep().await?,
    };
    Ok(report)
}
