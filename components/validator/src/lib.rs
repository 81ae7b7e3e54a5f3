//! `validator`: the validation worker, as two entry points of one component.
//!
//! - Redis (`handle-message`): a doorbell on the jobs channel wakes it; it drains due jobs.
//!   Malformed messages and doorbells about unknown orders go to the dead-letter queue.
//! - Cron (`handle-cron-event`, the spin-trigger-cron world): the sweep. It fails orders whose
//!   deadline passed, drains due jobs (so a lost doorbell only delays an order), prunes
//!   expired keys now and then, and leaves a heartbeat for the health monitor.
//!
//! A Redis- or cron-triggered component cannot use service chaining on Spin, so the validator
//! is reached by its full URL (`validator_url`). This crate only adapts Spin to
//! [`pipeline::ValidationWorker`].

use bytes::Bytes;
use guest_kit::{FetchError, SpinKv, SpinSql, Timeouts, WallClock};
use ledger::Ledger;
use pipeline::{
    Doorbell, DoorbellPublisher, HttpAnswer, ValidationWorker, ValidatorClient, WorkerParts,
    WorkerSettings,
};
use resilience::{CallFailure, SplitMix64};
use spin_sdk::http::Method;
use spin_sdk::redis_component;
use std::time::Duration;

#[allow(missing_docs, reason = "generated bindings")]
mod cron {
    spin_sdk::wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

/// The largest validator answer read.
const MAX_ANSWER: usize = 64 * 1024;

#[redis_component]
async fn on_message(message: Bytes) -> anyhow::Result<()> {
    let report = run(Invocation::Message(&message)).await?;
    if report.dead_lettered > 0 {
        eprintln!("validator: a message went to the dead-letter queue");
    }
    Ok(())
}

struct Sweeper;

impl cron::Guest for Sweeper {
    fn handle_cron_event(
        _: cron::fermyon::spin_cron::cron_types::Metadata,
    ) -> Result<(), cron::fermyon::spin_cron::cron_types::Error> {
        spin_sdk::http::run(run(Invocation::Sweep))
            .map(drop)
            .map_err(|error| cron::fermyon::spin_cron::cron_types::Error::Other(error.to_string()))
    }
}

cron::export!(Sweeper with_types_in cron);

/// Why the worker runs.
enum Invocation<'a> {
    /// A message on the jobs channel.
    Message(&'a [u8]),
    /// The cron sweep.
    Sweep,
}

/// Builds a worker over Spin's stores and runs it.
async fn run(invocation: Invocation<'_>) -> anyhow::Result<pipeline::DrainReport> {
    let settings = WorkerSettings::read(guest_kit::variable)?;
    let ledger = Ledger::new(SpinSql::open_default()?);
    let store = SpinKv::open("default")?;
    let validator = HttpValidator::from_variables()?;
    let publisher = RedisDoorbells {
        address: variable_or("redis_url", "redis://127.0.0.1:6379"),
        channel: pipeline::JOBS_CHANNEL,
    };
    let seed = guest_kit::random_seed();
    let parts = WorkerParts {
        ledger: &ledger,
        store: &store,
        clock: &WallClock,
        validator: &validator,
        publisher: &publisher,
        settings: &settings,
    };
    let mut worker = ValidationWorker::new(parts, SplitMix64::new(seed), format!("w-{seed:016x}"));
    let report = match invocation {
        Invocation::Message(message) => worker.on_message(publisher.channel, message).await?,
        Invocation::Sweep => worker.sweep().await?,
    };
    Ok(report)
}

fn variable_or(name: &str, default: &str) -> String {
    guest_kit::variable(name).unwrap_or_else(|| default.to_owned())
}

/// The external validator over HTTP, with the configured timeouts.
struct HttpValidator {
    url: String,
    timeouts: Timeouts,
}

impl HttpValidator {
    fn from_variables() -> anyhow::Result<Self> {
        let millis = |name: &str, default: u64| -> anyhow::Result<Duration> {
            match guest_kit::variable(name) {
                None => Ok(Duration::from_millis(default)),
                Some(text) => text.trim().parse().map(Duration::from_millis).map_err(|_| {
                    anyhow::anyhow!(
                        "variable {name}: {text:?} is not a whole number of milliseconds"
                    )
                }),
            }
        };
        let first_byte = millis("validator_timeout_ms", 5_000)?;
        Ok(Self {
            url: variable_or("validator_url", "http://127.0.0.1:3000/external/validate"),
            timeouts: Timeouts {
                connect: millis("validator_connect_timeout_ms", 1_000)?,
                first_byte,
                between_bytes: first_byte,
            },
        })
    }
}

impl ValidatorClient for HttpValidator {
    async fn validate(&self, body: Vec<u8>) -> Result<HttpAnswer, CallFailure> {
        let answer = guest_kit::fetch(
            Method::Post,
            &self.url,
            &[("content-type", "application/json")],
            body,
            self.timeouts,
            MAX_ANSWER,
        )
        .await;
        match answer {
            Ok(answer) => Ok(HttpAnswer {
                status: answer.status,
                retry_after: answer.header("retry-after").map(str::to_owned),
                body: answer.body,
            }),
            Err(error @ (FetchError::Connect(_) | FetchError::Denied | FetchError::BadUrl(_))) => {
                Err(CallFailure::Connect(error.to_string()))
            }
            Err(FetchError::Timeout(detail)) => Err(CallFailure::Timeout(detail)),
            Err(error @ (FetchError::TooLarge(_) | FetchError::Other(_))) => {
                Err(CallFailure::Other(error.to_string()))
            }
        }
    }
}

/// Publishes doorbells on the jobs channel.
struct RedisDoorbells {
    address: String,
    channel: &'static str,
}

impl DoorbellPublisher for RedisDoorbells {
    fn ring(&self, doorbell: &Doorbell) -> Result<(), String> {
        spin_sdk::redis::Connection::open(&self.address)
            .and_then(|redis| redis.publish(self.channel, &doorbell.to_bytes()))
            .map_err(|error| format!("{error:?}"))
    }
}
