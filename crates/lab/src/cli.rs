//! The lab's command line (`orderly lab ...`): one subcommand per experiment or tool.

use crate::api::Api;
use crate::app_http::Http;
use crate::control::FaultMode;
use crate::load;
use crate::orders_load::{Model, Plan, Stop};
use crate::{
    app, chaos, edge, experiment, gateway_cost, load_run, messaging, native, overhead, pipeline,
    process, verify,
};
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The lab's commands (`orderly lab <command>`).
#[derive(Subcommand)]
pub enum LabCommand {
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
    /// GET one path on a running server (closed loop, keep-alive) and report requests/s and
    /// latency.
    HttpLoad {
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
    /// Create orders on a running server and report acknowledged orders/s, errors by class and
    /// latency percentiles, with a live progress bar; every attempt goes into the run's
    /// history (history.jsonl) for `orderly lab verify`.
    Load {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:3000", value_parser = base_url)]
        base_url: SocketAddr,
        /// Where the run folder goes (`runs/<time>-load/` under it).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The API to create orders with (the seeds' too, for a side-by-side).
        #[arg(long, value_enum, default_value_t = Api::Orderly)]
        api: Api,
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
        duration: Option<u64>,
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
    /// Judge a load run: wait for the server to drain, then report what became of every
    /// request (lost, duplicated, unexpected, recovered) and whether the saga's invariants
    /// hold; the report goes into the run folder's `verify/`.
    Verify {
        /// The run folder `orderly lab load` wrote.
        run: PathBuf,
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:3000", value_parser = base_url)]
        base_url: SocketAddr,
        /// The longest wait, in seconds, for every acknowledged order to be final.
        #[arg(long, default_value_t = 120)]
        drain_secs: u64,
    },
    /// Run a chaos scenario (phases with fault actions on a timeline, seeded) on an `orderly
    /// up` and a `redis-server` of its own under an open-model order load, then verify the run;
    /// the report goes into `runs/<time>-chaos-<name>/`.
    Chaos {
        /// The scenario file (see `scenarios/` in the repository).
        scenario: PathBuf,
        /// Where the run folder goes.
        #[arg(long, default_value = ".")]
        out: PathBuf,
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
        #[arg(long, value_enum, default_value_t = app::RedisChoice::Embedded)]
        redis: app::RedisChoice,
        /// Keep the state dir and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// Run one of the seeds' experiments (or `all`) on an `orderly up` of its own: its
    /// hypotheses stated first, a verdict, and a report (report.md, report.json) in its run
    /// folder; a failure exit when a hypothesis does not hold.
    Experiment {
        /// Which one.
        #[arg(value_enum)]
        name: experiment::Experiment,
        /// Where run folders go (`runs/<time>-<name>/` under it).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Who serves the app's Redis address: a redis-server of the experiment's own, or the
        /// embedded broker (idempotency, poison and crash always use a redis-server).
        #[arg(long, value_enum, default_value_t = app::RedisChoice::Server)]
        redis: app::RedisChoice,
        /// Seeds what the experiments draw (order mixes, faults).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Smaller runs, for a try-out (the verdicts still apply).
        #[arg(long)]
        quick: bool,
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

/// Runs one lab command.
pub fn run(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::NativeServer { listen } => native::serve(listen),
        LabCommand::HttpOverhead {
            seconds,
            connections,
            rounds,
            starts,
        } => generator()?.block_on(overhead::run(
            Duration::from_secs(seconds),
            connections,
            rounds,
            starts,
        )),
        LabCommand::Edge {
            connections,
            seconds,
            burst,
            upload_mb,
            settle_seconds,
            stalled,
        } => {
            let hello = overhead::hello_app();
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
        LabCommand::Messaging {
            messages,
            rounds,
            restarts,
        } => generator()?.block_on(messaging::run(messages, rounds, restarts)),
        LabCommand::HttpLoad {
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
        LabCommand::Load {
            base_url,
            out,
            api,
            concurrency,
            rate,
            max_connections,
            duration,
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
                None => Stop::After(Duration::from_secs(duration.unwrap_or(10))),
            };
            let plan = Plan {
                address: base_url,
                model,
                stop,
                warmup: Duration::from_secs(warmup_seconds),
                seed,
                run: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis()
                    .try_into()?,
                api,
                progress: true,
            };
            let fault = mode.map(|mode| (mode, delay_ms.map(Duration::from_millis)));
            generator()?.block_on(load_run::run(&plan, fault, &out))
        }
        LabCommand::Chaos { scenario, out } => generator()?.block_on(chaos::run(&scenario, &out)),
        LabCommand::Verify {
            run,
            base_url,
            drain_secs,
        } => generator()?.block_on(verify::run(
            &run,
            &Http::new(base_url),
            Duration::from_secs(drain_secs),
        )),
        LabCommand::GatewayCost {
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
        LabCommand::Experiment {
            name,
            out,
            redis,
            seed,
            quick,
        } => {
            let options = experiment::Options {
                out,
                redis,
                seed,
                quick,
            };
            generator()?.block_on(experiment::run(name, &options))
        }
        LabCommand::Pipeline {
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
    }
}

/// The server's address from a base URL such as `http://127.0.0.1:3000` (a plain
/// `host:port` too).
fn base_url(text: &str) -> Result<SocketAddr, String> {
    let authority = text
        .strip_prefix("http://")
        .unwrap_or(text)
        .trim_end_matches('/');
    if text.starts_with("https://") || authority.contains('/') {
        return Err(format!(
            "{text:?}: give http://host:port (no https, no path)"
        ));
    }
    std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|error| format!("{text:?}: {error}"))?
        .next()
        .ok_or_else(|| format!("{text:?} names no address"))
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

/// The load generator's runtime: one thread, leaving the other cores to the server under test.
fn generator() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
