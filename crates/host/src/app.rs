//! A loaded application: manifest validated, variables resolved, stores opened, components
//! compiled and linked, triggers resolved.

use crate::capability::{Capabilities, InstanceContext, OpenContext};
use crate::component::{ComponentContext, ComponentRuntime, Triggers, compile_all};
use crate::engine::{self, ComponentCache};
use crate::instance::{self, InstanceState};
use crate::services::clock::{HostClock, SystemClock};
use crate::services::redis::{RedisAddress, RedisMode, RedisServers};
use crate::settings::HostSettings;
use crate::trigger::cron::{CronJob, CronSchedule};
use crate::trigger::http::routes::{RoutePattern, Router};
use crate::trigger::redis::Subscription;
use orderly_manifest::{
    App as Manifest, ComponentId, ConfigProblem, HttpRoute, LoadError, ResolvedVariables,
    RuntimeConfig, VariableSources,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::task::TaskTracker;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

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
    /// Who serves the Redis triggers' addresses (`--redis`).
    pub redis_mode: RedisMode,
    /// The host's policies (timeouts, backoffs, queue sizes, `--redis-concurrency`).
    pub settings: HostSettings,
    /// Where the host reads time.
    pub clock: Arc<dyn HostClock>,
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
            redis_mode: RedisMode::default(),
            settings: HostSettings::default(),
            clock: Arc::new(SystemClock),
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
        problems: Vec<ConfigProblem>,
    },
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
    redis_subscriptions: Vec<Subscription>,
    redis_concurrency: usize,
    cron_jobs: Vec<CronJob>,
    redis: Arc<RedisServers>,
    capabilities: Capabilities,
    /// The instances serving HTTP requests: one may still run (and write) after its response
    /// went out, so shutdown waits for them before closing the stores.
    pub(crate) http_instances: TaskTracker,
    settings: HostSettings,
    clock: Arc<dyn HostClock>,
}

/// Where state, logs and compiled components live.
struct Folders {
    state: Option<PathBuf>,
    logs: Option<PathBuf>,
    cache: PathBuf,
}

impl Folders {
    fn resolve(
        options: &LoadOptions,
        manifest: &Manifest,
        config: &RuntimeConfig,
    ) -> anyhow::Result<Self> {
        let state = match &options.state_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(std::path::absolute(dir)?),
            None => Some(
                config
                    .state_dir
                    .clone()
                    .unwrap_or_else(|| manifest.dir.join(".spin")),
            ),
        };
        let logs = config
            .log_dir
            .clone()
            .or_else(|| state.as_ref().map(|dir| dir.join("logs")));
        let cache = options
            .cache_dir
            .clone()
            .or_else(|| state.as_ref().map(|dir| dir.join("cache")))
            .unwrap_or_else(user_cache_dir);
        Ok(Self { state, logs, cache })
    }
}

/// Without a state dir, compiled components go to the user's own cache folder (never a shared
/// temporary folder, whose files another user could plant).
fn user_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map_or_else(|| PathBuf::from(".spin-cache"), |dir| dir.join("orderly"))
}

impl App {
    /// Loads the application described by `options`: reads and checks the manifest, resolves
    /// variables, opens stores, decides who serves Redis, compiles (or loads cached)
    /// components and links them. Every problem found is reported at once.
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
        let folders = Folders::resolve(options, &manifest, &runtime_config)?;

        let mut problems = Vec::new();
        let redis = Arc::new(RedisServers::new(
            options.redis_mode,
            &options.settings.redis,
        ));
        let capabilities = Capabilities::open(
            &OpenContext {
                manifest: &manifest,
                runtime_config: &runtime_config,
                state_dir: folders.state.as_deref(),
                redis: &redis,
                settings: &options.settings,
            },
            &mut problems,
        );
        let router = build_router(&manifest, &mut problems);
        let (redis_subscriptions, redis_addresses) =
            redis_subscriptions(&manifest, &variables, &mut problems);
        let cron_jobs = cron_jobs(&manifest, &mut problems);
        redis.choose(&redis_addresses).await;

