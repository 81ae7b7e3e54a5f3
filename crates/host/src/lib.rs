//! `orderly up`: a Spin-compatible host on wasmtime. It reads a `spin.toml`, compiles the
//! components (caching the result), opens their key-value stores and SQLite databases, and runs
//! the HTTP, Redis and cron triggers, each request, message or run in a fresh instance, as Spin
//! does.
//!
//! The modules import in one direction, as in Spin (triggers above, capabilities below):
//! `entry` → `trigger` → `app` → `component` (with `engine`, `stdio`) → `instance` →
//! `capability` → `services`; `settings` is a leaf every layer reads, and `build` stands apart.

mod app;
mod build;
mod capability;
mod component;
mod engine;
mod entry;
mod instance;
mod services;
mod settings;
mod stdio;
mod trigger;

pub use build::{BuildError, build_all};
pub use entry::{LoadOptions, LoadedApp, RunningApp, StartError};
pub use services::clock::{HostClock, SystemClock};
pub use services::redis::RedisMode;
pub use settings::{
    Backoff, DEFAULT_REDIS_CONCURRENCY, HostSettings, HttpSettings, InstanceSettings, RedisSettings,
};
