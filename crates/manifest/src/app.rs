//! The validated application model, loaded from `spin.toml`.

use crate::ids::{ComponentId, VariableName, check_label};
use crate::problem::{ConfigProblem, LoadError};
use crate::schema;
use crate::template::Template;
use crate::variables::{ResolvedVariables, VariableDecl, VariableSources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A Spin application, validated: every trigger names a declared component, every template
/// names a declared variable, and every path is absolute.
#[derive(Debug, Clone)]
pub struct App {
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// The folder holding the manifest; relative paths in it are relative to this.
    pub dir: PathBuf,
    /// `[application] name`.
    pub name: String,
    /// `[application] version`.
    pub version: Option<String>,
    /// `[variables]`.
    pub variables: BTreeMap<VariableName, VariableDecl>,
    /// `[component.<id>]`, by id.
    pub components: BTreeMap<ComponentId, ComponentSpec>,
    /// `[[trigger.http]]`, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[application.trigger.redis] address`.
    pub redis_address: Option<Template>,
    /// `[[trigger.redis]]`, in manifest order.
    pub redis_triggers: Vec<RedisTrigger>,
    /// `[[trigger.cron]]`, in manifest order.
    pub cron_triggers: Vec<CronTrigger>,
}

/// A component: its Wasm file and the capabilities granted to it.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// `[component.<id>]`.
    pub id: ComponentId,
    /// `source`, made absolute.
    pub source: PathBuf,
    /// `files`: host folders mounted into the guest.
    pub files: Vec<FileMount>,
    /// `allowed_outbound_hosts`, as templates.
    pub allowed_outbound_hosts: Vec<Template>,
    /// `key_value_stores`: labels the component may open.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases`: labels the component may open.
    pub sqlite_databases: Vec<String>,
    /// `environment`: environment variables seen by the guest.
    pub environment: BTreeMap<String, String>,
    /// `[component.<id>.variables]`: the component's variables, as templates over application
    /// variables.
    pub variables: BTreeMap<VariableName, Template>,
    /// `[component.<id>.build]`.
    pub build: Option<BuildSpec>,
}

/// A host folder mounted into a component's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    /// The host folder (absolute).
    pub source: PathBuf,
    /// Where the guest sees it.
    pub destination: String,
}

/// How to build a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The commands, run in order through the shell.
    pub commands: Vec<String>,
    /// The folder they run in (absolute).
    pub workdir: PathBuf,
}

/// Where an HTTP trigger is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRoute {
    /// A Spin route pattern (`/orders/...`, `/orders/:id`, `/health`).
    Path(String),
    /// `{ private = true }`: reachable only through service chaining.
    Private,
}

/// `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The route.
    pub route: HttpRoute,
    /// The component it runs.
    pub component: ComponentId,
}

/// `[[trigger.redis]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTrigger {
    /// The channel subscribed to (variables allowed, as in Spin).
    pub channel: Template,
    /// The component run for each message.
    pub component: ComponentId,
    /// The trigger's own address, overriding `[application.trigger.redis] address`.
    pub address: Option<Template>,
}

/// `[[trigger.cron]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronTrigger {
    /// The component run on schedule.
    pub component: ComponentId,
    /// Six fields, seconds first.
    pub cron_expression: String,
}

const MANIFEST_KIND: &str = "Spin manifest (spin.toml, manifest version 2)";

impl App {
    /// Reads and validates a manifest file.
    pub fn load(manifest_path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(manifest_path).map_err(|source| LoadError::Read {
            path: manifest_path.to_owned(),
            source,
            fix: "run in the folder that holds spin.toml, or pass -f PATH/TO/spin.toml".into(),
        })?;
        let manifest_path =
            std::path::absolute(manifest_path).map_err(|source| LoadError::Read {
                path: manifest_path.to_owned(),
                source,
                fix: "check that the current folder still exists".into(),
            })?;
        Self::parse(&text, &manifest_path)
    }

