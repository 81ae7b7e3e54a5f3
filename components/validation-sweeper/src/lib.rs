//! `validation-sweeper`: the validation worker's sweep, run by Spin's cron trigger
//! (`handle-cron-event`, the spin-trigger-cron world). It fails orders whose deadline passed,
//! drains due jobs (so a lost doorbell only delays an order until the next sweep), prunes
//! expired keys now and then, and leaves a heartbeat for the health monitor. The work itself is
//! in [`validator_kit`].

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    spin_sdk::wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use validator_kit::Invocation;

struct Sweeper;

impl bindings::Guest for Sweeper {
    fn handle_cron_event(_: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(validator_kit::run(Invocation::Sweep))
            .map(drop)
            .map_err(|error| Error::Other(format!("{error:#}")))
    }
}

bindings::export!(Sweeper with_types_in bindings);
