//! `monitor-refresh`: refreshes the health monitor's report, run every second by Spin's cron
//! trigger (`handle-cron-event`, the spin-trigger-cron world); it probes when the report is
//! older than `monitor_interval_secs`. The work itself is in [`monitor_kit`].

guest_kit::cron_component!(refresh);

/// Refreshes the report if it is stale.
fn refresh() -> Result<(), String> {
    spin_sdk::http::run(monitor_kit::refresh_if_stale())
}
