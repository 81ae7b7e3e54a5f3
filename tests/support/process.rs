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
        Self::start_on(binary, dir, state, crate::free_address(), extra).await
    }

    /// Runs the repository's `spin.toml` (written into `dir`, see [`crate::real_manifest`])
    /// like [`HostProcess::start`], wired to itself as [`crate::TestApp::start_real_in`] is:
    /// `app_url` and the validator's URL name its own port, the embedded broker serves
    /// Redis (private to this process), and nothing answers where the fulfilment services are.
    pub async fn start_real(binary: &str, dir: &Path, state: &str, extra: &[&str]) -> Self {
        std::fs::write(dir.join("spin.toml"), crate::real_manifest()).expect("write manifest");
        let listen = crate::free_address();
        let origin = format!("http://{listen}");
        let unused_services = format!("http://{}", crate::free_address());
        let mut variables = vec![
            format!("app_url={origin}"),
            format!("validator_origin={origin}"),
            format!("validator_url={origin}/external/validate"),
        ];
        variables.extend(
            crate::services_variables(&unused_services)
                .into_iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
        let mut arguments: Vec<&str> = vec!["--redis", "embedded"];
        for variable in &variables {
            arguments.extend(["--variable", variable]);
        }
        arguments.extend_from_slice(extra);
        Self::start_on(binary, dir, state, listen, &arguments).await
    }

    /// Kills the process at once (SIGKILL): nothing is flushed or closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn start_on(
        binary: &str,
        dir: &Path,
        state: &str,
        listen: std::net::SocketAddr,
        extra: &[&str],
    ) -> Self {
        let listen = listen.to_string();
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
