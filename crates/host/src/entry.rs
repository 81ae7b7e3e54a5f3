//! The entry point: what `orderly up` does with an application. Loading plans every trigger
//! from the manifest first, then loads the app (capabilities and components), then binds each
//! trigger to it; every problem found on the way is reported at once. Starting chooses who
//! serves Redis, starts the engine's epoch ticker, and starts the triggers.

use crate::app::{App, AppConfig};
use crate::services::clock::{HostClock, SystemClock};
use crate::services::metrics::{self, HostMetrics};
use crate::services::redis::{RedisMode, RedisServers};
use crate::services::repeated_log::RepeatedLog;
use crate::settings::HostSettings;
use crate::trigger::cron::{CronPlan, CronTrigger};
use crate::trigger::http::{HttpPlan, HttpTrigger};
use crate::trigger::redis::{RedisPlan, RedisStart, RedisTrigger};
use crate::trigger::{Binding, cron, redis};
use orderly_manifest::{
    App as Manifest, ComponentId, ConfigProblem, HttpRoute, LoadError, RuntimeConfig,
    VariableSources,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

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
    /// `--metrics-listen`: where the host's own Prometheus metrics are served (`GET
    /// /metrics`); `None`, the default, serves none.
    pub metrics_listen: Option<SocketAddr>,
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
            metrics_listen: None,
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

/// An application loaded and its triggers bound to it, ready to start.
pub struct LoadedApp {
    app: Arc<App>,
    http: Arc<HttpTrigger>,
    redis: RedisTrigger,
    cron: CronTrigger,
    /// Every Redis address the application configures.
    redis_addresses: Vec<crate::services::redis::RedisAddress>,
    routes: Vec<(HttpRoute, ComponentId)>,
    schedules: Vec<(String, ComponentId)>,
    servers: Arc<RedisServers>,
    settings: HostSettings,
    clock: Arc<dyn HostClock>,
    metrics: Arc<HostMetrics>,
    metrics_listen: Option<SocketAddr>,
}

impl LoadedApp {
    /// Loads the application described by `options`: reads and checks the manifest, resolves
    /// variables, plans every trigger, opens the capabilities, compiles (or loads cached)
    /// components and links them, and checks each component exports what its triggers call.
    /// Nothing is started and nothing reaches the network. Every problem found is reported at
    /// once.
    pub async fn load(options: &LoadOptions) -> Result<Self, StartError> {
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
        // Every trigger plans its state from the manifest.
        let http = HttpPlan::new(&manifest, &mut problems);
        let redis = RedisPlan::new(&manifest, &variables, &mut problems);
        let cron = CronPlan::new(&manifest, &variables, &mut problems);
        // Then the app: capabilities and components.
        let servers = Arc::new(RedisServers::new(
            options.redis_mode,
            &options.settings.redis,
        ));
        let app = App::load(
            &AppConfig {
                manifest: &manifest,
                runtime_config: &runtime_config,
                variables: &variables,
                state_dir: folders.state.as_deref(),
                log_dir: folders.logs.as_deref(),
                cache_dir: folders.cache,
                env: &options.env,
                echo_output: options.echo_component_output,
                redis: &servers,
                settings: &options.settings,
                clock: &options.clock,
                trigger_interfaces: &[redis::add_to_linker, cron::add_to_linker],
            },
            &mut problems,
        )
        .await?;
        let app = Arc::new(app);
        // Then each trigger over the app.
        let (routes, schedules) = (http.routes().to_vec(), cron.schedules().to_vec());
        let redis_addresses = redis.addresses().to_vec();
        let metrics = Arc::new(HostMetrics::new());
        let binding = Binding {
            app: &app,
            settings: &options.settings,
            clock: &options.clock,
            metrics: &metrics,
            log: &Arc::new(RepeatedLog::new(
                options.settings.repeated_log_interval,
                Arc::clone(&options.clock),
            )),
        };
        let http = http.bind(&binding, &mut problems);
        let redis = redis.bind(&binding, &mut problems);
        let cron = cron.bind(&binding, &mut problems);
        if !problems.is_empty() {
            app.close();
            return Err(StartError::Problems {
                manifest: manifest.manifest_path.clone(),
                problems,
            });
        }
        Ok(Self {
            app,
            http,
            redis,
            cron,
            redis_addresses,
            routes,
            schedules,
            servers,
            settings: options.settings.clone(),
            clock: Arc::clone(&options.clock),
            metrics,
            metrics_listen: options.metrics_listen,
        })
    }
}

/// A running application: its triggers (HTTP, Redis, cron) at work until
/// [`RunningApp::shutdown`].
pub struct RunningApp {
    app: Arc<App>,
    address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<()>,
    triggers: Vec<tokio::task::JoinHandle<()>>,
    routes: Vec<(HttpRoute, ComponentId)>,
    channels: Vec<(String, String, ComponentId, bool)>,
    schedules: Vec<(String, ComponentId)>,
}

impl RunningApp {
    /// Starts `loaded`: chooses who serves each Redis address (probing it in
    /// [`RedisMode::Auto`]), starts the epoch ticker, then the triggers (and the metrics
    /// endpoint, if asked for); the HTTP trigger listens on `listen` (port 0 picks a free
    /// port).
    pub async fn start(loaded: LoadedApp, listen: SocketAddr) -> Result<Self, StartError> {
        let listener = bind(listen, "--listen").await?;
        let address = listener.local_addr().map_err(anyhow::Error::from)?;
        let metrics_listener = match loaded.metrics_listen {
            Some(listen) => Some(bind(listen, "--metrics-listen").await?),
            None => None,
        };
        let metrics_address = match &metrics_listener {
            Some(listener) => Some(listener.local_addr().map_err(anyhow::Error::from)?),
            None => None,
        };
        let LoadedApp {
            app,
            http,
            redis,
            cron,
            redis_addresses,
            routes,
            schedules,
            servers,
            settings,
            clock,
            metrics,
            metrics_listen: _,
        } = loaded;
        servers.choose(&redis_addresses).await;
        app.start_epoch_ticker();
        let channels = redis
            .subscriptions()
            .iter()
            .map(|s| {
                (
                    s.address.url.clone(),
                    s.channel.clone(),
                    s.component.clone(),
                    servers.is_embedded(&s.address),
                )
            })
            .collect();
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut http_stop = stopped.clone();
        let drain = settings.drain_timeout;
        let redis = redis
            .start(
                RedisStart {
                    servers: &servers,
                    settings: &settings.redis,
                    clock: &clock,
                    drain,
                },
                stopped.clone(),
            )
            .await;
        let mut triggers = vec![
            redis,
            tokio::spawn(http.run(
                listener,
                async move {
                    let _ = http_stop.changed().await;
                },
                drain,
            )),
            tokio::spawn(cron.run(clock, stopped.clone(), drain)),
        ];
        if let Some(listener) = metrics_listener {
            triggers.push(tokio::spawn(metrics::serve(listener, metrics, stopped)));
        }
        Ok(Self {
            app,
            address,
            metrics_address,
            stop,
            triggers,
            routes,
            channels,
            schedules,
        })
    }

    /// The address the HTTP trigger listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address the host's metrics are served on (`--metrics-listen`), if any.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// The HTTP triggers, for the start-up listing: `(route, component)`.
    pub fn http_routes(&self) -> impl Iterator<Item = (&HttpRoute, &ComponentId)> {
        self.routes
            .iter()
            .map(|(route, component)| (route, component))
    }

    /// The Redis subscriptions, for the start-up listing: `(address, channel, component)`, with
    /// whether the embedded broker serves the address.
    pub fn redis_channels(&self) -> impl Iterator<Item = (&str, &str, &ComponentId, bool)> {
        self.channels
            .iter()
            .map(|(address, channel, component, embedded)| {
                (address.as_str(), channel.as_str(), component, *embedded)
            })
    }

    /// The cron jobs, for the start-up listing: `(expression, component)`.
    pub fn cron_schedules(&self) -> impl Iterator<Item = (&str, &ComponentId)> {
        self.schedules
            .iter()
            .map(|(expression, component)| (expression.as_str(), component))
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops the triggers (no new requests, messages or cron runs), lets what is in flight
    /// finish (up to [`HostSettings::drain_timeout`]), then closes the stores and databases.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        for trigger in self.triggers {
            if let Err(error) = trigger.await {
                tracing::error!(%error, "a trigger task failed");
            }
        }
        self.app.close();
        tracing::info!("stopped");
    }
}

/// A listener on `address`, given by `flag`.
async fn bind(address: SocketAddr, flag: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(address).await.map_err(|error| {
        StartError::Host(anyhow::anyhow!(
            "cannot listen on {address}: {error}\n    fix: stop whatever uses that port, or pass {flag} 127.0.0.1:PORT"
        ))
    })
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
