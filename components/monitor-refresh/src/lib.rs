//! `monitor-refresh`: refreshes the health monitor's report, run every second by Spin's cron
//! trigger (`handle-cron-event`, the spin-trigger-cron world); it probes when the report is
//! older than `monitor_interval_secs`. The work itself is in [`monitor_kit`].

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    spin_sdk::wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};

struct Refresh;

impl bindings::Guest for Refresh {
    fn handle_cron_event(_: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(monitor_kit::refresh_if_stale()).map_err(Error::Other)
    }
}

bindings::export!(Refresh with_types_in bindings);
