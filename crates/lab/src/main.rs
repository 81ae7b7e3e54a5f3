//! `orderly-lab`: experiments that measure Orderly, reported as ratios taken in one run so the
//! noise of a shared machine cancels out.

mod app;
mod app_http;
mod control;
mod edge;
mod gateway_cost;
mod load;
mod messaging;
mod native;
mod orders_load;
mod pipeline;
mod process;
mod saga;
mod settle;
mod sync_async;
mod usage;

use clap::{Parser, Subcommand};
use control::{Control, FaultMode};
use load::LoadReport;
use orders_load::{Model, Plan, Stop};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "orderly-lab",
    about = "Measure Orderly: load and start-up experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Requests/s and latency of a trivial component under `orderly up`, next to a minimal
    /// native hyper server in the same run; plus cold-start and warm-restart times.
    HttpOverhead {
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Rounds of (native, orderly) measurements, interleaved.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Start-ups timed for each of cold start and warm restart.
        #[arg(long, default_value_t = 5)]
        starts: usize,
    },
    /// Messages/s through publish → Redis trigger → handler, on a Redis server and on the
    /// embedded broker; and the time from a Redis restart to the first handled message.
    Messaging {
        /// Messages per measurement.
        #[arg(long, default_value_t = 5000)]
        messages: u32,
        /// Measurements per mode, interleaved.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Redis restarts timed.
        #[arg(long, default_value_t = 5)]
        restarts: usize,
    },
    /// Load a running server (closed loop, keep-alive) and report requests/s and latency.
    Load {
        /// The server, e.g. 127.0.0.1:3000.
        #[arg(long)]
        address: SocketAddr,
        /// The path to GET.
        #[arg(long, default_value = "/")]
        path: String,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    /// Load `POST /orders` on a running Orderly and report acknowledged orders/s, errors by
    /// class and latency percentiles.
    Orders {
        /// The server.
        #[arg(long, default_value = "127.0.0.1:3000")]
        address: SocketAddr,
        /// Closed model: this many keep-alive connections, each sending its next order when
        /// the previous answer arrives.
        #[arg(long, default_value_t = 16, conflicts_with = "rate")]
        concurrency: usize,
        /// Open model instead: this many orders per second at fixed intervals, latency
        /// measured from each order's intended send time.
        #[arg(long, value_parser = positive_rate)]
        rate: Option<f64>,
        /// Open model: the most connections opened at once.
        #[arg(long, default_value_t = 512, requires = "rate")]
        max_connections: usize,
        /// Stop after this many seconds (the default is 10).
        #[arg(long, conflicts_with = "orders")]
        seconds: Option<u64>,
        /// Stop once this many orders were acknowledged instead.
        #[arg(long)]
        orders: Option<u64>,
        /// Seconds of load first, not counted.
        #[arg(long, default_value_t = 1)]
        warmup_seconds: u64,
        /// Set the simulated validator's fault mode first.
        #[arg(long)]
        mode: Option<FaultMode>,
        /// The validator's delay, with --mode slow.
        #[arg(long, requires = "mode")]
        delay_ms: Option<u64>,
        /// Seeds the order mix (products and quantities).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The order pipeline on its own `orderly up`: acceptance under every validator mode,
    /// validations/s end to end, an outage and the recovery after it; a markdown report.
    Pipeline {
        /// Connections of the closed-model load.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds of each timed load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Orders accepted while the validator is down.
        #[arg(long, default_value_t = 10_000)]
        outage_orders: u64,
        /// Who serves the app's Redis address.
        #[arg(long, value_enum, default_value_t = pipeline::RedisChoice::Embedded)]
        redis: pipeline::RedisChoice,
        /// Keep the state dir and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// The fulfilment saga on its own `orderly up` under random faults in every service at
    /// once: a seeded mix of orders (some run out of stock, some go over the payment limit,
    /// some are cancelled), then every order awaited to a final status and the saga's
    /// invariants checked; a markdown report, and a failure exit if any invariant fails.
    Saga {
        /// Orders sent.
        #[arg(long, default_value_t = 5000)]
        orders: usize,
        /// Seeds the orders, the cancellations and the faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of calls (0 to 1) every service fails while the faults are on.
        #[arg(long, default_value_t = 0.2, value_parser = fraction)]
        failure_rate: f64,
        /// The most delay each service adds to every call while the faults are on (each
        /// service's is drawn from 1 ms to this; 0 for none).
        #[arg(long, default_value_t = 10)]
        max_delay_ms: u32,
        /// Share of orders (0 to 1) the customer cancels.
        #[arg(long, default_value_t = 0.05, value_parser = fraction)]
        cancel_fraction: f64,
        /// The longest wait between creating an order and cancelling it, in milliseconds.
        #[arg(long, default_value_t = 200)]
        max_cancel_delay_ms: u64,
        /// Orders in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The longest wait, in seconds, for every order to be final once the faults are
        /// cleared.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Keep the state dir and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// The Campus seed's contrast on its own `orderly up`: orders created async and sync
    /// through the gateway, one at a time, with the inventory healthy, slow, past the sync
    /// deadline and failing; then every order awaited and the saga's invariants checked. A
    /// markdown report with a verdict per hypothesis, and a failure exit if one fails.
    SyncVsAsync {
        /// Orders of each kind at baseline.
        #[arg(long, default_value_t = 100)]
        orders: usize,
        /// Orders of each kind while the inventory is slow.
        #[arg(long, default_value_t = 20)]
        delayed_orders: usize,
        /// The delay injected into the inventory, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        delay_ms: u64,
        /// Orders of each kind while the inventory fails, and while it is past the deadline.
        #[arg(long, default_value_t = 5)]
        cascade_orders: usize,
        /// The longest wait, in seconds, for every order to be final once the faults are
        /// cleared.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Keep the state dir and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// The gateway's cost on its own `orderly up`: one order read straight from `orders` and
    /// through the gateway, in interleaved rounds; then the rate limiter refusing every request.
    GatewayCost {
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds of (straight, gateway) measurements, interleaved.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// The edge under abuse on the trivial app: resident memory idle, under load and after a
    /// burst of large uploads; normal requests beside stalled uploads.
    Edge {
        /// Connections of the normal load.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds of each normal load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent uploads in the burst.
        #[arg(long, default_value_t = 500)]
        burst: usize,
        /// Megabytes (10^6 bytes) in each upload of the burst.
        #[arg(long, default_value_t = 2)]
        upload_mb: usize,
        /// Seconds after the burst at which memory is read again.
        #[arg(long, default_value_t = 30)]
        settle_seconds: u64,
        /// Uploads that stall.
        #[arg(long, default_value_t = 1000)]
        stalled: usize,
    },
    /// Serve the native baseline (used by http-overhead).
    #[command(hide = true)]
    NativeServer {
        /// Where to listen.
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::NativeServer { listen } => native::serve(listen),
        Command::HttpOverhead {
            seconds,
            connections,
            rounds,
            starts,
        } => generator()?.block_on(http_overhead(
            Duration::from_secs(seconds),
            connections,
            rounds,
            starts,
        )),
        Command::Edge {
            connections,
            seconds,
            burst,
            upload_mb,
            settle_seconds,
            stalled,
        } => {
            let hello = hello_app();
            let orderly = process::Orderly::locate()?;
            orderly.build(&hello)?;
            generator()?.block_on(edge::run(
                &orderly,
                &hello,
                &edge::EdgePlan {
                    connections,
                    load: Duration::from_secs(seconds),
                    burst,
                    upload_bytes: upload_mb * 1_000_000,
                    settle: Duration::from_secs(settle_seconds),
                    stalled,
                },
            ))
        }
        Command::Messaging {
            messages,
            rounds,
            restarts,
        } => generator()?.block_on(messaging_experiment(messages, rounds, restarts)),
        Command::Load {
            address,
            path,
            seconds,
            connections,
        } => {
            let report = generator()?.block_on(load::run(
                address,
                &path,
                connections,
                Duration::from_secs(seconds),
            ))?;
            println!("{report}");
            Ok(())
        }
        Command::Orders {
            address,
            concurrency,
            rate,
            max_connections,
            seconds,
            orders,
            warmup_seconds,
            mode,
            delay_ms,
            seed,
        } => {
            let model = match rate {
                Some(rate) => Model::Open {
                    rate,
                    max_connections,
                },
                None => Model::Closed {
                    connections: concurrency,
                },
            };
            anyhow::ensure!(
                concurrency > 0 && max_connections > 0,
                "at least one connection is needed"
            );
            let stop = match orders {
                Some(orders) => Stop::Acknowledged(orders),
                None => Stop::After(Duration::from_secs(seconds.unwrap_or(10))),
            };
            let plan = Plan {
                address,
                model,
                stop,
                warmup: Duration::from_secs(warmup_seconds),
                seed,
                run: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis()
                    .try_into()?,
            };
            generator()?.block_on(async {
                if let Some(mode) = mode {
                    Control::new(address)
                        .configure(mode, delay_ms.map(Duration::from_millis))
                        .await?;
                }
                println!("POST /orders on {address}: {}", describe(&plan));
                println!("{}", orders_load::run(&plan).await?);
                Ok(())
            })
        }
        Command::GatewayCost {
            connections,
            seconds,
            rounds,
        } => {
            anyhow::ensure!(
                connections > 0 && rounds > 0,
                "at least one connection and one round are needed"
            );
            generator()?.block_on(gateway_cost::run(&gateway_cost::Settings {
                connections,
                load: Duration::from_secs(seconds),
                rounds,
            }))
        }
        Command::SyncVsAsync {
            orders,
            delayed_orders,
            delay_ms,
            cascade_orders,
            timeout_secs,
            keep,
        } => {
            anyhow::ensure!(
                orders > 0 && delayed_orders > 0 && cascade_orders > 0,
                "every scenario needs at least one order"
            );
            generator()?.block_on(sync_async::run(&sync_async::Settings {
                orders,
                delayed_orders,
                delay: Duration::from_millis(delay_ms),
                cascade_orders,
                timeout: Duration::from_secs(timeout_secs),
                keep,
            }))
        }
        Command::Pipeline {
            concurrency,
            seconds,
            outage_orders,
            redis,
            keep,
        } => {
            anyhow::ensure!(concurrency > 0, "at least one connection is needed");
            generator()?.block_on(pipeline::run(&pipeline::Settings {
                concurrency,
                load: Duration::from_secs(seconds),
                outage_orders,
                redis,
                keep,
            }))
        }
        Command::Saga {
            orders,
            seed,
            failure_rate,
            max_delay_ms,
            cancel_fraction,
            max_cancel_delay_ms,
            concurrency,
            timeout_secs,
            keep,
        } => {
            anyhow::ensure!(concurrency > 0, "at least one order must be in flight");
            generator()?.block_on(saga::run(&saga::Settings {
                orders,
                seed,
                failure_rate,
                max_delay_ms,
                cancel_fraction,
                max_cancel_delay: Duration::from_millis(max_cancel_delay_ms),
                concurrency,
                timeout: Duration::from_secs(timeout_secs),
                keep,
            }))
        }
    }
}

/// A share from 0 to 1.
fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

/// A rate of orders per second: finite and positive.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of orders per second"
        )),
    }
}

/// What a load plan does, in words.
fn describe(plan: &Plan) -> String {
    let model = match plan.model {
        Model::Closed { connections } => format!("closed model, {connections} connections"),
        Model::Open {
            rate,
            max_connections,
        } => format!("open model, {rate} orders/s (at most {max_connections} connections)"),
    };
    let stop = match plan.stop {
        Stop::After(duration) => format!("{} s", duration.as_secs_f64()),
        Stop::Acknowledged(orders) => format!("until {orders} orders are acknowledged"),
    };
    format!(
        "{model}, {stop} after {} s of warm-up, seed {}",
        plan.warmup.as_secs_f64(),
        plan.seed
    )
}

/// The lab's trivial app, to measure the host's own cost.
fn hello_app() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/hello/spin.toml")
}

