//! A loaded application: manifest validated, components compiled and linked, stores opened.

use crate::allowed_hosts::AllowedHosts;
use crate::engine::{self, ComponentCache, Loaded};
use crate::http_trigger::routes::{RoutePattern, Router};
use crate::instance::{self, InstanceState};
use crate::key_value::{KeyValueAccess, KeyValueStores};
use crate::outbound_http::OutboundHttp;
use crate::sqlite::{Databases, SqliteAccess};
use crate::stdio::{ComponentOutput, Terminal};
use crate::variables::ComponentVariables;
use orderly_manifest::{
    App as Manifest, ComponentId, ComponentSpec, HttpRoute, LoadError, Problem, ResolvedVariables,
    RuntimeConfig, VariableSources,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How to load an application.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The manifest (`spin.toml`).
    pub manifest: PathBuf,
    /// `--runtime-config-file`.
    pub runtime_config: Option<PathBuf>,
    /// `--state-dir`: `None` means the runtime config's `state_dir`, else `<app>/.spin`;
    /// an empty path means no state dir (stores in memory, no log files).
    pub state_dir: Option<PathBuf>,
    /// Where compiled components are cached (default `<state-dir>/cache`).
    pub cache_dir: Option<PathBuf>,
    /// `--variable name=value`.
    pub variables: BTreeMap<String, String>,
    /// `--env KEY=VALUE`: environment variables for every component.
    pub env: Vec<(String, String)>,
    /// Whether component output is echoed to the terminal (it always goes to the log files).
    pub echo_component_output: bool,
}

impl LoadOptions {
    /// Options for the manifest at `manifest`, everything else default.
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            runtime_config: None,
            state_dir: None,
            cache_dir: None,
            variables: BTreeMap::new(),
            env: Vec::new(),
            echo_component_output: true,
        }
    }
}

/// Why an application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The manifest or runtime config is wrong.
    #[error(transparent)]
    Config(#[from] LoadError),
    /// The configuration is fine but the application cannot run as described.
    #[error("{} cannot start; {} problem{}:\n{}", manifest.display(), problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Problems {
        /// The manifest.
        manifest: PathBuf,
        /// Everything in the way.
        problems: Vec<Problem>,
    },
    /// A component's build command failed.
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    /// The host itself failed (engine, threads, listener).
    #[error("{0:#}")]
    Host(#[from] anyhow::Error),
}

/// A loaded application, ready to serve.
pub struct App {
    pub(crate) manifest: Manifest,
    pub(crate) engine: Engine,
    components: BTreeMap<ComponentId, ComponentRuntime>,
    pub(crate) router: Router<ComponentId>,
    key_value: Arc<KeyValueStores>,
    sqlite: Arc<Databases>,
}

/// A component, compiled and linked, with what each of its instances gets.
pub(crate) struct ComponentRuntime {
    pub(crate) id: ComponentId,
    pub(crate) http: Option<ProxyPre<InstanceState>>,
    environment: Vec<(String, String)>,
    mounts: Vec<(PathBuf, String)>,
    stdout: ComponentOutput,
    stderr: ComponentOutput,
    key_value: KeyValueAccess,
    sqlite: SqliteAccess,
    variables: ComponentVariables,
    allowed_hosts: Arc<AllowedHosts>,
}

impl App {
    /// Loads the application described by `options`: reads and checks the manifest, resolves
    /// variables, opens stores, compiles (or loads cached) components and links them.
    pub async fn load(options: &LoadOptions) -> Result<Arc<Self>, StartError> {
        let manifest = Manifest::load(&options.manifest)?;
        let runtime_config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let variables = manifest.resolve_variables(&VariableSources::with_process_env(
            options.variables.clone(),
        ))?;
        manifest.check_sources()?;
        let state_dir = match &options.state_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(std::path::absolute(dir).map_err(anyhow::Error::from)?),
            None => Some(
                runtime_config
                    .state_dir
                    .clone()
                    .unwrap_or_else(|| manifest.dir.join(".spin")),
            ),
        };
        let log_dir = runtime_config
            .log_dir
            .clone()
            .or_else(|| state_dir.as_ref().map(|dir| dir.join("logs")));
        let cache_dir = options
            .cache_dir
            .clone()
            .or_else(|| state_dir.as_ref().map(|dir| dir.join("cache")))
            .unwrap_or_else(|| std::env::temp_dir().join("orderly-cache"));

        let mut problems = Vec::new();
        let key_value = KeyValueStores::open(
            &labels(&manifest, |c| &c.key_value_stores),
            &runtime_config,
            state_dir.as_deref(),
        );
        let key_value = keep_problems(key_value, &mut problems);
        let sqlite = Databases::open(
            &labels(&manifest, |c| &c.sqlite_databases),
            &runtime_config,
            state_dir.as_deref(),
        );
        let sqlite = keep_problems(sqlite, &mut problems);
        let (key_value, sqlite) = (Arc::new(key_value), Arc::new(sqlite));

