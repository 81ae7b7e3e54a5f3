//! The Orderly lab (`orderly lab ...`): experiments that measure Orderly and check its claims,
//! reported as ratios taken in one run so the noise of a shared machine cancels out.

mod api;
mod app;
mod app_http;
mod backlog_recovery;
mod breaker;
mod channels;
mod chaos;
mod charts;
mod cli;
mod control;
mod crash;
mod edge;
mod experiment;
mod fault_timeline;
mod fleet;
mod gateway_cost;
mod history;
mod idempotency;
mod inspection;
mod load;
mod load_run;
mod medisupply;
mod messaging;
mod native;
mod orders_load;
mod outage;
mod overhead;
mod pipeline;
mod poison;
mod process;
mod report;
mod saga;
mod scenario;
mod settle;
mod submit;
mod summary;
mod sync_async;
mod timeline;
mod usage;
mod validator_proxy;
mod verdicts;
mod verify;

pub use cli::{LabCommand, run};
