//! The lab's command line (`orderly lab ...`): one subcommand per experiment or tool.

use crate::control::{Control, FaultMode};
use crate::load;
use crate::orders_load::{self, Model, Plan, Stop};
use crate::{app, edge, experiment, gateway_cost, messaging, native, overhead, pipeline, process};
use clap::Subcommand;
use std::net::SocketAddr;
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
        /// Where run folders go (`runs/<time>-<name>/` under it); default: the repository.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
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
        LabCommand::Load {
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
        LabCommand::Orders {
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

/// The load generator's runtime: one thread, leaving the other cores to the server under test.
fn generator() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
