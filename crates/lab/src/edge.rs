//! The edge under abuse, on one `orderly up` serving the trivial app: resident memory idle,
//! under load and after a burst of large uploads; and what stalled uploads do to everyone else.

use crate::load::{self, LoadReport};
use crate::process::{Orderly, Server};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What the experiment does.
pub struct EdgePlan {
    /// Connections of the normal load.
    pub connections: usize,
    /// Seconds of each normal load.
    pub load: Duration,
    /// Concurrent uploads in the burst.
    pub burst: usize,
    /// Bytes in each upload of the burst.
    pub upload_bytes: usize,
    /// How long after the burst memory is read again.
    pub settle: Duration,
    /// Connections that start an upload and then stall.
    pub stalled: usize,
}

/// How the answers to a set of raw requests came back: count by status (0 = closed without
/// an answer) and the slowest answer.
#[derive(Debug, Default)]
struct Answers {
    by_status: BTreeMap<u16, usize>,
    slowest: Duration,
}

impl Answers {
    fn describe(&self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, count)| match status {
                0 => format!("{count} closed unanswered"),
                status => format!("{count}× {status}"),
            })
            .collect();
        format!(
            "{} (last answer after {:.1} s)",
            statuses.join(", "),
            self.slowest.as_secs_f64()
        )
    }
}

/// Runs the experiment on the lab's trivial app and prints a markdown report.
pub async fn run(orderly: &Orderly, hello: &Path, plan: &EdgePlan) -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let server = Server::orderly(orderly, hello, state.path(), &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.usage()?;

    println!("## Resident memory of `orderly up` (trivial app, default settings)");
    let (report, peak) = with_peak_rss(
        &server,
        load::run(server.address(), "/", plan.connections, plan.load),
    )
    .await?;
    let report = report?;
    println!("- idle: {:.1} MiB", idle.rss_mib());
    println!(
        "- under load ({} connections, {} s, {:.0} requests/s): peak {:.1} MiB",
        plan.connections,
        plan.load.as_secs(),
        report.requests_per_second(),
        peak
    );
    let body = vec![b'x'; plan.upload_bytes];
    let (answers, peak) =
        with_peak_rss(&server, burst(server.address(), plan.burst, &body)).await?;
    let answers = answers?;
    println!(
        "- burst of {} concurrent {} MB uploads: peak {:.1} MiB; answers {}",
        plan.burst,
        plan.upload_bytes / 1_000_000,
        peak,
        answers.describe()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.usage()?;
    tokio::time::sleep(plan.settle.saturating_sub(Duration::from_secs(1))).await;
    let settled = server.usage()?;
    println!(
        "- 1 s after the burst: {:.1} MiB; {} s after: {:.1} MiB",
        after.rss_mib(),
        plan.settle.as_secs(),
        settled.rss_mib()
    );

    println!(
        "\n## {} stalled uploads (`POST /` declaring 100 bytes, sending 10, then nothing)",
        plan.stalled
    );
    let quiet = load::run(server.address(), "/", plan.connections, plan.load).await?;
    let started = Instant::now();
    let mut stalls = Vec::with_capacity(plan.stalled);
    for _ in 0..plan.stalled {
        stalls.push(tokio::spawn(stall(server.address())));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = health_status(server.address()).await?;
    let during = load::run(server.address(), "/", plan.connections, plan.load).await?;
    let mut stalled = Answers::default();
    for stall in stalls {
        let (status, _) = stall.await??;
        *stalled.by_status.entry(status).or_default() += 1;
    }
    stalled.slowest = started.elapsed();
    print_comparison(&quiet, &during);
    println!(
        "\nhealth while stalled: {health}; stalled uploads: {}",
        stalled.describe()
    );
    server.stop().await;
    Ok(())
}

fn print_comparison(quiet: &LoadReport, during: &LoadReport) {
    println!("| normal load | requests/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|");
    for (name, report) in [("alone", quiet), ("beside the stalled uploads", during)] {
        println!("{}", report.markdown_row(name));
    }
    println!(
        "beside/alone: throughput {:.2}x, p99 {:.2}x",
        during.requests_per_second() / quiet.requests_per_second(),
        during.percentile_ms(99.0) / quiet.percentile_ms(99.0)
    );
}

/// Runs `work` while sampling `server`'s resident memory every 50 ms; its result and the peak
/// in MiB.
async fn with_peak_rss<T>(
    server: &Server,
    work: impl Future<Output = T>,
) -> anyhow::Result<(T, f64)> {
    let mut peak = server.usage()?.rss_mib();
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            result = &mut work => return Ok((result, peak.max(server.usage()?.rss_mib()))),
            _ = ticks.tick() => peak = peak.max(server.usage()?.rss_mib()),
        }
    }
}

/// `count` concurrent `POST /` uploads of `body`, each on its own connection.
async fn burst(address: SocketAddr, count: usize, body: &[u8]) -> anyhow::Result<Answers> {
    let started = Instant::now();
    let body = bytes::Bytes::copy_from_slice(body);
    let uploads: Vec<_> = (0..count)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await?;
                let head = format!(
                    "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                // A server that answers before reading everything may close early.
                let _ = stream.write_all(&body).await;
                anyhow::Ok(read_status(&mut stream).await)
            })
        })
        .collect();
    let mut answers = Answers::default();
    for upload in uploads {
        *answers.by_status.entry(upload.await??).or_default() += 1;
    }
    answers.slowest = started.elapsed();
    Ok(answers)
}

/// Starts an upload that declares 100 bytes, sends 10 and stalls; the status it is answered
/// with (0 if closed unanswered, or none within 5 minutes) and when.
async fn stall(address: SocketAddr) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await?;
    let head =
        format!("POST / HTTP/1.1\r\nHost: {address}\r\nContent-Length: 100\r\n\r\n0123456789");
    stream.write_all(head.as_bytes()).await?;
    let status = tokio::time::timeout(Duration::from_secs(300), read_status(&mut stream))
        .await
        .unwrap_or(0);
    Ok((status, started.elapsed()))
}

async fn health_status(address: SocketAddr) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "GET /.well-known/spin/health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    Ok(read_status(&mut stream).await)
}

/// The status code of the response on `stream`, or 0 if it closes without one.
async fn read_status(stream: &mut TcpStream) -> u16 {
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head).await {
        Ok(_) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|code| code.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}
