//! Orderly's health monitor and metrics, as plain Rust: how a health probe's answer is
//! classified, what the monitor reports, and the Prometheus exposition of the pipeline's
//! counters and state. The `monitor` component gathers the inputs (probes over HTTP, the
//! ledger, the key-value store) and calls in here.

mod exposition;
mod health;

pub use exposition::{METRICS_CONTENT_TYPE, MetricsInputs, render_metrics};
pub use health::{
    BreakerSummary, Health, HealthReport, Heartbeat, ProbeFailure, ProbeReport, ServiceHealth,
    WorkerLimits, classify, worker_health,
};
