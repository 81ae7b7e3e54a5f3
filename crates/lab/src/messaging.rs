//! Messaging experiments: messages/s through publish → Redis trigger → handler, on a real Redis
//! server and on the embedded broker, and the time from a Redis restart to the first message
//! handled after it.

use crate::process::{Orderly, Server};
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
