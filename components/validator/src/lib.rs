//! `validator`: the validation worker, woken by a doorbell on Redis. It drains due jobs;
//! malformed messages and doorbells about unknown orders go to the dead-letter queue. The work
//! itself is in [`validator_kit`] (shared with the cron-triggered `validation-sweeper`).

use bytes::Bytes;
use spin_sdk::redis_component;
use validator_kit::Invocation;

#[redis_component]
async fn on_message(message: Bytes) -> anyhow::Result<()> {
    let report = validator_kit::run(Invocation::Message(&message)).await?;
    if report.dead_lettered > 0 {
        eprintln!("validator: a message went to the dead-letter queue");
    }
    Ok(())
}