/// The load generator's runtime: one thread, leaving the other cores to the server under test.
fn generator() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn http_overhead(
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

async fn messaging_experiment(messages: u32, rounds: usize, restarts: usize) -> anyhow::Result<()> {
    let orderly = process::Orderly::locate()?;
    orderly.build(&messaging::manifest())?;
    let mut redis = redis_runner::RedisServer::start().map_err(|e| {
        anyhow::anyhow!("cannot run redis-server ({e}); install it: apt-get install redis-server")
    })?;
    let url = redis.url();
    let (server_state, broker_state) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let with_server = messaging::start(&orderly, server_state.path(), &url, "server").await?;
    let with_broker = messaging::start(&orderly, broker_state.path(), &url, "embedded").await?;

    println!(
        "## Publish → Redis trigger → handler: {messages} messages per run, {rounds} interleaved rounds"
    );
    let (mut server_rates, mut broker_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (name, server, rates) in [
            ("redis-server", &with_server, &mut server_rates),
            ("embedded broker", &with_broker, &mut broker_rates),
        ] {
            let before = messaging::handled(server.address()).await?;
            let rate = messaging::throughput(server, &url, messages, before).await?;
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
        let elapsed = messaging::restart_to_first_message(&with_server, &mut redis).await?;
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

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}
