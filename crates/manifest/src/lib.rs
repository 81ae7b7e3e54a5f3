//! Spin application manifests (`spin.toml`, manifest version 2) and runtime configuration
//! (`runtime-config.toml`), parsed into typed, validated values.
//!
//! Parsing follows Spin's schema closely: an application that real Spin accepts loads here, and
//! every mistake is reported with where it is and how to fix it. Nothing in this crate touches
//! WebAssembly; the host (`orderly-host`) turns a validated [`App`] into running components.

mod app;
mod ids;
mod problem;
mod runtime_config;
mod schema;
mod template;
mod variables;

pub use app::{
    App, BuildSpec, ComponentSpec, CronTrigger, FileMount, HttpRoute, HttpTrigger, RedisTrigger,
};
pub use ids::{ComponentId, IdError, VariableName};
pub use problem::{ConfigProblem, LoadError};
pub use runtime_config::{KeyValueStoreConfig, RuntimeConfig, SqliteDatabaseConfig};
pub use template::{Template, TemplateError};
pub use variables::{ResolvedVariables, VariableDecl, VariableSources};
