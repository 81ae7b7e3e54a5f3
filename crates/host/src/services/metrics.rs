//! The host's own Prometheus metrics (`orderly up --metrics-listen`): requests by component,
//! route and status with latency histograms; instance slots in use and refused; Redis trigger
//! messages, handler errors and reconnects; cron runs and skips. Always counted (an atomic
//! add per event); served only when asked for. Names start `orderly_host_`, apart from the
//! application's own `orderly_*` metrics.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The content type of [`HostMetrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric of the host, registered in one registry.
pub(crate) struct HostMetrics {
    registry: Registry,
    /// Requests answered, by `component`, `route` and `status` (`-` when no component ran).
    pub(crate) http_requests: IntCounterVec,
    /// Request latency, by `component` and `route`.
    pub(crate) http_duration: HistogramVec,
    /// Instances running now, by `trigger`.
    pub(crate) instances_in_use: IntGaugeVec,
    /// Instances refused (no slot free, or too many requests waiting), by `trigger`.
    pub(crate) instances_refused: IntCounterVec,
    /// Redis messages handed to a component, by `component` and `channel`.
    pub(crate) redis_messages: IntCounterVec,
    /// Redis handlers that failed or returned an error, by `component` and `channel`.
    pub(crate) redis_errors: IntCounterVec,
    /// Subscriptions re-established after a lost connection, by `address`.
    pub(crate) redis_reconnects: IntCounterVec,
    /// Cron runs started, by `component`.
    pub(crate) cron_runs: IntCounterVec,
    /// Cron runs skipped, by `component` and `reason` (`overlap`, `no_slot`).
    pub(crate) cron_skips: IntCounterVec,
}

impl HostMetrics {
    /// Every metric, at zero.
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("a valid metric name and labels");
            registry
                .register(Box::new(counter.clone()))
                .expect("each metric is registered once");
            counter
        };
        let http_requests = counter(
            "orderly_host_http_requests_total",
            "HTTP requests answered by the host, by component, route and status.",
            &["component", "route", "status"],
        );
        let instances_refused = counter(
            "orderly_host_instances_refused_total",
            "Instances refused because no slot was free, by trigger.",
            &["trigger"],
        );
        let redis_messages = counter(
            "orderly_host_redis_messages_total",
            "Redis messages handed to a component, by component and channel.",
            &["component", "channel"],
        );
        let redis_errors = counter(
            "orderly_host_redis_handler_errors_total",
            "Redis handlers that failed or returned an error, by component and channel.",
            &["component", "channel"],
        );
        let redis_reconnects = counter(
            "orderly_host_redis_reconnects_total",
            "Redis subscriptions re-established after a lost connection, by address.",
            &["address"],
        );
        let cron_runs = counter(
            "orderly_host_cron_runs_total",
            "Cron runs started, by component.",
            &["component"],
        );
        let cron_skips = counter(
            "orderly_host_cron_skips_total",
            "Cron runs skipped, by component and reason.",
            &["component", "reason"],
        );
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "orderly_host_http_request_duration_seconds",
                "Time from a request's headers to its response, by component and route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["component", "route"],
        )
        .expect("a valid histogram");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("registered once");
        let instances_in_use = IntGaugeVec::new(
            Opts::new(
                "orderly_host_instances_in_use",
                "Component instances running now, by trigger.",
            ),
            &["trigger"],
        )
        .expect("a valid gauge");
        registry
            .register(Box::new(instances_in_use.clone()))
            .expect("registered once");
        Self {
            registry,
            http_requests,
            http_duration,
            instances_in_use,
            instances_refused,
            redis_messages,
            redis_errors,
            redis_reconnects,
            cron_runs,
            cron_skips,
        }
    }

    /// The exposition text (format 0.0.4).
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(%error, "cannot encode the host's metrics");
        }
        text
    }
}

/// Serves `GET /metrics` on `listener` until `stop` changes (anything else: 404).
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<HostMetrics>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics: accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |request: Request<_>| {
            let response = if request.uri().path() == "/metrics" {
                let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(CONTENT_TYPE),
                );
                response
            } else {
                let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            };
            std::future::ready(Ok::<_, Infallible>(response))
        });
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "metrics: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let metrics = HostMetrics::new();
        metrics
            .http_requests
            .with_label_values(&["orders", "/orders", "202"])
            .inc();
        metrics
            .http_duration
            .with_label_values(&["orders", "/orders"])
            .observe(0.003);
        metrics.instances_in_use.with_label_values(&["http"]).set(2);
        let text = String::from_utf8(metrics.render()).unwrap();
        for line in [
            "orderly_host_http_requests_total{component=\"orders\",route=\"/orders\",status=\"202\"} 1",
            "orderly_host_http_request_duration_seconds_bucket{component=\"orders\",route=\"/orders\",le=\"0.005\"} 1",
            "orderly_host_instances_in_use{trigger=\"http\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
