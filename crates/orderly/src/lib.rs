//! The `orderly` command: run a Spin application with zero setup (`orderly up`), build its
//! components (`orderly build`), or measure it (`orderly lab`, the `orderly-lab` crate). Flags
//! mirror `spin up` and `spin build`. A library so that tests
//! can build the same command into a binary of their own and run it as a process.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use orderly_host::{HttpSettings, LoadOptions, LoadedApp, RedisMode, RunningApp};
use orderly_manifest::{App as Manifest, HttpRoute};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "orderly",
    version,
    about = "Run Spin applications on wasmtime: the Orderly host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the application described by spin.toml (like `spin up`).
    Up(Box<UpArgs>),
    /// Run each component's build command (like `spin build`).
    Build(ManifestArg),
    /// Measure Orderly: load, experiments with a verdict, reports.
    Lab {
        #[command(subcommand)]
        command: orderly_lab::LabCommand,
    },
}

#[derive(Args)]
struct ManifestArg {
    /// The manifest, or a folder holding spin.toml.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    file: PathBuf,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    manifest: ManifestArg,
    /// The address the HTTP trigger listens on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Runtime configuration: key-value stores and SQLite databases by label.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Where default stores, logs and the compile cache live (default: .spin beside spin.toml;
    /// "" keeps stores in memory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Run the build commands first.
    #[arg(long)]
    build: bool,
    /// An environment variable for every component (KEY=VALUE).
    #[arg(short = 'e', long = "env", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// An application variable (name=value, or name=@file to read the value from a file).
    #[arg(long = "variable", value_parser = parse_pair)]
    variables: Vec<(String, String)>,
    /// Do not echo component output to the terminal (it still goes to the log files).
    #[arg(short, long)]
    quiet: bool,
    /// Who serves the Redis triggers' addresses: a Redis server if one answers at start-up,
    /// else the embedded in-process broker (auto); always a server; or always the broker.
    #[arg(long, value_name = "auto|server|embedded", default_value = "auto")]
    redis: RedisMode,
    /// How many Redis messages are handled at once.
    #[arg(long, default_value_t = orderly_host::DEFAULT_REDIS_CONCURRENCY)]
    redis_concurrency: usize,
    /// The largest request body accepted, in bytes (suffixes K, M, G: KiB, MiB, GiB); larger
    /// ones are refused with 413.
    #[arg(long, value_name = "BYTES", default_value = "10M", value_parser = parse_size)]
    max_body_size: u64,
    /// The memory all request bodies read and not yet answered may take together (suffixes
    /// K, M, G); past it, bodies wait unread for their share.
    #[arg(long, value_name = "BYTES", default_value = "128M", value_parser = parse_size)]
    body_memory: u64,
    /// Seconds a request body gets to arrive, beyond its bytes at the minimum rate (16 KiB/s).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    body_timeout: Duration,
    /// Requests whose instances run at once; more wait briefly, then get 503.
    #[arg(long, value_name = "N", default_value_t = HttpSettings::default().max_in_flight)]
    max_in_flight: usize,
    /// Seconds one instance (a request, a message, a cron run) may run before it is stopped
    /// (an HTTP request then gets 504).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    deadline: Duration,
    /// Serve the host's own Prometheus metrics on this address (GET /metrics); off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

/// A size in bytes: a number, optionally followed by K, M or G (binary multiples).
fn parse_size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (number, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        _ => (digits, 0),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("expected a size such as 1048576, 512K or 10M, got {text:?}"))
}

/// A positive number of seconds (fractions allowed).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected a positive number of seconds, got {text:?}"))
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Runs the command line of this process; the exit code says whether it succeeded.
pub fn run() -> ExitCode {
    let started = Instant::now();
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build(&args),
        Command::Up(args) => up(*args, started),
        Command::Lab { command } => orderly_lab::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORDERLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn manifest_path(file: &Path) -> PathBuf {
    if file.is_dir() {
        file.join("spin.toml")
    } else {
        file.to_owned()
    }
}

fn build(args: &ManifestArg) -> anyhow::Result<()> {
    let manifest = Manifest::load(&manifest_path(&args.file))?;
    let built = orderly_host::build_all(&manifest)?;
    println!("Finished building {built} component(s)");
    Ok(())
}

fn up(args: UpArgs, started: Instant) -> anyhow::Result<()> {
    let manifest = manifest_path(&args.manifest.file);
    if args.build {
        orderly_host::build_all(&Manifest::load(&manifest)?)?;
    }
    let mut variables = BTreeMap::new();
    for (name, value) in args.variables {
        let value = match value.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("--variable {name}=@{file}: cannot read {file}"))?,
            None => value,
        };
        variables.insert(name, value);
    }
    let mut options = LoadOptions {
        runtime_config: args.runtime_config_file,
        state_dir: args.state_dir,
        variables,
        env: args.env,
        echo_component_output: !args.quiet,
        redis_mode: args.redis,
        metrics_listen: args.metrics_listen,
        ..LoadOptions::new(manifest)
    };
    options.settings.redis.concurrency = args.redis_concurrency;
    options.settings.http.max_body_size = args.max_body_size;
    options.settings.http.body_memory = args.body_memory;
    options.settings.http.body_timeout = args.body_timeout;
    options.settings.http.max_in_flight = args.max_in_flight;
    options.settings.instances.deadline = args.deadline;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = LoadedApp::load(&options).await?;
        let running = RunningApp::start(app, args.listen).await?;
        print_routes(&running);
        if let Some(address) = running.metrics_address() {
            println!("Host metrics: http://{address}/metrics");
        }
        tracing::info!(ms = started.elapsed().as_millis() as u64, "ready");
        running.run_until(shutdown_signal()).await;
        Ok(())
    })
}

fn print_routes(running: &RunningApp) {
    let base = format!("http://{}", running.address());
    println!("Serving {base}");
    println!("Available Routes:");
    for (route, component) in running.http_routes() {
        match route {
            HttpRoute::Path(path) => {
                let (shown, wildcard) = match path.strip_suffix("/...") {
                    Some(prefix) => (prefix, " (wildcard)"),
                    None => (path.as_str(), ""),
                };
                let shown = if shown.is_empty() { "/" } else { shown };
                println!("  {component}: {base}{shown}{wildcard}");
            }
            HttpRoute::Private => {
                println!("  {component}: (private; reachable as http://{component}.spin.internal)")
            }
        }
    }
    let mut channels = running.redis_channels().peekable();
    if channels.peek().is_some() {
        println!("Redis channels:");
        for (address, channel, component, embedded) in channels {
            let served = if embedded { " (embedded broker)" } else { "" };
            println!("  {component}: {address} {channel}{served}");
        }
    }
    let mut schedules = running.cron_schedules().peekable();
    if schedules.peek().is_some() {
        println!("Cron jobs:");
        for (expression, component) in schedules {
            println!("  {component}: {expression}");
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the host");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
    }
}
