//! The Orderly lab (`orderly lab ...`): experiments that measure Orderly and check its claims,
//! reported as ratios taken in one run so the noise of a shared machine cancels out.

mod api;
mod app;
mod app_http;
mod cli;
mod control;
mod edge;
mod experiment;
mod fleet;
mod gateway_cost;
mod history;
mod load;
mod load_run;
mod medisupply;
mod messaging;
mod native;
mod orders_load;
mod overhead;
mod pipeline;
mod process;
mod report;
mod saga;
mod settle;
mod summary;
mod sync_async;
mod usage;
mod verdicts;
mod verify;

pub use cli::{LabCommand, run};
