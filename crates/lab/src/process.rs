//! Servers under test as separate processes: the `orderly` binary and the native baseline.

use crate::usage::ProcessUsage;
use anyhow::{Context as _, bail};
use rustix::process::{Pid, Signal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The `orderly` binary built beside this one.
pub struct Orderly {
    binary: PathBuf,
}

impl Orderly {
    /// Finds `orderly`: the running binary (the lab runs inside it, `orderly lab`), or one
    /// next to it.
    pub fn locate() -> anyhow::Result<Self> {
        let running = std::env::current_exe()?;
        let binary = if running.file_stem().is_some_and(|stem| stem == "orderly") {
            running
        } else {
            running.with_file_name("orderly")
        };
        if !binary.is_file() {
            bail!(
                "{} not found\n    fix: build it with the same profile first: cargo build --release -p orderly",
                binary.display()
            );
        }
        Ok(Self { binary })
    }

    /// `orderly build -f manifest`.
    pub fn build(&self, manifest: &Path) -> anyhow::Result<()> {
        let status = std::process::Command::new(&self.binary)
            .args(["build", "-f"])
            .arg(manifest)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("building {} failed", manifest.display());
        }
        Ok(())
    }
}

/// A server process and the address it listens on.
pub struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    /// Starts the native baseline and waits until it answers.
    pub async fn native() -> anyhow::Result<Self> {
        let address = free_address()?;
        let orderly = Orderly::locate()?;
        let child = Command::new(&orderly.binary)
            .args(["lab", "native-server", "--listen", &address.to_string()])
            .kill_on_drop(true)
            .spawn()?;
        let server = Self { child, address };
        wait_ready(address, Duration::from_secs(30)).await?;
        Ok(server)
    }

    /// Starts `orderly up` on `manifest` with `state_dir` (and `extra` flags) and waits until it
    /// answers.
    pub async fn orderly(
        orderly: &Orderly,
        manifest: &Path,
        state_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::orderly_on(orderly, manifest, state_dir, free_address()?, extra).await
    }

    /// Starts `orderly up` like [`Server::orderly`], listening on `address` (which the flags in
    /// `extra` may need to name, e.g. in application variables).
    pub async fn orderly_on(
        orderly: &Orderly,
        manifest: &Path,
        state_dir: &Path,
        address: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Ok(
            Self::start_orderly(orderly, manifest, state_dir, address, extra)
                .await?
                .0,
        )
    }

    async fn start_orderly(
        orderly: &Orderly,
        manifest: &Path,
        state_dir: &Path,
        address: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<(Self, Duration)> {
        let started = Instant::now();
        let child = Command::new(&orderly.binary)
            .args(["up", "--quiet", "-f"])
            .arg(manifest)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", &address.to_string()])
            .args(extra)
            .env("ORDERLY_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start orderly")?;
        let server = Self { child, address };
        wait_ready(address, Duration::from_secs(120)).await?;
        Ok((server, started.elapsed()))
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its CPU time so far and its resident memory now.
    pub fn usage(&self) -> anyhow::Result<ProcessUsage> {
        let pid = self.child.id().context("the server has exited")?;
        ProcessUsage::of(pid)
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills the process at once with SIGKILL, as a crash would (nothing is flushed, no
    /// connection closed cleanly), and reaps it; how it ended.
    pub async fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if !self.signal(Signal::KILL) {
            bail!(
                "orderly on {} had exited before it was killed",
                self.address
            );
        }
        Ok(self.child.wait().await?)
    }

    /// Sends `signal` to the process; whether it was sent (false once it has exited).
    fn signal(&self, signal: Signal) -> bool {
        self.child
            .id()
            .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?))
            .is_some_and(|pid| rustix::process::kill_process(pid, signal).is_ok())
    }

    /// Stops the process gracefully: SIGTERM, then a kill if it has not exited within `grace`.
    pub async fn terminate(mut self, grace: Duration) {
        let signalled = self.signal(Signal::TERM);
        if !signalled
            || tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Times `starts` cold starts (empty state dir, so nothing is cached) and as many warm restarts
/// (the same state dir again), in milliseconds until the first successful response.
pub async fn startup_times(
    orderly: &Orderly,
    manifest: &Path,
    starts: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let state = tempfile::tempdir()?;
        for times in [&mut cold, &mut warm] {
            let (server, elapsed) =
                Server::start_orderly(orderly, manifest, state.path(), free_address()?, &[])
                    .await?;
            times.push(elapsed.as_secs_f64() * 1000.0);
            server.stop().await;
        }
    }
    Ok((cold, warm))
}

/// A loopback address with a port free at the time of the call.
pub fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

async fn wait_ready(address: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request = format!(
                "GET /.well-known/spin/health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.1 200") {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("nothing answered on {address} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
