//! `orderly up` as a separate process, for tests that need more than one host.

use crate::HttpClient;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `orderly up` process, stopped on drop.
pub struct HostProcess {
    child: Child,
    /// A client for its HTTP trigger.
    pub client: HttpClient,
}

impl HostProcess {
    /// Runs `orderly up` (the `binary`: pass `env!("CARGO_BIN_EXE_orderly-under-test")`) on
    /// the manifest in `dir` with a state dir of its own (`state`) and `extra` arguments;
    /// returns once it answers.
    pub async fn start(binary: &str, dir: &Path, state: &str, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .current_dir(dir)
            .args(["up", "--quiet", "--listen", &listen, "--state-dir", state])
            .args(extra)
            .env("ORDERLY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("orderly-under-test runs");
        let mut process = Self {
            child,
            client: HttpClient::new(format!("http://{listen}")),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !process.client.answers("/.well-known/spin/health").await {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("orderly up exited ({status}) before answering on {listen}");
            }
            assert!(
                Instant::now() < deadline,
                "orderly up did not start on {listen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
