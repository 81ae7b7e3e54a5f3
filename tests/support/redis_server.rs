//! Redis servers for tests. Tests that only need *a* server use the one `.ci/run` starts
//! (`ORDERLY_TEST_REDIS_URL`), or else a private one; tests that stop and restart Redis always
//! get a private one. Without `redis-server` installed they are skipped with a notice, unless
//! `ORDERLY_REQUIRE_REDIS` is set (as CI sets it), which makes a missing server a failure.

pub use redis_runner::RedisServer;

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
        _ => private_redis().map(Redis::Private),
    }
}

/// A private server, or `None` (with a notice) when `redis-server` is not installed and not
/// required.
pub fn private_redis() -> Option<RedisServer> {
    if !RedisServer::available() {
        assert!(
            std::env::var_os("ORDERLY_REQUIRE_REDIS").is_none(),
            "ORDERLY_REQUIRE_REDIS is set but redis-server is not installed (apt-get install redis-server)"
        );
        eprintln!(
            "SKIPPED: redis-server is not installed (apt-get install redis-server); this test needs it"
        );
        return None;
    }
    Some(RedisServer::start().expect("redis-server starts"))
}

/// Publishes `payload` on `channel` of the Redis server at `url` (`redis://host:port`), as a
/// plain RESP command over a new connection; returns how many subscribers received it.
pub fn publish(url: &str, channel: &str, payload: &[u8]) -> i64 {
    use std::io::{BufRead, BufReader, Write};
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("connect to Redis");
    let mut command = Vec::new();
    command.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
    for part in [channel.as_bytes(), payload] {
        command.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        command.extend_from_slice(part);
        command.extend_from_slice(b"\r\n");
    }
    stream.write_all(&command).expect("send PUBLISH");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read the reply");
    line.trim()
        .strip_prefix(':')
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("unexpected PUBLISH reply {line:?}"))
}