        let router = build_router(&manifest, &mut problems);
        let engine = engine::new_engine()?;
        let linker = instance::linker(&engine)
            .map_err(|error| anyhow::anyhow!("cannot set up the host interfaces: {error:?}"))?;
        let compiled = compile_all(&engine, &manifest, ComponentCache::new(cache_dir)).await;
        let mut components = BTreeMap::new();
        for (id, compiled) in compiled {
            let spec = &manifest.components[&id];
            let component = match compiled {
                Ok(component) => component,
                Err(error) => {
                    problems.push(Problem::new(
                        format!("[component.{id}] source"),
                        format!("{error:#}"),
                        "rebuild the component for wasm32-wasip2",
                    ));
                    continue;
                }
            };
            let context = ComponentContext {
                linker: &linker,
                variables: &variables,
                key_value: &key_value,
                sqlite: &sqlite,
                log_dir: log_dir.as_deref(),
                options,
                serves_http: serves_http(&manifest, &id),
            };
            match context.runtime(spec, &component) {
                Ok(runtime) => {
                    components.insert(id, runtime);
                }
                Err(found) => problems.extend(found),
            }
        }
        if !problems.is_empty() {
            key_value.close();
            sqlite.close();
            return Err(StartError::Problems {
                manifest: manifest.manifest_path.clone(),
                problems,
            });
        }
        Ok(Arc::new(Self {
            manifest,
            engine,
            components,
            router,
            key_value,
            sqlite,
        }))
    }

    /// The application's name (`[application] name`).
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// A component by id.
    pub(crate) fn component(&self, id: &str) -> Option<&ComponentRuntime> {
        self.components.get(id)
    }

    /// A fresh store for one instance of `component`.
    pub(crate) fn new_store(
        self: &Arc<Self>,
        component: &ComponentRuntime,
    ) -> Store<InstanceState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&component.environment)
            .stdout(component.stdout.clone())
            .stderr(component.stderr.clone());
        for (host, guest) in &component.mounts {
            if let Err(error) = wasi.preopened_dir(host, guest, FsPerms::ReadOnly) {
                tracing::warn!(component = %component.id, %error, dir = %host.display(), "cannot mount folder");
            }
        }
        let state = InstanceState {
            table: wasmtime::component::ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: OutboundHttp::new(
                Arc::clone(self),
                component.id.clone(),
                Arc::clone(&component.allowed_hosts),
            ),
            key_value: component.key_value.clone(),
            sqlite: component.sqlite.clone(),
            variables: component.variables.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        // At every epoch tick a running guest yields through tokio's `yield_now`, which lets
        // the I/O driver and other tasks run before the guest resumes.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| {
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// The HTTP triggers, for the start-up listing: `(route, component)`.
    pub fn http_routes(&self) -> impl Iterator<Item = (&HttpRoute, &ComponentId)> {
        self.manifest
            .http_triggers
            .iter()
            .map(|trigger| (&trigger.route, &trigger.component))
    }

    /// Closes the stores and databases, checkpointing SQLite write-ahead logs. Call once every
    /// instance has finished.
    pub fn close(&self) {
        self.key_value.close();
        self.sqlite.close();
    }
}

/// The value, or (moving its problems to `problems`) an empty default, so loading goes on to
/// find every other problem too.
fn keep_problems<T: Default>(result: Result<T, Vec<Problem>>, problems: &mut Vec<Problem>) -> T {
    result.unwrap_or_else(|found| {
        problems.extend(found);
        T::default()
    })
}

/// Label → ids of the components that list it.
fn labels(
    manifest: &Manifest,
    field: impl Fn(&ComponentSpec) -> &Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for component in manifest.components.values() {
        for label in field(component) {
            labels
                .entry(label.clone())
                .or_default()
                .push(component.id.to_string());
        }
    }
    labels
}

fn serves_http(manifest: &Manifest, id: &ComponentId) -> bool {
    manifest.http_triggers.iter().any(|t| &t.component == id)
}

fn build_router(manifest: &Manifest, problems: &mut Vec<Problem>) -> Router<ComponentId> {
    let mut routes = Vec::new();
    for trigger in &manifest.http_triggers {
        let HttpRoute::Path(route) = &trigger.route else {
            continue;
        };
        if route.starts_with("/.well-known/spin/") {
            tracing::warn!(%route, component = %trigger.component, "routes under /.well-known/spin/ are reserved and will never be reached");
        }
        match RoutePattern::parse(route) {
            Ok(pattern) => routes.push((pattern, trigger.component.clone())),
            Err(error) => problems.push(Problem::new(
                format!("[[trigger.http]] for `{}`", trigger.component),
                error.to_string(),
                "write routes as /exact, /prefix/... or /with/:name",
            )),
        }
    }
    let (router, replaced) = Router::new(routes);
    for (pattern, component) in replaced {
        tracing::warn!(route = pattern.raw(), %component, "duplicate route: this trigger will never be used (a later one has the same route)");
    }
    router
}

