//! `validation-sweeper`: the validation worker's sweep, run by Spin's cron trigger
//! (`handle-cron-event`, the spin-trigger-cron world). It fails orders whose deadline passed,
//! drains due jobs (so a lost doorbell only delays an order until the next sweep), prunes
//! expired keys now and then, and leaves a heartbeat for the health monitor. The work itself is
//! in [`validator_kit`].

use validator_kit::Invocation;

guest_kit::cron_component!(sweep);

/// One sweep, its error with its causes.
fn sweep() -> Result<(), String> {
    spin_sdk::http::run(validator_kit::run(Invocation::Sweep))
        .map(drop)
        .map_err(|error| format!("{error:#}"))
}
