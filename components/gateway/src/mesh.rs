//! The `/mesh/*` views: traffic statistics from the store, the services' status by probing
//! their health through service chaining, and the route table with its limits.

use crate::{Settings, random};
use gateway_core::routes::{MeshView, ROUTES, Service};
use gateway_core::stats;
use gateway_core::status::{self, Probe, ProbeOutcome};
use guest_kit::{FetchError, SpinKv, WallClock};
use resilience::{Clock, KvStore};
use serde_json::json;
use spin_sdk::http::{Method, Response};
use std::time::Instant;
use trace_context::TraceContext;

/// The answer for `view`.
pub(crate) async fn view(
    view: MeshView,
    trace: &TraceContext,
    settings: &Settings,
    store: Option<&SpinKv>,
) -> Response {
    match view {
        MeshView::TrafficStats => traffic_stats(store),
        MeshView::ServiceStatus => service_status(trace, settings).await,
        MeshView::RouteInfo => route_info(settings),
    }
}

fn traffic_stats(store: Option<&SpinKv>) -> Response {
    let read = |store: &SpinKv| -> Result<Vec<(String, i64)>, guest_kit::KvError> {
        let keys = store.keys_with_prefix(stats::PREFIX)?;
        let counts = store.counters(&keys)?;
        Ok(keys.into_iter().zip(counts).collect())
    };
    match store.map(read) {
        Some(Ok(counters)) => {
            guest_kit::json(200, &stats::aggregate(&counters, WallClock.now_ms()))
        }
        Some(Err(error)) => store_unavailable(&error.to_string()),
        None => store_unavailable("the key-value store cannot be opened"),
    }
}

fn store_unavailable(detail: &str) -> Response {
    guest_kit::problem(
        &http_problem::Problem::new(503, "Service Unavailable")
            .with_type("/problems/stats-unavailable")
            .with_detail(detail),
    )
}

/// Probes every service's `GET /health` at once.
async fn service_status(trace: &TraceContext, settings: &Settings) -> Response {
    let probes = Service::ALL.map(|service| async move {
        let headers = trace.child(&mut random).headers();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let started = Instant::now();
        let answer = guest_kit::fetch(
            Method::Get,
            &format!("{}/health", service.origin()),
            &headers,
            Vec::new(),
            settings.timeouts(),
            64 * 1024,
        )
        .await;
        let outcome = match answer {
            Ok(answer) => ProbeOutcome::Answered(answer.status),
            Err(FetchError::Timeout(_)) => ProbeOutcome::Timeout,
            Err(error) => ProbeOutcome::Failed(error.to_string()),
        };
        Probe {
            service,
            outcome,
            latency_ms: started.elapsed().as_millis() as u64,
        }
    });
    let probes = futures::future::join_all(probes).await;
    guest_kit::json(200, &status::view(&probes))
}

fn route_info(settings: &Settings) -> Response {
    let policy = &settings.policy;
    guest_kit::json(
        200,
        &json!({
            "routes": ROUTES,
            "rate_limit": {
                "limit": policy.limit,
                "period_secs": policy.period_ms / 1_000,
                "burst": policy.burst,
                "keyed_by": "x-api-key, else the client address (x-forwarded-for only from trusted_proxies)",
            },
            "upstream_timeout_ms": settings.timeout.as_millis() as u64,
        }),
    )
}
