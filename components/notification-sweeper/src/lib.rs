//! `notification-sweeper`: the notification service's sweep, run by Spin's cron trigger
//! (`handle-cron-event`, the spin-trigger-cron world): it records a notification for every
//! order that became final since the cursor, so an order whose doorbell was lost waits at most
//! for the next sweep. The work itself is in [`notification_core`].

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    spin_sdk::wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use guest_kit::{SpinSql, WallClock};
use notification_core::Notifier;
use orders_core::Timestamp;
use resilience::Clock;

struct Sweeper;

impl bindings::Guest for Sweeper {
    fn handle_cron_event(_: Metadata) -> Result<(), Error> {
        let sql = SpinSql::open_default().map_err(|error| Error::Other(error.to_string()))?;
        Notifier::new(&sql)
            .catch_up(Timestamp(WallClock.now_ms()))
            .map(drop)
            .map_err(|error| Error::Other(guest_kit::error_chain(&error)))
    }
}

bindings::export!(Sweeper with_types_in bindings);
