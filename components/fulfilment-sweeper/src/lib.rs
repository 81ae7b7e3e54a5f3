//! `fulfilment-sweeper`: the fulfilment worker's sweep, run by Spin's cron trigger
//! (`handle-cron-event`, the spin-trigger-cron world). It runs due sagas (so a lost doorbell
//! or a retry only waits for the next sweep), undoes sagas whose deadline passed, and leaves a
//! heartbeat for the health monitor. The work itself is in [`fulfilment_kit`].

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    spin_sdk::wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use fulfilment_kit::Invocation;

struct Sweeper;

impl bindings::Guest for Sweeper {
    fn handle_cron_event(_: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(fulfilment_kit::run(Invocation::Sweep))
            .map(drop)
            .map_err(|error| Error::Other(format!("{error:#}")))
    }
}

bindings::export!(Sweeper with_types_in bindings);
