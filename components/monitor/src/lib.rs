//! `monitor`: the health monitor and the metrics endpoint.
//!
//! - `GET /health_status`: every service's health (probed over HTTP concurrently, with
//!   timeouts), the validation worker's (from its heartbeat and queue), Redis and the
//!   database, the circuit breaker, the job queue, dead letters and orders by status. It
//!   serves the latest report, refreshed by a cron sweep every `monitor_interval_secs`; with
//!   `?refresh=true`, or when the report is missing or stale, it probes first. It never
//!   answers "no data".
//! - `GET /metrics`: the pipeline's Prometheus metrics.
//! - `GET /health`: the monitor's own health.
//!
//! A cron-triggered component cannot use service chaining on Spin, so services are probed by
//! full URL (`app_url`). This crate only gathers inputs for [`monitor_core`].

use futures::future::join_all;
use guest_kit::{FetchError, Incoming, SpinKv, SpinSql, Timeouts, WallClock};
use ledger::Ledger;
use monitor_core::{
    BreakerSummary, HealthReport, Heartbeat, MetricsInputs, ProbeFailure, ProbeReport,
    ServiceHealth, WorkerLimits, worker_health,
};
use orders_core::Timestamp;
use resilience::{BreakerPolicy, CircuitBreaker, Clock, KvStore};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;
use std::collections::BTreeMap;
use std::time::Duration;

#[allow(missing_docs, reason = "generated bindings")]
mod cron {
    spin_sdk::wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

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

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let response = match Incoming::read(request, 0).await {
        Ok(request) => route(&request).await,
        Err(error) => error.into_response(),
    };
    guest_kit::send(out, response).await;
}

async fn route(request: &Incoming) -> Response {
    if request.method != Method::Get {
        return guest_kit::method_not_allowed("GET");
    }
    let result = match request.path.as_str() {
        "/health_status" => {
            let refresh = guest_kit::query_pairs(&request.query)
                .any(|(key, value)| key == "refresh" && value != "false" && value != "0");
            health_status(refresh).await
        }
        "/metrics" => metrics(),
        "/health" => Ok(guest_kit::json(
            200,
            &serde_json::json!({"status": "healthy", "service": "orderly"}),
        )),
        other => return guest_kit::not_found(format!("monitor has no endpoint {other}")),
    };
    result.unwrap_or_else(|error| {
        eprintln!("monitor: {error}");
        guest_kit::problem(
            &http_problem::Problem::new(503, "Service Unavailable")
                .with_type("/problems/monitor-unavailable")
                .with_detail(error),
        )
    })
}

struct Sweep;

impl cron::Guest for Sweep {
    fn handle_cron_event(
        _: cron::fermyon::spin_cron::cron_types::Metadata,
    ) -> Result<(), cron::fermyon::spin_cron::cron_types::Error> {
        spin_sdk::http::run(async {
            let settings = Settings::read();
            let now = WallClock.now_ms();
            // Refresh a little early, so a report is never older than the interval.
            match stored_report()? {
                Some((checked_at, _)) if now < checked_at + settings.interval_ms - 500 => Ok(()),
                _ => refresh(&settings).await.map(drop),
            }
        })
        .map_err(cron::fermyon::spin_cron::cron_types::Error::Other)
    }
}

cron::export!(Sweep with_types_in cron);

/// The monitor's settings, from variables.
struct Settings {
    app_url: String,
    interval_ms: u64,
    timeout: Duration,
    degraded_ms: u64,
}

impl Settings {
    fn read() -> Self {
        let millis = |name: &str, default: u64| {
            guest_kit::variable(name)
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(default)
        };
        Self {
            app_url: guest_kit::variable("app_url")
                .unwrap_or_else(|| "http://127.0.0.1:3000".into())
                .trim_end_matches('/')
                .to_owned(),
            interval_ms: millis("monitor_interval_secs", 10) * 1000,
            timeout: Duration::from_millis(millis("monitor_timeout_ms", 2_000)),
            degraded_ms: millis("monitor_degraded_ms", 1_000),
        }
    }
}

async fn health_status(refresh_now: bool) -> Result<Response, String> {
    let settings = Settings::read();
    let now = WallClock.now_ms();
    let report = match stored_report()? {
        Some((checked_at, report))
            if !refresh_now && now.saturating_sub(checked_at) < 2 * settings.interval_ms =>
        {
            report
        }
        _ => refresh(&settings).await?,
    };
    Ok(guest_kit::json(200, &report))
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

/// Probes everything now, stores the report and returns it.
async fn refresh(settings: &Settings) -> Result<serde_json::Value, String> {
    let store = SpinKv::open("default").map_err(|e| e.to_string())?;
    let ledger = Ledger::new(SpinSql::open_default().map_err(|e| e.to_string())?);
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
    .map_err(|e| e.to_string())?;
    match ledger.stats(now) {
        Ok(stats) => {
            let heartbeat = store
                .get(pipeline::HEARTBEAT_KEY)
                .map_err(|e| e.to_string())?
                .and_then(|bytes| serde_json::from_slice::<Heartbeat>(&bytes).ok());
            let limits = WorkerLimits {
                silent_ms: 10_000,
                backlog_ms: 30_000,
            };
            let watching_since = watching_since(&store, now)?;
            services.insert(
                "validator".into(),
                worker_health(
                    heartbeat.as_ref(),
                    watching_since,
                    &stats,
                    breaker.state,
                    now,
                    limits,
                ),
            );
            services.insert("database".into(), healthy());
            services.insert("redis".into(), redis_health());
            let report = HealthReport::new(now, services, BreakerSummary::of(&breaker), &stats);
            let report = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            let stored = serde_json::json!({"checked_at_ms": now.millis(), "report": report});
            store
                .set(SNAPSHOT_KEY, stored.to_string().as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(report)
        }
        Err(error) => Err(format!("the database does not answer: {error}")),
    }
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

fn metrics() -> Result<Response, String> {
    let store = SpinKv::open("default").map_err(|e| e.to_string())?;
    let ledger = Ledger::new(SpinSql::open_default().map_err(|e| e.to_string())?);
    let now = Timestamp(WallClock.now_ms());
    let breaker = CircuitBreaker::new(
        &store,
        &WallClock,
        pipeline::DEPENDENCY,
        BreakerPolicy::default(),
    );
    let inputs = MetricsInputs {
        stats: ledger.stats(now).map_err(|e| e.to_string())?,
        totals: pipeline::read_totals(&store).map_err(|e| e.to_string())?,
        breaker: pipeline::DEPENDENCY.into(),
        record: breaker.record_snapshot().map_err(|e| e.to_string())?,
        transitions: breaker.transition_counts().map_err(|e| e.to_string())?,
    };
    Ok(Response::builder()
        .status(200)
        .header("content-type", monitor_core::METRICS_CONTENT_TYPE)
        .body(monitor_core::render_metrics(&inputs))
        .build())
}