    /// Validates manifest text as if read from `manifest_path` (which must be absolute).
    pub fn parse(text: &str, manifest_path: &Path) -> Result<Self, LoadError> {
        let syntax = |message: String| LoadError::Syntax {
            path: manifest_path.to_owned(),
            kind: MANIFEST_KIND,
            message,
        };
        let raw: toml::Table = toml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        check_version(raw.get("spin_manifest_version")).map_err(syntax)?;
        let manifest: schema::Manifest = toml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let dir = manifest_path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        let mut problems = Vec::new();
        let app = Validator {
            dir: &dir,
            problems: &mut problems,
        }
        .app(manifest, manifest_path);
        if problems.is_empty() {
            Ok(app)
        } else {
            Err(LoadError::Invalid {
                path: manifest_path.to_owned(),
                problems,
            })
        }
    }

    /// Resolves every application variable from `sources`; fails listing each required
    /// variable that has no value.
    pub fn resolve_variables(
        &self,
        sources: &VariableSources,
    ) -> Result<ResolvedVariables, LoadError> {
        ResolvedVariables::resolve(&self.variables, sources).map_err(|problems| {
            LoadError::Invalid {
                path: self.manifest_path.clone(),
                problems,
            }
        })
    }

    /// Checks that every component's Wasm file exists, listing each one that does not.
    pub fn check_sources(&self) -> Result<(), LoadError> {
        let problems: Vec<ConfigProblem> = self
            .components
            .values()
            .filter(|component| !component.source.is_file())
            .map(|component| {
                let fix = if component.build.is_some() {
                    "build it: `orderly build` (or `orderly up --build`)"
                } else {
                    "point `source` at an existing .wasm file"
                };
                ConfigProblem::new(
                    format!("[component.{}] source", component.id),
                    format!("{} does not exist", component.source.display()),
                    fix,
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Invalid {
                path: self.manifest_path.clone(),
                problems,
            })
        }
    }
}

fn check_version(version: Option<&toml::Value>) -> Result<(), String> {
    match version {
        Some(toml::Value::Integer(2)) => Ok(()),
        Some(toml::Value::String(v)) if v == "1" => Err(
            "this is a version 1 manifest (spin_manifest_version = \"1\"); orderly runs version 2 manifests (Spin 2.0 and later)\n    fix: run `spin doctor` to upgrade it, or rewrite it as spin_manifest_version = 2".into(),
        ),
        Some(other) => Err(format!(
            "spin_manifest_version = {other} is not supported\n    fix: use spin_manifest_version = 2"
        )),
        None => Err(
            "missing `spin_manifest_version`\n    fix: add spin_manifest_version = 2 as the first line".into(),
        ),
    }
}

/// Turns the raw manifest into the model, collecting every problem instead of stopping at the
/// first.
struct Validator<'a> {
    dir: &'a Path,
    problems: &'a mut Vec<ConfigProblem>,
}

