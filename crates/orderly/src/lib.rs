//! The `orderly` command: run a Spin application with zero setup (`orderly up`), or build its
//! components (`orderly build`). Flags mirror `spin up` and `spin build`. A library so that tests
//! can build the same command into a binary of their own and run it as a process.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use orderly_host::{LoadOptions, LoadedApp, RedisMode, RunningApp};
use orderly_manifest::{App as Manifest, HttpRoute};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

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
    Up(UpArgs),
    /// Run each component's build command (like `spin build`).
    Build(ManifestArg),
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
        Command::Up(args) => up(args, started),
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
        ..LoadOptions::new(manifest)
    };
    options.settings.redis.concurrency = args.redis_concurrency;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = LoadedApp::load(&options).await?;
        let running = RunningApp::start(app, args.listen).await?;
        print_routes(&running);
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
