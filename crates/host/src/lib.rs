//! `orderly up`: a Spin-compatible host on wasmtime. It reads a `spin.toml`, compiles the
//! components (caching the result), opens their key-value stores and SQLite databases, and
//! serves the HTTP trigger, each request in a fresh instance, as Spin does.

mod allowed_hosts;
mod app;
mod bindings;
mod build;
mod engine;
mod grant;
mod http_trigger;
mod instance;
mod key_value;
mod outbound_http;
mod sqlite;
mod stdio;
mod variables;

pub use app::{App, LoadOptions, StartError};
pub use build::{BuildError, build_all};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running application: the HTTP trigger listening, until [`RunningApp::shutdown`].
pub struct RunningApp {
    app: Arc<App>,
    address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl RunningApp {
    /// Starts serving `app` on `listen` (port 0 picks a free port).
    pub async fn start(app: Arc<App>, listen: SocketAddr) -> Result<Self, StartError> {
        let listener = TcpListener::bind(listen).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot listen on {listen}: {error}\n    fix: stop whatever uses that port, or pass --listen 127.0.0.1:PORT"
            )
        })?;
        let address = listener.local_addr().map_err(anyhow::Error::from)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http_trigger::serve(
            Arc::clone(&app),
            listener,
            async {
                let _ = stopped.await;
            },
            DRAIN_TIMEOUT,
        ));
        Ok(Self {
            app,
            address,
            stop,
            server,
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

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops accepting connections, lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]),
    /// then closes the stores and databases.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.server.await {
            tracing::error!(%error, "the HTTP server task failed");
        }
        self.app.close();
        tracing::info!("stopped");
    }
}