impl Validator<'_> {
    fn problem(&mut self, location: String, message: String, fix: impl Into<String>) {
        self.problems
            .push(ConfigProblem::new(location, message, fix));
    }

    fn app(&mut self, manifest: schema::Manifest, manifest_path: &Path) -> App {
        if manifest.application.name.trim().is_empty() {
            self.problem(
                "[application] name".into(),
                "must not be empty".into(),
                "give the application a name, e.g. name = \"orderly\"",
            );
        }
        let variables = self.variables(manifest.variables);
        let components = self.components(manifest.component, &variables);
        let redis_address = self.trigger_settings(manifest.application.trigger, &variables);
        let mut app = App {
            manifest_path: manifest_path.to_owned(),
            dir: self.dir.to_owned(),
            name: manifest.application.name,
            version: manifest.application.version,
            variables,
            components,
            http_triggers: Vec::new(),
            redis_address,
            redis_triggers: Vec::new(),
            cron_triggers: Vec::new(),
        };
        for (kind, entries) in manifest.trigger {
            for (index, table) in entries.into_iter().enumerate() {
                let location = format!("[[trigger.{kind}]] #{}", index + 1);
                self.trigger(&mut app, &kind, table, location);
            }
        }
        app
    }

    fn variables(
        &mut self,
        raw: BTreeMap<String, schema::Variable>,
    ) -> BTreeMap<VariableName, VariableDecl> {
        let mut out = BTreeMap::new();
        for (name, variable) in raw {
            let location = format!("[variables] {name}");
            let Some(parsed) = self.variable_name(&name, &location) else {
                continue;
            };
            match (&variable.default, variable.required) {
                (Some(_), true) => self.problem(
                    location,
                    "has both `default` and `required = true`".into(),
                    "keep one: a default value, or required = true",
                ),
                (None, false) => self.problem(
                    location,
                    "has neither `default` nor `required = true`".into(),
                    "add default = \"...\" or required = true",
                ),
                _ => {}
            }
            out.insert(
                parsed,
                VariableDecl {
                    default: variable.default,
                    required: variable.required,
                    secret: variable.secret,
                },
            );
        }
        out
    }

    fn variable_name(&mut self, name: &str, location: &str) -> Option<VariableName> {
        match VariableName::parse(name) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                self.problem(
                    location.to_owned(),
                    format!("`{name}` is not a valid variable name: {reason}"),
                    "rename it",
                );
                None
            }
        }
    }

    fn template(
        &mut self,
        text: &str,
        location: &str,
        declared: &BTreeMap<VariableName, VariableDecl>,
    ) -> Option<Template> {
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(error) => {
                self.problem(
                    location.to_owned(),
                    format!("bad template {text:?}: {error}"),
                    "write variables as {{ name }}",
                );
                return None;
            }
        };
        let undeclared: Vec<String> = template
            .variables()
            .filter(|name| !declared.contains_key(*name))
            .map(|name| format!("`{name}`"))
            .collect();
        if undeclared.is_empty() {
            Some(template)
        } else {
            self.problem(
                location.to_owned(),
                format!(
                    "{text:?} refers to undeclared application variable {}",
                    undeclared.join(", ")
                ),
                "declare it under [variables], e.g. name = { default = \"...\" }",
            );
            None
        }
    }

    fn components(
        &mut self,
        raw: BTreeMap<String, schema::Component>,
        declared: &BTreeMap<VariableName, VariableDecl>,
    ) -> BTreeMap<ComponentId, ComponentSpec> {
        let mut out = BTreeMap::new();
        for (id, component) in raw {
            let location = format!("[component.{id}]");
            match ComponentId::parse(&id) {
                Ok(parsed) => {
                    let spec = self.component(parsed.clone(), component, &location, declared);
                    out.insert(parsed, spec);
                }
                Err(reason) => self.problem(
                    location,
                    format!("`{id}` is not a valid component id: {reason}"),
                    "rename the component (and every trigger that names it)",
                ),
            }
        }
        out
    }

    fn component(
        &mut self,
        id: ComponentId,
        raw: schema::Component,
        location: &str,
        declared: &BTreeMap<VariableName, VariableDecl>,
    ) -> ComponentSpec {
        let source = self.source(&raw.source, location);
        if !raw.dependencies.is_empty() {
            self.problem(
                format!("{location} dependencies"),
                "component dependencies (composition) are not supported by orderly up".into(),
                "compose the component ahead of time (e.g. with `wac`) and point `source` at the result",
            );
        }
        if !raw.ai_models.is_empty() {
            self.problem(
                format!("{location} ai_models"),
                "Serverless AI models are not supported by orderly up".into(),
                "remove ai_models, or run this app with real Spin",
            );
        }
        if !raw.allowed_http_hosts.is_empty() {
            self.problem(
                format!("{location} allowed_http_hosts"),
                "the deprecated allowed_http_hosts is not supported by orderly up".into(),
                format!(
                    "write the hosts as allowed_outbound_hosts with a scheme, e.g. {:?}",
                    raw.allowed_http_hosts
                        .iter()
                        .map(|host| format!("https://{host}"))
                        .collect::<Vec<_>>()
                ),
            );
        }
        for (field, labels) in [
            ("key_value_stores", &raw.key_value_stores),
            ("sqlite_databases", &raw.sqlite_databases),
        ] {
            for label in labels {
                if let Err(reason) = check_label(label) {
                    self.problem(
                        format!("{location} {field}"),
                        format!("`{label}` is not a valid label: {reason}"),
                        "use kebab-case or snake_case, e.g. \"default\" or \"order_cache\"",
                    );
                }
            }
        }
        let files = raw
            .files
            .into_iter()
            .filter_map(|mount| self.file_mount(mount, location))
            .collect();
        let allowed_outbound_hosts = raw
            .allowed_outbound_hosts
            .iter()
            .filter_map(|host| {
                self.template(
                    host,
                    &format!("{location} allowed_outbound_hosts"),
                    declared,
                )
            })
            .collect();
        let mut variables = BTreeMap::new();
        for (name, value) in &raw.variables {
            let var_location = format!("[component.{id}.variables] {name}");
            if let Some(parsed) = self.variable_name(name, &var_location)
                && let Some(template) = self.template(value, &var_location, declared)
            {
                variables.insert(parsed, template);
            }
        }
        let build = raw.build.map(|build| BuildSpec {
            commands: match build.command {
                schema::Commands::One(command) => vec![command],
                schema::Commands::Many(commands) => commands,
            },
            workdir: build
                .workdir
                .map(|dir| self.dir.join(dir))
                .unwrap_or_else(|| self.dir.to_owned()),
        });
        ComponentSpec {
            id,
            source,
            files,
            allowed_outbound_hosts,
            key_value_stores: raw.key_value_stores,
            sqlite_databases: raw.sqlite_databases,
            environment: raw.environment,
            variables,
            build,
        }
    }

    fn source(&mut self, raw: &toml::Value, location: &str) -> PathBuf {
        match raw {
            toml::Value::String(path) => self.dir.join(path),
            toml::Value::Table(table) if table.contains_key("url") => {
                self.problem(
                    format!("{location} source"),
                    "remote sources ({ url, digest }) are not fetched by orderly up".into(),
                    "download the .wasm (and check its digest), then set source = \"path/to/file.wasm\"",
                );
                PathBuf::new()
            }
            toml::Value::Table(table)
                if table.contains_key("registry") || table.contains_key("package") =>
            {
                self.problem(
                    format!("{location} source"),
                    "registry sources are not fetched by orderly up".into(),
                    "fetch the package's .wasm, then set source = \"path/to/file.wasm\"",
                );
                PathBuf::new()
            }
            other => {
                self.problem(
                    format!("{location} source"),
                    format!("expected a path to a .wasm file, found {other}"),
                    "set source = \"path/to/file.wasm\" (relative to spin.toml)",
                );
                PathBuf::new()
            }
        }
    }

    fn file_mount(&mut self, mount: schema::FileMount, location: &str) -> Option<FileMount> {
        match mount {
            schema::FileMount::Placement(placement) => {
                if !placement.destination.starts_with('/') {
                    self.problem(
                        format!("{location} files"),
                        format!("destination {:?} is not absolute", placement.destination),
                        "start the destination with /",
                    );
                    return None;
                }
                Some(FileMount {
                    source: self.dir.join(placement.source),
                    destination: placement.destination,
                })
            }
            schema::FileMount::Pattern(pattern) => {
                self.problem(
                    format!("{location} files"),
                    format!("glob pattern {pattern:?} is not supported by orderly up"),
                    "mount a folder instead: files = [{ source = \"dir\", destination = \"/dir\" }]",
                );
                None
            }
        }
    }

    fn trigger_settings(
        &mut self,
        settings: BTreeMap<String, toml::Table>,
        declared: &BTreeMap<VariableName, VariableDecl>,
    ) -> Option<Template> {
        let mut redis_address = None;
        for (kind, table) in settings {
            let location = format!("[application.trigger.{kind}]");
            match kind.as_str() {
                "http" => match table.try_into::<schema::HttpAppSettings>() {
                    Ok(schema::HttpAppSettings { base: Some(other) }) if other != "/" => self.problem(
                        format!("{location} base"),
                        format!("the deprecated base {other:?} is not supported (Spin rejects it too)"),
                        "remove `base` and prepend it to each [[trigger.http]] route",
                    ),
                    Ok(_) => {}
                    Err(e) => self.problem(location, e.to_string(), "remove the unknown setting"),
                },
                "redis" => match table.try_into::<schema::RedisAppSettings>() {
                    Ok(redis) => {
                        redis_address = redis.address.and_then(|address| {
                            self.template(&address, &format!("{location} address"), declared)
                        });
                    }
                    Err(e) => {
                        self.problem(location, e.to_string(), "the only setting is `address`")
                    }
                },
                _ => {}
            }
        }
        redis_address
    }

    fn trigger(&mut self, app: &mut App, kind: &str, table: toml::Table, location: String) {
        match kind {
            "http" => match table.try_into::<schema::HttpTrigger>() {
                Ok(raw) => {
                    if let Some(component) = self.trigger_component(&raw.component, app, &location)
                    {
                        self.http_trigger(app, raw, component, &location);
                    }
                }
                Err(e) => self.problem(
                    location,
                    e.to_string(),
                    "an HTTP trigger has `route` and `component` (and optionally `executor`)",
                ),
            },
            "redis" => match table.try_into::<schema::RedisTrigger>() {
                Ok(raw) => {
                    let address = raw.address.as_deref().and_then(|address| {
                        self.template(address, &format!("{location} address"), &app.variables)
                    });
                    let channel =
                        self.template(&raw.channel, &format!("{location} channel"), &app.variables);
                    if let Some(component) = self.trigger_component(&raw.component, app, &location)
                        && let Some(channel) = channel
                    {
                        app.redis_triggers.push(RedisTrigger {
                            channel,
                            component,
                            address,
                        });
                    }
                }
                Err(e) => self.problem(
                    location,
                    e.to_string(),
                    "a Redis trigger has `channel` and `component` (and optionally `address`)",
                ),
            },
            "cron" => match table.try_into::<schema::CronTrigger>() {
                Ok(raw) => {
                    if let Some(component) = self.trigger_component(&raw.component, app, &location)
                    {
                        app.cron_triggers.push(CronTrigger {
                            component,
                            cron_expression: raw.cron_expression,
                        });
                    }
                }
                Err(e) => self.problem(
                    location,
                    e.to_string(),
                    "a cron trigger has `component` and `cron_expression`",
                ),
            },
            other => self.problem(
                location,
                format!("trigger type `{other}` is not supported by orderly up"),
                "use http, redis or cron triggers",
            ),
        }
    }

    fn http_trigger(
        &mut self,
        app: &mut App,
        raw: schema::HttpTrigger,
        component: ComponentId,
        location: &str,
    ) {
        if let Some(executor) = &raw.executor {
            let kind = executor.get("type").and_then(toml::Value::as_str);
            if !matches!(kind, Some("spin" | "http")) {
                self.problem(
                    format!("{location} executor"),
                    format!(
                        "executor {} is not supported by orderly up",
                        kind.unwrap_or("without a type")
                    ),
                    "remove `executor` (WASIp2 components use the default Spin executor)",
                );
            }
        }
        let route = match raw.route {
            schema::Route::Path(path) => HttpRoute::Path(path),
            schema::Route::Private(schema::PrivateRoute { private: true }) => HttpRoute::Private,
            schema::Route::Private(schema::PrivateRoute { private: false }) => {
                self.problem(
                    format!("{location} route"),
                    "route = { private = false } is not a route".into(),
                    "give a path (route = \"/...\") or route = { private = true }",
                );
                return;
            }
        };
        app.http_triggers.push(HttpTrigger { route, component });
    }

    fn trigger_component(
        &mut self,
        raw: &toml::Value,
        app: &App,
        location: &str,
    ) -> Option<ComponentId> {
        let Some(id) = raw.as_str() else {
            self.problem(
                format!("{location} component"),
                "inline component tables are not supported by orderly up".into(),
                "move the component to its own [component.<id>] table and set component = \"<id>\"",
            );
            return None;
        };
        match ComponentId::parse(id) {
            Ok(id) if app.components.contains_key(&id) => Some(id),
            Ok(id) => {
                let known: Vec<&str> = app.components.keys().map(ComponentId::as_str).collect();
                self.problem(
                    format!("{location} component"),
                    format!("no component `{id}` is declared"),
                    format!(
                        "declare [component.{id}], or use one of: {}",
                        if known.is_empty() {
                            "(none declared)".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                None
            }
            Err(reason) => {
                self.problem(
                    format!("{location} component"),
                    format!("`{id}` is not a valid component id: {reason}"),
                    "use the id of a [component.<id>] table",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
