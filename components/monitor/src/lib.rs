//! `monitor`: the health monitor and the metrics endpoint.
//!
//! - `GET /health_status`: every service's health (probed over HTTP concurrently, with
//!   timeouts), the validation worker's (from its heartbeat and queue), Redis and the
//!   database, the circuit breaker, the job queue, dead letters and orders by status. It
//!   serves the latest report, refreshed by the cron-triggered `monitor-refresh` every
//!   `monitor_interval_secs`; with `?refresh=true`, or when the report is missing or stale, it
//!   probes first ([`monitor_kit`]). It never answers "no data".
//! - `GET /metrics`: the pipeline's Prometheus metrics ([`monitor_core`]).
//! - `GET /health`: the monitor's own health.

use guest_kit::{Incoming, SpinKv, SpinSql, WallClock};
use ledger::Ledger;
use monitor_core::MetricsInputs;
use orders_core::Timestamp;
use resilience::{BreakerPolicy, CircuitBreaker, Clock};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    guest_kit::serve(request, out, 0, route).await;
}

async fn route(request: &Incoming) -> Response {
    if request.method != Method::Get {
        return guest_kit::method_not_allowed("GET");
    }
    let result = match request.path.as_str() {
        "/health_status" => {
            let refresh = guest_kit::query_pairs(&request.query)
                .any(|(key, value)| key == "refresh" && value != "false" && value != "0");
            monitor_kit::report(refresh)
                .await
                .map(|report| guest_kit::json(200, &report))
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
