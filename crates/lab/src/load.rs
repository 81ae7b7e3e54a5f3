//! A closed-loop load generator: each connection sends its next request when the previous
//! answer arrives, over HTTP/1.1 keep-alive; latencies are recorded per request.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Successful requests.
    pub requests: u64,
    /// Failed requests (transport errors, or answers with another status than the expected).
    pub errors: u64,
    /// How long the measurement ran.
    pub elapsed: Duration,
    /// Every successful request's latency, in microseconds.
    latencies_us: Vec<u32>,
}

impl LoadReport {
    /// Requests per second.
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at percentile `p` (0–100), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        f64::from(sorted[index]) / 1000.0
    }

    /// Its row in a markdown table of `| name | requests/s | p50 | p99 | errors |`.
    pub fn markdown_row(&self, name: &str) -> String {
        format!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            self.requests_per_second(),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.errors
        )
    }

    /// Several runs as one.
    pub fn merge(reports: &[LoadReport]) -> LoadReport {
        let mut merged = LoadReport::default();
        for report in reports {
            merged.requests += report.requests;
            merged.errors += report.errors;
            merged.elapsed += report.elapsed;
            merged.latencies_us.extend_from_slice(&report.latencies_us);
        }
        merged
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  ({} requests, {} errors)",
            self.requests_per_second(),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.requests,
            self.errors
        )
    }
}

/// Load sent before the measured window, not counted.
pub const WARM_UP: Duration = Duration::from_secs(1);

/// What each connection of a load sends, and which answer counts as a success.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    /// The path to GET.
    pub path: String,
    /// The one status that counts as a success (a load of refusals by design, 429, is measured
    /// like any other); `None`: any 2xx.
    pub expected: Option<StatusCode>,
    /// When given, connection `n` sends `x-api-key: <this>-<n>`: one client per connection.
    pub api_key_prefix: Option<String>,
}

/// Loads `address` with GET `path` on `connections` keep-alive connections for [`WARM_UP`] and
/// then `duration`, counting only the latter; any 2xx answer counts as a success.
pub async fn run(
    address: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    let requests = Requests {
        path: path.to_owned(),
        ..Requests::default()
    };
    run_with(address, &requests, connections, duration).await
}

/// [`run`], sending `requests`.
pub async fn run_with(
    address: SocketAddr,
    requests: &Requests,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    let warm_until = Instant::now() + WARM_UP;
    let end = warm_until + duration;
    let mut workers = Vec::new();
    for n in 0..connections {
        let requests = requests.clone();
        workers.push(tokio::spawn(async move {
            connection(address, requests, n, warm_until, end).await
        }));
    }
    let mut report = LoadReport {
        elapsed: duration,
        ..LoadReport::default()
    };
    for worker in workers {
        let part = worker.await??;
        report.requests += part.requests;
        report.errors += part.errors;
        report.latencies_us.extend(part.latencies_us);
    }
    Ok(report)
}

async fn connection(
    address: SocketAddr,
    requests: Requests,
    number: usize,
    warm_until: Instant,
    end: Instant,
) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport::default();
    let mut sender = connect(address).await?;
    let api_key = requests
        .api_key_prefix
        .as_ref()
        .map(|prefix| format!("{prefix}-{number}"));
    loop {
        let started = Instant::now();
        if started >= end {
            return Ok(report);
        }
        let mut request =
            http::Request::get(&requests.path).header(http::header::HOST, address.to_string());
        if let Some(key) = &api_key {
            request = request.header("x-api-key", key);
        }
        let request = request.body(Empty::<Bytes>::new())?;
        // `None`: no answer (the connection is opened again); else whether it was a success.
        let outcome = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let ok = requests
                    .expected
                    .map_or(status.is_success(), |expected| status == expected);
                let body = response.into_body().collect().await;
                body.is_ok().then_some(ok)
            }
            Err(_) => None,
        };
        let counted = started >= warm_until;
        if outcome == Some(true) {
            if counted {
                report.requests += 1;
                report
                    .latencies_us
                    .push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
        } else if counted {
            report.errors += 1;
        }
        if outcome.is_none() {
            sender = connect(address).await?;
        }
    }
}

/// Opens a keep-alive HTTP/1.1 connection (TCP_NODELAY) to `address`, sending bodies of type `B`.
pub async fn connect<B>(
    address: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
