//! The health monitor on Spin, shared by its two components: the HTTP `monitor`
//! (`GET /health_status`) and the cron-triggered `monitor-refresh`. Spin gives each trigger
//! type its own component (an HTTP component that also exported the cron handler would import
//! the cron plugin's types, which Spin's HTTP trigger does not provide). This crate probes the
//! services over HTTP (concurrently, with timeouts), reads the ledger and the key-value store,
//! and keeps the latest report in the key-value store. A cron-triggered component cannot use
//! service chaining on Spin, so services are probed by full URL (`app_url`).

use futures::future::join_all;
use guest_kit::{FetchError, SpinKv, SpinSql, Timeouts, WallClock};
use ledger::Ledger;
use monitor_core::{
    BreakerSummary, Health, HealthReport, Heartbeat, ProbeFailure, ProbeReport, ServiceHealth,
    WorkerLimits, worker_health,
};
use orders_core::Timestamp;
use resilience::{BreakerPolicy, CircuitBreaker, Clock, KvStore};
use spin_sdk::http::Method;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where the latest report is kept.
const SNAPSHOT_KEY: &str = "monitor/snapshot";
/// When the monitor first looked (milliseconds, as text): the worker's silence is counted from
/// there until its first heartbeat.
const WATCHING_SINCE_KEY: &str = "monitor/watching-since";
/// The services probed over HTTP: name and health path below `app_url`.
const SERVICES: [(&str, &str); 3] = [
    ("orders", "/orders/health"),
    ("external-validator", "/external/health"),
    ("admin", "/admin/health"),
];

/// The monitor's settings, from variables.
struct Settings {
    app_url: String,
    interval_ms: u64,
    timeout: Duration,
    degraded_ms: u64,
    worker_limits: WorkerLimits,
}

impl Settings {
    /// The settings from variables; an absent one takes its default, and so does an
    /// unreadable one (said on stderr: the monitor must keep reporting).
    fn read() -> Self {
        let millis = |name: &str, default: u64| match guest_kit::variable(name) {
            None => default,
            Some(text) => text.trim().parse().unwrap_or_else(|_| {
                eprintln!(
                    "monitor: variable {name} = {text:?} is not a whole number; using {default}"
                );
                default
            }),
        };
        Self {
            app_url: guest_kit::variable("app_url")
                .unwrap_or_else(|| "http://127.0.0.1:3000".into())
                .trim_end_matches('/')
                .to_owned(),
            interval_ms: millis("monitor_interval_secs", 10) * 1000,
            timeout: Duration::from_millis(millis("monitor_timeout_ms", 2_000)),
            degraded_ms: millis("monitor_degraded_ms", 1_000),
            worker_limits: WorkerLimits {
                silent_ms: millis("monitor_worker_silent_secs", 10) * 1000,
                backlog_ms: millis("monitor_backlog_secs", 30) * 1000,
            },
        }
    }
}

/// The report to serve: the stored one if it is recent (younger than twice the refresh
/// interval: the cron refresh keeps it younger than one) and `refresh_now` is false, else a
/// new one. When a new one cannot be made, the stored one is served, marked with why.
pub async fn report(refresh_now: bool) -> Result<serde_json::Value, String> {
    let settings = Settings::read();
    let now = WallClock.now_ms();
    let stored = stored_report()?;
    match stored {
        Some((checked_at, report))
            if !refresh_now && now.saturating_sub(checked_at) < 2 * settings.interval_ms =>
        {
            Ok(report)
        }
        stored => match refresh(&settings).await {
            Ok(report) => Ok(report),
            Err(error) => match stored {
                Some((_, mut report)) => {
                    report["refresh_error"] = error.into();
                    Ok(report)
                }
                None => Err(error),
            },
        },
    }
}

/// Refreshes the report if it is older than the refresh interval (a little early, so that it
/// is never older than the interval).
pub async fn refresh_if_stale() -> Result<(), String> {
    let settings = Settings::read();
    let now = WallClock.now_ms();
    match stored_report()? {
        Some((checked_at, _)) if now < checked_at + settings.interval_ms - 500 => Ok(()),
        _ => refresh(&settings).await.map(drop),
    }
}

/// The stored report and when it was made.
fn stored_report() -> Result<Option<(u64, serde_json::Value)>, String> {
    let store = SpinKv::open("default").map_err(|e| e.to_string())?;
    let Some(bytes) = store.get(SNAPSHOT_KEY).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let stored: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(stored["checked_at_ms"]
        .as_u64()
        .map(|at| (at, stored["report"].clone())))
}

