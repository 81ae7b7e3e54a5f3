//! The fulfilment worker on Spin, shared by its two components: the Redis-triggered
//! `fulfilment` (a doorbell woke it) and the cron-triggered `fulfilment-sweeper` (for the
//! same reason as the validator and its sweeper, each trigger type has its own component).
//! This crate adapts Spin's SQLite, key-value store and outbound HTTP (with timeouts) to
//! [`fulfilment::FulfilmentWorker`]. A Redis- or cron-triggered component cannot use service
//! chaining on Spin, so the services are reached by full URL: `inventory_url`, `payment_url`
//! and `shipping_url`, by default `<app_url>/internal/<service>`. Orders that end ring the
//! notification service's doorbell on the app's Redis (`redis_url`).

use fulfilment::{
    FULFILMENT_CHANNEL, FulfilmentParts, FulfilmentReport, FulfilmentSettings, FulfilmentWorker,
};
use guest_kit::clients::HttpServices;
use guest_kit::{RedisDoorbells, SpinKv, SpinSql, WallClock};
use ledger::Ledger;
use resilience::SplitMix64;

/// Why the worker runs.
pub enum Invocation<'a> {
    /// A message on the fulfilment channel.
    Message(&'a [u8]),
    /// The cron sweep.
    Sweep,
}

/// Builds a worker over Spin's stores and runs it.
pub async fn run(invocation: Invocation<'_>) -> anyhow::Result<FulfilmentReport> {
    let settings = FulfilmentSettings::read(guest_kit::variable)?;
    let ledger = Ledger::new(SpinSql::open_default()?);
    let store = SpinKv::open("default")?;
    let services = HttpServices::by_url()?;
    let prices = guest_kit::catalog()?;
    let publisher = RedisDoorbells::from_variables();
    let seed = guest_kit::random_seed();
    let parts = FulfilmentParts {
        ledger: &ledger,
        store: &store,
        clock: &WallClock,
        services: &services,
        prices: &prices,
        publisher: &publisher,
        settings: &settings,
    };
    let worker = FulfilmentWorker::new(parts, SplitMix64::new(seed), format!("f-{seed:016x}"));
    let report = match invocation {
        Invocation::Message(message) => worker.on_message(FULFILMENT_CHANNEL, message).await?,
        Invocation::Sweep => worker.sweep().await?,
    };
    Ok(report)
}
