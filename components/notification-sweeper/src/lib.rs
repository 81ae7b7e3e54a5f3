//! `notification-sweeper`: the notification service's sweep, run by Spin's cron trigger
//! (`handle-cron-event`, the spin-trigger-cron world): it records a notification for every
//! order that became final since the cursor, so an order whose doorbell was lost waits at most
//! for the next sweep. The work itself is in [`notification_core`].

use guest_kit::{SpinSql, WallClock};
use notification_core::Notifier;
use orders_core::Timestamp;
use resilience::Clock;

guest_kit::cron_component!(sweep);

/// One sweep, its error with its causes.
fn sweep() -> Result<(), String> {
    let sql = SpinSql::open_default().map_err(|error| error.to_string())?;
    Notifier::new(&sql)
        .catch_up(Timestamp(WallClock.now_ms()))
        .map(drop)
        .map_err(|error| guest_kit::error_chain(&error))
}
