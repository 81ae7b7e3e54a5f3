//! The Orderly lab (`orderly lab ...`): experiments that measure Orderly and check its claims,
//! reported as ratios taken in one run so the noise of a shared machine cancels out.

mod app;
mod app_http;
mod backlog_recovery;
mod breaker;
mod charts;
mod cli;
mod control;
mod edge;
mod experiment;
mod fault_timeline;
mod gateway_cost;
mod load;
mod messaging;
mod native;
mod orders_load;
mod outage;
mod overhead;
mod pipeline;
mod process;
mod report;
mod saga;
mod settle;
mod summary;
mod sync_async;
mod usage;

pub use cli::{LabCommand, run};
