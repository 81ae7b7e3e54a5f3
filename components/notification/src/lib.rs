//! `notification`: the notification service, woken by a doorbell on Redis (`orderly-events`:
//! the fulfilment worker rings it when sagas end, the orders API when a customer cancels an
//! order still being validated). Whatever the doorbell names, it records a notification for
//! every order that became final since its cursor (see [`notification_core`]); a lost
//! doorbell waits for `notification-sweeper`. Malformed messages go to the dead-letter queue.

use bytes::Bytes;
use guest_kit::{SpinSql, WallClock};
use notification_core::{EVENTS_CHANNEL, Notifier};
use orders_core::Timestamp;
use resilience::Clock;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    let sql = SpinSql::open_default()?;
    let now = Timestamp(WallClock.now_ms());
    let report = Notifier::new(&sql).on_message(EVENTS_CHANNEL, &message, now)?;
    if report.dead_lettered > 0 {
        eprintln!("notification: a malformed message went to the dead-letter queue");
    }
    Ok(())
}