/// Probes everything now, stores the report and returns it. A database that does not answer
/// is reported `down` (with the counts it would give left `null`), never a missing report.
async fn refresh(settings: &Settings) -> Result<serde_json::Value, String> {
    let store = SpinKv::open("default").map_err(|e| guest_kit::error_chain(&e))?;
    let probes = join_all(SERVICES.iter().map(|(name, path)| async move {
        (
            *name,
            probe(&format!("{}{path}", settings.app_url), settings.timeout).await,
        )
    }))
    .await;
    let now = Timestamp(WallClock.now_ms());
    let mut services: BTreeMap<String, ServiceHealth> = probes
        .iter()
        .map(|(name, report)| {
            (
                (*name).to_owned(),
                ServiceHealth::from_probe(report, settings.degraded_ms),
            )
        })
        .collect();
    let breaker = CircuitBreaker::new(
        &store,
        &WallClock,
        pipeline::DEPENDENCY,
        BreakerPolicy::default(),
    )
    .record_snapshot()
    .map_err(|e| guest_kit::error_chain(&e))?;
    let started = WallClock.now_ms();
    let stats = SpinSql::open_default()
        .map(Ledger::new)
        .map_err(|e| guest_kit::error_chain(&e))
        .and_then(|ledger| ledger.stats(now).map_err(|e| guest_kit::error_chain(&e)));
    let latency_ms = Some(WallClock.now_ms().saturating_sub(started));
    let database = match &stats {
        Ok(_) => ServiceHealth {
            latency_ms,
            ..healthy()
        },
        Err(error) => ServiceHealth {
            status: Health::Down,
            latency_ms,
            http_status: None,
            detail: Some(format!("the database does not answer: {error}")),
        },
    };
    let stats = stats.ok();
    let heartbeat = store
        .get(pipeline::HEARTBEAT_KEY)
        .map_err(|e| guest_kit::error_chain(&e))?
        .and_then(|bytes| serde_json::from_slice::<Heartbeat>(&bytes).ok());
    let watching_since = watching_since(&store, now)?;
    services.insert(
        "validator".into(),
        worker_health(
            heartbeat.as_ref(),
            watching_since,
            stats.as_ref(),
            breaker.state,
            now,
            settings.worker_limits,
        ),
    );
    services.insert("database".into(), database);
    services.insert("redis".into(), redis_health());
    let report = HealthReport::new(now, services, BreakerSummary::of(&breaker), stats.as_ref());
    let report = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    let stored = serde_json::json!({"checked_at_ms": now.millis(), "report": report});
    store
        .set(SNAPSHOT_KEY, stored.to_string().as_bytes())
        .map_err(|e| guest_kit::error_chain(&e))?;
    Ok(report)
}

/// When the monitor first looked; `now` (and remembered) on the first look.
fn watching_since(store: &SpinKv, now: Timestamp) -> Result<Timestamp, String> {
    let stored = store
        .get(WATCHING_SINCE_KEY)
        .map_err(|e| e.to_string())?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok());
    match stored {
        Some(millis) => Ok(Timestamp(millis)),
        None => {
            store
                .set(WATCHING_SINCE_KEY, now.millis().to_string().as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(now)
        }
    }
}

fn healthy() -> ServiceHealth {
    ServiceHealth {
        status: monitor_core::Health::Healthy,
        latency_ms: None,
        http_status: None,
        detail: None,
    }
}

/// Redis answers a read on the address the doorbells go to.
fn redis_health() -> ServiceHealth {
    let address =
        guest_kit::variable("redis_url").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let started = WallClock.now_ms();
    let answered = spin_sdk::redis::Connection::open(&address)
        .and_then(|redis| redis.get("orderly:monitor:ping"));
    let latency_ms = Some(WallClock.now_ms().saturating_sub(started));
    match answered {
        Ok(_) => ServiceHealth {
            latency_ms,
            ..healthy()
        },
        Err(error) => ServiceHealth {
            status: monitor_core::Health::Down,
            latency_ms,
            http_status: None,
            detail: Some(format!("unreachable: {error:?}")),
        },
    }
}

/// `GET url`, with the monitor's timeout.
async fn probe(url: &str, timeout: Duration) -> ProbeReport {
    let started = WallClock.now_ms();
    let timeouts = Timeouts {
        connect: timeout,
        first_byte: timeout,
        between_bytes: timeout,
    };
    let answer = guest_kit::fetch(Method::Get, url, &[], Vec::new(), timeouts, 16 * 1024).await;
    let latency_ms = WallClock.now_ms().saturating_sub(started);
    let answer = match answer {
        Ok(fetched) => {
            let said = serde_json::from_slice::<serde_json::Value>(&fetched.body)
                .ok()
                .and_then(|body| body["status"].as_str().map(str::to_owned));
            Ok((fetched.status, said))
        }
        Err(FetchError::Connect(why)) => Err(ProbeFailure::Connect(why)),
        Err(FetchError::Timeout(why)) => Err(ProbeFailure::Timeout(why)),
        Err(other) => Err(ProbeFailure::Other(other.to_string())),
    };
    ProbeReport { answer, latency_ms }
}
