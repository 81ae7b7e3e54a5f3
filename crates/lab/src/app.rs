//! The repository's app (`spin.toml`) on a fresh `orderly up` of its own: components built,
//! an empty state dir, the app pointed at itself, its Redis address served by the embedded
//! broker or a `redis-server` of its own, and the variables an experiment adds; it can be
//! killed (SIGKILL) and started again on the same state dir, address and Redis.

use crate::app_http::Http;
use crate::pipeline::{app_flags, repository};
use crate::process::{self, Orderly, Server};
use anyhow::Context as _;
use redis_runner::RedisServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Who serves the app's Redis address (the doorbells that wake the workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisChoice {
    /// `orderly up`'s in-process broker.
    Embedded,
    /// A `redis-server` the lab starts.
    Server,
}

impl RedisChoice {
    /// Starts what serves Redis: a `redis-server` for [`RedisChoice::Server`], nothing else.
    pub fn start(self) -> anyhow::Result<Option<RedisServer>> {
        match self {
            Self::Embedded => Ok(None),
            Self::Server => RedisServer::start().map(Some).map_err(|error| {
                anyhow::anyhow!(
                    "cannot run redis-server ({error}); install it: apt-get install redis-server"
                )
            }),
        }
    }
}

/// How long `orderly up` may take to stop after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Whether this process has built the app's components: `experiment all` starts an app per
/// experiment (two for `fleet`), and the sources do not change in between.
static BUILT: Mutex<bool> = Mutex::new(false);

/// Builds the components of `manifest` the first time this process asks.
fn build_once(orderly: &Orderly, manifest: &Path) -> anyhow::Result<()> {
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !*built {
        eprintln!("building the components of {}", manifest.display());
        orderly.build(manifest)?;
        *built = true;
    }
    Ok(())
}

/// The app running for one experiment.
pub struct RunningApp {
    server: Server,
    launch: Launch,
    state: tempfile::TempDir,
    redis: Option<RedisServer>,
    /// A client of it.
    pub http: Http,
}

/// What `orderly up` was started with, to start it again the same way.
struct Launch {
    /// The `orderly` binary.
    orderly: Orderly,
    /// The app's `spin.toml`.
    manifest: PathBuf,
    /// Where it listens.
    address: SocketAddr,
    /// Its `orderly up` flags (Redis, variables).
    flags: Vec<String>,
}

impl Launch {
    /// Starts `orderly up` on `state_dir` and waits until it answers.
    async fn start(&self, state_dir: &Path) -> anyhow::Result<Server> {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Server::orderly_on(
            &self.orderly,
            &self.manifest,
            state_dir,
            self.address,
            &flags,
        )
        .await
    }
}

impl RunningApp {
    /// Builds the components and starts `orderly up` on a free port with `redis`, the services
    /// reached over its own address, and `variables` (`name=value`) on top.
    pub async fn start(redis: RedisChoice, variables: &[String]) -> anyhow::Result<Self> {
        let redis = redis.start()?;
        let redis_url = redis.as_ref().map(RedisServer::url);
        let mut app = Self::start_on(redis_url.as_deref(), &[], variables).await?;
        app.redis = redis;
        Ok(app)
    }

    /// Builds the components and starts `orderly up` on a free port with its Redis address
    /// served by `redis_url` (the embedded broker when `None`; the caller keeps that server
    /// running), `flags` added (e.g. a runtime config), and `variables` on top.
    pub async fn start_on(
        redis_url: Option<&str>,
        flags: &[String],
        variables: &[String],
    ) -> anyhow::Result<Self> {
        let manifest = repository().join("spin.toml");
        let orderly = Orderly::locate()?;
        build_once(&orderly, &manifest)?;
        let state = tempfile::tempdir()?;
        let address = process::free_address()?;
        let mut all_flags = app_flags(address, redis_url);
        all_flags.extend_from_slice(flags);
        let origin = format!("services_origin=http://{address}");
        for variable in std::iter::once(&origin).chain(variables) {
            all_flags.extend(["--variable".to_owned(), variable.clone()]);
        }
        let launch = Launch {
            orderly,
            manifest,
            address,
            flags: all_flags,
        };
        let server = launch.start(state.path()).await?;
        Ok(Self {
            server,
            launch,
            state,
            redis: None,
            http: Http::new(address),
        })
    }

    /// Kills the app's `redis-server` (its clients see their connections drop); an error when
    /// the app uses the embedded broker.
    pub fn stop_redis(&mut self) -> anyhow::Result<()> {
        self.redis_server()?.stop();
        Ok(())
    }

    /// Starts the app's `redis-server` again on the same port if it was stopped.
    pub fn start_redis(&mut self) -> anyhow::Result<()> {
        Ok(self.redis_server()?.resume()?)
    }

    fn redis_server(&mut self) -> anyhow::Result<&mut RedisServer> {
        self.redis
            .as_mut()
            .context("the app uses the embedded broker: there is no redis-server to stop or start")
    }

    /// The URL of the `redis-server` serving the app's Redis address (`None` for the embedded
    /// broker, which lives inside `orderly up`).
    pub fn redis_url(&self) -> Option<String> {
        self.redis.as_ref().map(RedisServer::url)
    }

    /// Kills `orderly up` with SIGKILL, as a crash would; how it ended. Its state dir, its
    /// Redis and its address stay for [`RunningApp::restart`].
    pub async fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.server.kill().await
    }

    /// Starts `orderly up` again (after [`RunningApp::kill`]) on the same state dir, address,
    /// Redis and variables, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.server = self.launch.start(self.state.path()).await?;
        Ok(())
    }

    /// Stops `orderly up` (SIGTERM, then SIGKILL after a grace period); with `keep`, leaves its
    /// state dir in place and prints where.
    pub async fn stop(self, keep: bool) {
        self.server.terminate(SHUTDOWN_GRACE).await;
        drop(self.redis);
        if keep {
            println!("\nState dir kept: {}", self.state.keep().display());
        }
    }
}