/// Compiles (or loads from cache) every component, concurrently.
async fn compile_all(
    engine: &Engine,
    manifest: &Manifest,
    cache: ComponentCache,
) -> Vec<(ComponentId, anyhow::Result<Component>)> {
    let tasks: Vec<_> = manifest
        .components
        .values()
        .map(|spec| {
            let (engine, cache, id, source) = (
                engine.clone(),
                cache.clone(),
                spec.id.clone(),
                spec.source.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let loaded = cache.load(&engine, &source);
                if let Ok((_, how)) = &loaded {
                    let how = match how {
                        Loaded::Cached => "loaded from cache",
                        Loaded::Compiled => "compiled",
                    };
                    tracing::info!(component = %id, ms = started.elapsed().as_millis() as u64, "{how}");
                }
                (id, loaded.map(|(component, _)| component))
            })
        })
        .collect();
    let mut compiled = Vec::new();
    for task in tasks {
        match task.await {
            Ok(result) => compiled.push(result),
            Err(error) => tracing::error!(%error, "a compile task failed"),
        }
    }
    compiled
}

/// What building a [`ComponentRuntime`] needs from the application.
struct ComponentContext<'a> {
    linker: &'a Linker<InstanceState>,
    variables: &'a ResolvedVariables,
    key_value: &'a Arc<KeyValueStores>,
    sqlite: &'a Arc<Databases>,
    log_dir: Option<&'a std::path::Path>,
    options: &'a LoadOptions,
    serves_http: bool,
}

impl ComponentContext<'_> {
    fn runtime(
        &self,
        spec: &ComponentSpec,
        component: &Component,
    ) -> Result<ComponentRuntime, Vec<Problem>> {
        let id = &spec.id;
        let location = format!("[component.{id}]");
        let mut problems = Vec::new();
        let pre: Option<InstancePre<InstanceState>> = match self.linker.instantiate_pre(component) {
            Ok(pre) => Some(pre),
            Err(error) => {
                problems.push(Problem::new(
                    format!("{location} source"),
                    format!("cannot link the component: {error:#}"),
                    "use only the interfaces orderly up provides (WASI 0.2, wasi:http, Spin key-value, SQLite, variables), or run with real Spin",
                ));
                None
            }
        };
        let http = match (&pre, self.serves_http) {
            (Some(pre), true) => match ProxyPre::new(pre.clone()) {
                Ok(proxy) => Some(proxy),
                Err(error) => {
                    problems.push(Problem::new(
                        format!("{location} source"),
                        format!("an HTTP trigger runs it, but it does not export wasi:http/incoming-handler@0.2.x: {error:#}"),
                        "build it as an HTTP component (#[http_component] in spin-sdk)",
                    ));
                    None
                }
            },
            _ => None,
        };
        let hosts: Vec<String> = spec
            .allowed_outbound_hosts
            .iter()
            .map(|template| self.variables.render(template))
            .collect();
        let allowed_hosts = AllowedHosts::parse(&hosts).unwrap_or_else(|error| {
            problems.push(Problem::new(
                format!("{location} allowed_outbound_hosts"),
                error.to_string(),
                "write entries as scheme://host[:port], e.g. \"https://api.example.com\" or \"http://orders.spin.internal\"",
            ));
            AllowedHosts::default()
        });
        let output = |stream: &str, terminal: Terminal| {
            let terminal = if self.options.echo_component_output {
                terminal
            } else {
                Terminal::Quiet
            };
            ComponentOutput::new(id.as_str(), stream, self.log_dir, terminal)
        };
        let (stdout, stderr) = match (
            output("stdout", Terminal::Stdout),
            output("stderr", Terminal::Stderr),
        ) {
            (Ok(stdout), Ok(stderr)) => (stdout, stderr),
            (Err(error), _) | (_, Err(error)) => {
                problems.push(Problem::new(
                    "--state-dir",
                    format!("cannot create the log files for `{id}`: {error}"),
                    "make the state dir writable, or pass another --state-dir",
                ));
                return Err(problems);
            }
        };
        let (Some(_), true) = (pre, problems.is_empty()) else {
            return Err(problems);
        };
        let mut environment: Vec<(String, String)> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        environment.extend(self.options.env.iter().cloned());
        Ok(ComponentRuntime {
            id: id.clone(),
            http,
            environment,
            mounts: spec
                .files
                .iter()
                .map(|mount| (mount.source.clone(), mount.destination.clone()))
                .collect(),
            stdout,
            stderr,
            key_value: KeyValueAccess::new(Arc::clone(self.key_value), &spec.key_value_stores),
            sqlite: SqliteAccess::new(Arc::clone(self.sqlite), &spec.sqlite_databases),
            variables: ComponentVariables::new(
                id.as_str(),
                spec.variables
                    .iter()
                    .map(|(name, template)| (name.to_string(), self.variables.render(template)))
                    .collect(),
            ),
            allowed_hosts: Arc::new(allowed_hosts),
        })
    }
}