        let engine = engine::new_engine()?;
        let linker = instance::linker(
            &engine,
            &[
                crate::trigger::redis::add_to_linker,
                crate::trigger::cron::add_to_linker,
            ],
        )
        .map_err(|error| anyhow::anyhow!("cannot set up the host interfaces: {error:?}"))?;
        let context = ComponentContext {
            linker: &linker,
            variables: &variables,
            capabilities: &capabilities,
            log_dir: folders.logs.as_deref(),
            echo_output: options.echo_component_output,
            extra_env: &options.env,
        };
        let mut components = BTreeMap::new();
        for (id, compiled) in compile_all(
            &engine,
            &manifest,
            ComponentCache::new(folders.cache),
            &options.clock,
        )
        .await
        {
            let component = match compiled {
                Ok(component) => component,
                Err(error) => {
                    problems.push(ConfigProblem::new(
                        format!("[component.{id}] source"),
                        format!("{error:#}"),
                        "rebuild the component for wasm32-wasip2",
                    ));
                    continue;
                }
            };
            let triggers = Triggers::of(&manifest, &id);
            match context.runtime(&manifest.components[&id], &component, triggers) {
                Ok(runtime) => {
                    components.insert(id, runtime);
                }
                Err(found) => problems.extend(found),
            }
        }
        if !problems.is_empty() {
            capabilities.close();
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
            redis_subscriptions,
            redis_concurrency: options
                .settings
                .redis
                .concurrency
                .clamp(1, engine::MAX_INSTANCES as usize),
            cron_jobs,
            redis,
            capabilities,
            http_instances: TaskTracker::new(),
            settings: options.settings.clone(),
            clock: Arc::clone(&options.clock),
        }))
    }

    /// The host's settings.
    pub(crate) fn settings(&self) -> &HostSettings {
        &self.settings
    }

    /// Where the host reads time.
    pub(crate) fn clock(&self) -> &Arc<dyn HostClock> {
        &self.clock
    }

    /// A component by id.
    pub(crate) fn component(&self, id: &str) -> Option<&ComponentRuntime> {
        self.components.get(id)
    }

    /// The Redis trigger's subscriptions.
    pub(crate) fn redis_subscriptions(&self) -> &[Subscription] {
        &self.redis_subscriptions
    }

    /// How many Redis messages may be handled at once.
    pub(crate) fn redis_concurrency(&self) -> usize {
        self.redis_concurrency
    }

    /// Who serves Redis.
    pub(crate) fn redis_servers(&self) -> &Arc<RedisServers> {
        &self.redis
    }

    /// The cron trigger's jobs.
    pub(crate) fn cron_jobs(&self) -> &[CronJob] {
        &self.cron_jobs
    }

    /// A fresh store for one instance of `component`.
    pub(crate) fn new_store(
        &self,
        component: &ComponentRuntime,
        context: &InstanceContext,
    ) -> Store<InstanceState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&component.environment)
            .stdout(component.stdout.clone())
            .stderr(component.stderr.clone());
        let mut wasi = wasi.build();
        wasi.filesystem().clone_from(&component.mounts);
        let state = InstanceState {
            table: wasmtime::component::ResourceTable::new(),
            wasi,
            capabilities: component.grants.instance(context),
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

    /// The Redis subscriptions, for the start-up listing: `(address, channel, component)`, with
    /// whether the embedded broker serves the address.
    pub fn redis_channels(&self) -> impl Iterator<Item = (&str, &str, &ComponentId, bool)> {
        self.redis_subscriptions.iter().map(|s| {
            (
                s.address.url.as_str(),
                s.channel.as_str(),
                &s.component,
                self.redis.is_embedded(&s.address),
            )
        })
    }

    /// The cron jobs, for the start-up listing: `(expression, component)`.
    pub fn cron_schedules(&self) -> impl Iterator<Item = (&str, &ComponentId)> {
        self.manifest
            .cron_triggers
            .iter()
            .map(|trigger| (trigger.cron_expression.as_str(), &trigger.component))
    }

    /// Closes the stores and databases, checkpointing SQLite write-ahead logs. Call once every
    /// instance has finished.
    pub fn close(&self) {
        self.capabilities.close();
    }
}

fn build_router(manifest: &Manifest, problems: &mut Vec<ConfigProblem>) -> Router<ComponentId> {
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
            Err(error) => problems.push(ConfigProblem::new(
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

/// Resolves each `[[trigger.redis]]` (address and channel templates), and lists every address
/// the application configures: the triggers' and `[application.trigger.redis]`'s.
fn redis_subscriptions(
    manifest: &Manifest,
    variables: &ResolvedVariables,
    problems: &mut Vec<ConfigProblem>,
) -> (Vec<Subscription>, Vec<RedisAddress>) {
    let parse = |template: &orderly_manifest::Template,
                 location: String,
                 problems: &mut Vec<ConfigProblem>| {
        let url = variables.render(template);
        let parsed = RedisAddress::parse(&url);
        if parsed.is_none() {
            problems.push(ConfigProblem::new(
                    location,
                    format!("{url:?} is not a Redis address"),
                    "write it as redis://host:port, e.g. redis://127.0.0.1:6379 (rediss://, Redis over TLS, is not supported)",
                ));
        }
        parsed
    };
    let app_address = manifest.redis_address.as_ref().and_then(|template| {
        parse(
            template,
            "[application.trigger.redis] address".into(),
            problems,
        )
    });
    let mut addresses: Vec<RedisAddress> = app_address.iter().cloned().collect();
    let mut subscriptions = Vec::new();
    for trigger in &manifest.redis_triggers {
        let location = format!("[[trigger.redis]] for `{}`", trigger.component);
        let address = match &trigger.address {
            Some(template) => parse(template, format!("{location} address"), problems),
            None if app_address.is_some() => app_address.clone(),
            None => {
                problems.push(ConfigProblem::new(
                    location.clone(),
                    "has no Redis address".to_owned(),
                    "set address on the trigger, or [application.trigger.redis] address = \"redis://127.0.0.1:6379\"",
                ));
                None
            }
        };
        if let Some(address) = address {
            addresses.push(address.clone());
            subscriptions.push(Subscription {
                address,
                channel: variables.render(&trigger.channel),
                component: trigger.component.clone(),
            });
        }
    }
    (subscriptions, addresses)
}

fn cron_jobs(manifest: &Manifest, problems: &mut Vec<ConfigProblem>) -> Vec<CronJob> {
    manifest
        .cron_triggers
        .iter()
        .filter_map(
            |trigger| match trigger.cron_expression.parse::<CronSchedule>() {
                Ok(schedule) => Some(CronJob {
                    component: trigger.component.clone(),
                    schedule,
                }),
                Err(reason) => {
                    problems.push(ConfigProblem::new(
                    format!("[[trigger.cron]] for `{}` cron_expression", trigger.component),
                    reason,
                    "use six fields, seconds first: sec min hour day-of-month month day-of-week",
                ));
                    None
                }
            },
        )
        .collect()
}
