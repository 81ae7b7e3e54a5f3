//! `fulfilment-worker` (component `fulfilment` in spin.toml; the `fulfilment` crate is the
//! worker itself): the fulfilment worker, woken by a doorbell on Redis (the validation worker
//! rings one when it validated orders, the orders API when a customer cancels). It runs due
//! sagas; malformed messages go to the dead-letter queue. The work itself is in
//! [`fulfilment_kit`] (shared with the cron-triggered `fulfilment-sweeper`).

use bytes::Bytes;
use fulfilment_kit::Invocation;
use spin_sdk::redis_component;

#[redis_component]
async fn on_message(message: Bytes) -> anyhow::Result<()> {
    let report = fulfilment_kit::run(Invocation::Message(&message)).await?;
    if report.dead_lettered > 0 {
        eprintln!(
            "fulfilment: {} message(s) or saga(s) went to the dead-letter queue",
            report.dead_lettered
        );
    }
    Ok(())
}
