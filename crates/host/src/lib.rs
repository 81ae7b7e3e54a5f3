//! `orderly up`: a Spin-compatible host on wasmtime. It reads a `spin.toml`, compiles the
//! components (caching the result), opens their key-value stores and SQLite databases, and runs
//! the HTTP, Redis and cron triggers, each request, message or run in a fresh instance, as Spin
//! does.

mod app;
mod build;
mod capability;
mod component;
mod engine;
mod instance;
mod services;
mod settings;
mod stdio;
mod trigger;

pub use app::{App, LoadOptions, StartError};
pub use build::{BuildError, build_all};
pub use services::clock::{HostClock, SystemClock};
pub use services::redis::RedisMode;
pub use settings::{Backoff, DEFAULT_REDIS_CONCURRENCY, HostSettings, HttpSettings, RedisSettings};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A running application: its triggers (HTTP, Redis, cron) at work until
/// [`RunningApp::shutdown`].
pub struct RunningApp {
    app: Arc<App>,
    address: SocketAddr,
    stop: tokio::sync::watch::Sender<()>,
    triggers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningApp {
    /// Starts the triggers; the HTTP trigger listens on `listen` (port 0 picks a free port).
    pub async fn start(app: Arc<App>, listen: SocketAddr) -> Result<Self, StartError> {
        let listener = TcpListener::bind(listen).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot listen on {listen}: {error}\n    fix: stop whatever uses that port, or pass --listen 127.0.0.1:PORT"
            )
        })?;
        let address = listener.local_addr().map_err(anyhow::Error::from)?;
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut http_stop = stopped.clone();
        let drain = app.settings().drain_timeout;
        let redis = trigger::redis::start(Arc::clone(&app), stopped.clone(), drain).await;
        let triggers = vec![
            redis,
            tokio::spawn(trigger::http::serve(
                Arc::clone(&app),
                listener,
                async move {
                    let _ = http_stop.changed().await;
                },
                drain,
            )),
            tokio::spawn(trigger::cron::run(Arc::clone(&app), stopped, drain)),
        ];
        Ok(Self {
            app,
            address,
            stop,
            triggers,
        })
    }

    /// The address the HTTP trigger listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The application.
    pub fn app(&self) -> &Arc<App> {
        &self.app
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
