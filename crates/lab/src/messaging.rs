//! Messaging experiments: messages/s through publish → Redis trigger → handler, on a real Redis
//! server and on the embedded broker, and the time from a Redis restart to the first message
//! handled after it.

use crate::process::{Orderly, Server};
use crate::summary::{max, median, min};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use redis_runner::RedisServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The messaging app, relative to this crate.
pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/messaging/spin.toml")
}

/// Starts `orderly up` on the messaging app with `redis_url`, in `mode` (`server` or `embedded`).
pub async fn start(
    orderly: &Orderly,
    state: &Path,
    redis_url: &str,
    mode: &str,
) -> anyhow::Result<Server> {
    Server::orderly(
        orderly,
        &manifest(),
        state,
        &[
            "--redis",
            mode,
            "--variable",
            &format!("redis_url={redis_url}"),
        ],
    )
    .await
}

/// Publishes `count` messages through the probe and waits until the subscriber has handled them
/// all; returns messages per second, from the publish request to the last one handled.
pub async fn throughput(
    server: &Server,
    redis_url: &str,
    count: u32,
    counted_before: i64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let sent = post(
        server.address(),
        &format!("/probe/redis/burst?address={redis_url}&channel=lab&count={count}"),
    )
    .await?;
    if !sent.contains(&count.to_string()) {
        bail!("the burst failed: {sent}");
    }
    let target = counted_before + i64::from(count);
    loop {
        let handled = handled(server.address()).await?;
        if handled >= target {
            return Ok(f64::from(count) / started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {count} messages were handled",
                handled - counted_before
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Restarts Redis and publishes every 5 ms until a message is handled; returns the time from
/// the restarted server accepting connections to the first handled message.
pub async fn restart_to_first_message(
    server: &Server,
    redis: &mut RedisServer,
) -> anyhow::Result<Duration> {
    let before = handled(server.address()).await?;
    let restarted = redis.restart()?;
    let url = redis.url();
    loop {
        let _ = post(
            server.address(),
            &format!("/probe/redis/publish?address={url}&channel=lab"),
        )
        .await;
        if handled(server.address()).await? > before {
            return Ok(restarted.elapsed());
        }
        if restarted.elapsed() > Duration::from_secs(60) {
            bail!("no message handled within 60 s of the restart");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Messages the subscriber has handled so far.
pub async fn handled(address: SocketAddr) -> anyhow::Result<i64> {
    let body = post(
        address,
        "/probe/wasi-kv/increment?label=default&key=lab:count&delta=0",
    )
    .await?;
    let reply: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
    reply["value"]
        .as_i64()
        .with_context(|| format!("a counter value in {body}"))
}

async fn post(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::post(path)
        .header(http::header::HOST, address.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Runs the messaging experiment on its own app and prints the report.
pub async fn run(messages: u32, rounds: usize, restarts: usize) -> anyhow::Result<()> {
    let orderly = Orderly::locate()?;
    orderly.build(&manifest())?;
    let mut redis = RedisServer::start().map_err(|e| {
        anyhow::anyhow!("cannot run redis-server ({e}); install it: apt-get install redis-server")
    })?;
    let url = redis.url();
    let (server_state, broker_state) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let with_server = start(&orderly, server_state.path(), &url, "server").await?;
    let with_broker = start(&orderly, broker_state.path(), &url, "embedded").await?;

    println!(
        "## Publish → Redis trigger → handler: {messages} messages per run, {rounds} interleaved rounds"
    );
    let (mut server_rates, mut broker_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (name, server, rates) in [
            ("redis-server", &with_server, &mut server_rates),
            ("embedded broker", &with_broker, &mut broker_rates),
        ] {
            let before = handled(server.address()).await?;
            let rate = throughput(server, &url, messages, before).await?;
            println!("round {round} {name:<16} {rate:>8.0} messages/s");
            rates.push(rate);
        }
    }
    println!(
        "median: redis-server {:.0} messages/s, embedded broker {:.0} messages/s (broker/server {:.2}x)",
        median(&server_rates),
        median(&broker_rates),
        median(&broker_rates) / median(&server_rates)
    );
    with_broker.stop().await;

    println!("\n## Redis restart → first handled message, {restarts} restarts");
    let mut times = Vec::new();
    for _ in 0..restarts {
        let elapsed = restart_to_first_message(&with_server, &mut redis).await?;
        times.push(elapsed.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "median {:.0} ms (min {:.0}, max {:.0}); each: {:?}",
        median(&times),
        min(&times),
        max(&times),
        times.iter().map(|t| t.round() as u64).collect::<Vec<_>>()
    );
    with_server.stop().await;
    Ok(())
}
