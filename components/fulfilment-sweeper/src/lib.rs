//! `fulfilment-sweeper`: the fulfilment worker's sweep, run by Spin's cron trigger
//! (`handle-cron-event`, the spin-trigger-cron world). It runs due sagas (so a lost doorbell
//! or a retry only waits for the next sweep), undoes sagas whose deadline passed, and leaves a
//! heartbeat for the health monitor. The work itself is in [`fulfilment_kit`].

use fulfilment_kit::Invocation;

guest_kit::cron_component!(sweep);

/// One sweep, its error with its causes.
fn sweep() -> Result<(), String> {
    spin_sdk::http::run(fulfilment_kit::run(Invocation::Sweep))
        .map(drop)
        .map_err(|error| format!("{error:#}"))
}
