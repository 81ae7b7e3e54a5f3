//! The host's own cost: requests/s, latency and CPU per request of a trivial component under
//! `orderly up` next to a minimal native hyper server in the same run, and start-up times.

use crate::load::{self, LoadReport};
use crate::process;
use crate::summary::{max, median, min};
use std::path::PathBuf;
use std::time::Duration;

/// The lab's trivial app, to measure the host's own cost.
pub fn hello_app() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/hello/spin.toml")
}

/// Measures and prints the host's overhead: start-ups first, then interleaved rounds of load.
pub async fn run(
    duration: Duration,
    connections: usize,
    rounds: usize,
    starts: usize,
) -> anyhow::Result<()> {
    let hello = hello_app();
    let orderly = process::Orderly::locate()?;
    orderly.build(&hello)?;

    println!("## Start-up of `orderly up` (trivial app), {starts} runs each");
    let (cold, warm) = process::startup_times(&orderly, &hello, starts).await?;
    println!(
        "cold start (empty compile cache): median {:.0} ms (min {:.0}, max {:.0})",
        median(&cold),
        min(&cold),
        max(&cold)
    );
    println!(
        "warm restart (cached component):  median {:.0} ms (min {:.0}, max {:.0})",
        median(&warm),
        min(&warm),
        max(&warm)
    );

    println!(
        "\n## Throughput: {connections} keep-alive connections, {}s per measurement, {rounds} interleaved rounds",
        duration.as_secs()
    );
    let state = tempfile::tempdir()?;
    let (mut native_reports, mut native_cpu) = (Vec::new(), Vec::new());
    let (mut orderly_reports, mut orderly_cpu) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let server = process::Server::native().await?;
        let (report, cpu) = load_with_cpu(&server, connections, duration).await?;
        println!("round {round} native hyper:  {report}, {cpu:.1} µs CPU/request");
        native_reports.push(report);
        native_cpu.push(cpu);
        server.stop().await;

        let server = process::Server::orderly(&orderly, &hello, state.path(), &[]).await?;
        let (report, cpu) = load_with_cpu(&server, connections, duration).await?;
        println!("round {round} orderly up:    {report}, {cpu:.1} µs CPU/request");
        orderly_reports.push(report);
        orderly_cpu.push(cpu);
        server.stop().await;
    }
    let native = LoadReport::merge(&native_reports);
    let served = LoadReport::merge(&orderly_reports);
    println!("\n| server | requests/s | p50 | p99 | errors | server CPU/request |");
    println!("|---|---|---|---|---|---|");
    for (name, report, cpu) in [
        ("native hyper", &native, &native_cpu),
        ("orderly up (hello.wasm)", &served, &orderly_cpu),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.1} µs |",
            report.requests_per_second(),
            report.percentile_ms(50.0),
            report.percentile_ms(99.0),
            report.errors,
            median(cpu)
        );
    }
    println!(
        "\norderly/native: throughput {:.2}x, p99 {:.2}x, CPU/request {:.1}x",
        served.requests_per_second() / native.requests_per_second(),
        served.percentile_ms(99.0) / native.percentile_ms(99.0),
        median(&orderly_cpu) / median(&native_cpu)
    );
    Ok(())
}

/// Loads `server` with GET / and measures the server's CPU time (user + system) over the
/// measured window, per request answered in it (in µs).
async fn load_with_cpu(
    server: &process::Server,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(LoadReport, f64)> {
    let window = async {
        tokio::time::sleep(load::WARM_UP).await;
        let before = server.usage()?;
        tokio::time::sleep(duration).await;
        anyhow::Ok(server.usage()?.cpu - before.cpu)
    };
    let (report, cpu) = tokio::join!(
        load::run(server.address(), "/", connections, duration),
        window
    );
    let report = report?;
    let answered = (report.requests + report.errors).max(1);
    Ok((report, cpu?.as_secs_f64() * 1e6 / answered as f64))
}
