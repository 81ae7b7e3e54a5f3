//! The raw shape of `spin.toml` version 2, as serde reads it. Tables that Spin reads with
//! `deny_unknown_fields` are read the same way here, so a misspelt key is an error, not a
//! silently ignored setting. [`crate::app`] turns this into the validated model.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Checked before the schema is read, to explain version 1 manifests.
    #[serde(rename = "spin_manifest_version")]
    pub _spin_manifest_version: toml::Value,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Application {
    pub name: String,
    pub version: Option<String>,
    /// Accepted as Spin does; not used by the host.
    #[serde(rename = "description")]
    pub _description: Option<String>,
    /// Accepted as Spin does; not used by the host.
    #[serde(default, rename = "authors")]
    pub _authors: Vec<String>,
    /// Accepted as Spin does; not used by the host.
    #[serde(default, rename = "targets")]
    pub _targets: Vec<toml::Value>,
    /// `[application.trigger.<type>]`: settings shared by all triggers of a type.
    #[serde(default)]
    pub trigger: BTreeMap<String, toml::Table>,
    /// Accepted as Spin does; tool tables belong to other tools.
    #[serde(default, rename = "tool")]
    pub _tool: toml::Table,
}

/// `[application.trigger.http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpAppSettings {
    pub base: Option<String>,
}

/// `[application.trigger.redis]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisAppSettings {
    pub address: Option<String>,
}

/// An entry of `[variables]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Variable {
    /// Accepted as Spin does; not used by the host.
    #[serde(rename = "description")]
    pub _description: Option<String>,
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

/// `[[trigger.http]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpTrigger {
    /// Accepted as Spin does; not used by the host.
    #[serde(rename = "id")]
    pub _id: Option<String>,
    pub route: Route,
    pub component: toml::Value,
    pub executor: Option<toml::Table>,
}

/// A `[[trigger.http]]` route: a path pattern, or `{ private = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Route {
    Path(String),
    Private(PrivateRoute),
}

/// `route = { private = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrivateRoute {
    pub private: bool,
}

/// `[[trigger.redis]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisTrigger {
    /// Accepted as Spin does; not used by the host.
    #[serde(rename = "id")]
    pub _id: Option<String>,
    pub address: Option<String>,
    pub channel: String,
    pub component: toml::Value,
}

/// `[[trigger.cron]]` (the `spin-trigger-cron` plugin).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CronTrigger {
    /// Accepted as Spin does; not used by the host.
    #[serde(rename = "id")]
    pub _id: Option<String>,
    pub component: toml::Value,
    pub cron_expression: String,
}

/// `[component.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Component {
    /// Accepted as Spin does; not used by the host.
    #[serde(rename = "description")]
    pub _description: Option<String>,
    pub source: toml::Value,
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Accepted as Spin does; only affects which files a glob mount copies.
    #[serde(default, rename = "exclude_files")]
    pub _exclude_files: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_http_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    pub build: Option<Build>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Accepted as Spin does; only meaningful with component dependencies.
    #[serde(default, rename = "dependencies_inherit_configuration")]
    pub _dependencies_inherit_configuration: bool,
    #[serde(default)]
    pub dependencies: toml::Table,
    /// Accepted as Spin does; tool tables belong to other tools.
    #[serde(default, rename = "tool")]
    pub _tool: toml::Table,
}

/// An entry of `files`: a glob pattern, or a `{ source, destination }` directory mapping.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum FileMount {
    Pattern(String),
    Placement(FilePlacement),
}

/// `{ source = "dir", destination = "/path" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePlacement {
    pub source: String,
    pub destination: String,
}

/// `[component.<id>.build]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Build {
    pub command: Commands,
    pub workdir: Option<String>,
    /// Accepted as Spin does; used by `spin watch`, which orderly does not implement.
    #[serde(default, rename = "watch")]
    pub _watch: Vec<String>,
}

/// A build command, or several run in order.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Commands {
    One(String),
    Many(Vec<String>),
}
