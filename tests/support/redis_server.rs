//! Redis servers for tests. Tests that only need *a* server use the one `.ci/run` starts
//! (`ORDERLY_TEST_REDIS_URL`), or else a private one; tests that stop and restart Redis always
//! get a private one. Without `redis-server` installed they are skipped with a notice, unless
//! `ORDERLY_REQUIRE_REDIS` is set (as CI sets it), which makes a missing server a failure.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis server the test may use.
pub enum Redis {
    /// The shared server: use unique keys and channels.
    Shared(String),
    /// A server of this test's own.
    Private(RedisServer),
}

impl Redis {
    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match self {
            Redis::Shared(url) => url.clone(),
            Redis::Private(server) => server.url(),
        }
    }
}

/// A Redis server, or `None` (with a notice) when none can run here and none is required.
pub fn redis() -> Option<Redis> {
    match std::env::var("ORDERLY_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(Redis::Shared(url)),
        _ => RedisServer::start().map(Redis::Private),
    }
}

/// A `redis-server` process on a free loopback port, killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a private server, or `None` (with a notice) when `redis-server` is not installed
    /// and not required.
    pub fn start() -> Option<Self> {
        let available = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !available {
            assert!(
                std::env::var_os("ORDERLY_REQUIRE_REDIS").is_none(),
                "ORDERLY_REQUIRE_REDIS is set but redis-server is not installed (apt-get install redis-server)"
            );
            eprintln!(
                "SKIPPED: redis-server is not installed (apt-get install redis-server); this test needs it"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut server = Self { port, child: None };
        server.run();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (clients see their connections drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port; returns when it accepts connections.
    pub fn restart(&mut self) -> Instant {
        self.stop();
        self.run();
        Instant::now()
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A name no other test uses (for channels and keys on a shared server).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
