//! `gateway`: the only public entry. Under `/api/...` it passes requests on to the services by
//! service chaining (`http://<component>.spin.internal/...`, see `gateway_core::routes`), so
//! the services need no public route; under `/mesh/...` it shows its traffic, the services'
//! status and its route table.
//!
//! Per request: a request id (`x-request-id`, the client's when valid) and a W3C `traceparent`
//! (a child span for each downstream call), both returned to the client; a per-client rate
//! limit shared by every instance and host through the key-value store (not on `/api/health`
//! and `/mesh/*`); the admin guard on admin routes; the upstream timeout
//! (`gateway_timeout_ms`, or for a `POST` to orders, which may be a synchronous order, at
//! least `sync_deadline_ms` and a second); one log line on stdout; and the traffic counters.
//! The Campus seed's `POST /order` becomes a synchronous order (`gateway_core::campus`).
//!
//! This crate only adapts HTTP and Spin to [`gateway_core`]: decide, call, relay.

mod mesh;

use gateway_core::campus::CampusOrder;
use gateway_core::routes::{self, Access, Forward, Resolution, Service, Target};
use gateway_core::stats::{self, Observation};
use gateway_core::{Client, GatewayError, TrustedProxies, headers};
use guest_kit::{FetchError, Fetched, Incoming, SpinKv, Timeouts, WallClock};
use resilience::{Clock, KvStore, RateDecision, RateLimitPolicy, RateLimiter};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;
use std::time::{Duration, Instant};
use trace_context::{REQUEST_ID_HEADER, TRACEPARENT_HEADER, TraceContext};

/// The largest request body passed on, unless the `max_body_bytes` variable says otherwise.
const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// The upstream timeout, unless the `gateway_timeout_ms` variable says otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// A synchronous order's time, unless the `sync_deadline_ms` variable says otherwise.
const DEFAULT_SYNC_DEADLINE_MS: u64 = 5_000;
/// How much longer than a synchronous order's time the gateway waits for its answer (the
/// orders service answers at its deadline, after recording what it undid).
const SYNC_GRACE_MS: u64 = 1_000;
/// The largest answer relayed.
const MAX_ANSWER: usize = 16 << 20;
/// The rate limiter's name in the store (`ratelimit/gateway/...`).
const LIMITER: &str = "gateway";

/// The gateway's settings, read from its variables for each request.
struct Settings {
    policy: RateLimitPolicy,
    trusted_proxies: TrustedProxies,
    timeout: Duration,
    sync_timeout: Duration,
    max_body: usize,
}

impl Settings {
    /// Reads the variables; a bad value is logged and its default used.
    fn read() -> Self {
        let policy = RateLimitPolicy::from_variables(guest_kit::variable).unwrap_or_else(|error| {
            eprintln!("gateway: {error}; using the default rate limit");
            RateLimitPolicy::default()
        });
        let trusted_proxies =
            TrustedProxies::parse(&guest_kit::variable("trusted_proxies").unwrap_or_default())
                .unwrap_or_else(|error| {
                    eprintln!("gateway: {error}; trusting no proxy");
                    TrustedProxies::default()
                });
        let timeout = guest_kit::millis_variable("gateway_timeout_ms", DEFAULT_TIMEOUT_MS)
            .unwrap_or_else(|error| {
                eprintln!("gateway: {error}; using {DEFAULT_TIMEOUT_MS} ms");
                Duration::from_millis(DEFAULT_TIMEOUT_MS)
            });
        let sync_deadline =
            guest_kit::millis_variable("sync_deadline_ms", DEFAULT_SYNC_DEADLINE_MS)
                .unwrap_or_else(|error| {
                    eprintln!("gateway: {error}; using {DEFAULT_SYNC_DEADLINE_MS} ms");
                    Duration::from_millis(DEFAULT_SYNC_DEADLINE_MS)
                });
        let sync_timeout = timeout.max(sync_deadline + Duration::from_millis(SYNC_GRACE_MS));
        let max_body = guest_kit::variable("max_body_bytes")
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_BODY);
        Self {
            policy,
            trusted_proxies,
            timeout,
            sync_timeout,
            max_body,
        }
    }

    /// The same timeout for every stage of an upstream call.
    fn timeouts(&self) -> Timeouts {
        every_stage(self.timeout)
    }

    /// How long a call of `method` to `service` may take: a `POST` to orders may run a
    /// synchronous order.
    fn timeout_for(&self, method: &Method, service: Service) -> Duration {
        match (method, service) {
            (Method::Post, Service::Orders) => self.sync_timeout,
            _ => self.timeout,
        }
    }
}

/// `timeout` for every stage of a call.
fn every_stage(timeout: Duration) -> Timeouts {
    Timeouts {
        connect: timeout,
        first_byte: timeout,
        between_bytes: timeout,
    }
}

/// A fresh random number for ids (the host's `wasi:random`).
fn random() -> u64 {
    guest_kit::random_seed()
}

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let started = Instant::now();
    let at_ms = WallClock.now_ms();
    let settings = Settings::read();
    let mut incoming = Incoming::head(&request);
    let trace = TraceContext::incoming(
        incoming.header(REQUEST_ID_HEADER),
        incoming.header(TRACEPARENT_HEADER),
        &mut random,
    );
    let method = incoming.method.to_string();
    let resolution = routes::resolve(&method, &incoming.path, &incoming.query);
    let client = Client::identify(
        incoming.header("x-api-key"),
        incoming.header("spin-client-addr"),
        incoming.header("x-forwarded-for"),
        &settings.trusted_proxies,
    )
    .key();
    let store = SpinKv::open("default")
        .inspect_err(|error| eprintln!("gateway: {error}"))
        .ok();
    let decision = match &store {
        Some(store) if routes::rate_limited(&incoming.path) => {
            RateLimiter::new(store, &WallClock, LIMITER, &settings.policy)
                .check(&client)
                .inspect_err(|error| {
                    // Fail open: a store outage must not take the whole API down.
                    eprintln!("gateway: rate limiter: {}", guest_kit::error_chain(error));
                })
                .ok()
        }
        _ => None,
    };
    let mut response = match decision {
        Some(RateDecision {
            allowed: false,
            retry_after_ms,
            ..
        }) => refuse(&GatewayError::RateLimited {
            retry_after_secs: retry_after_ms.div_ceil(1_000).max(1),
        }),
        _ => match incoming.read_body(request, settings.max_body).await {
            Ok(()) => answer(&incoming, &resolution, &trace, &settings, store.as_ref()).await,
            Err(error) => error.into_response(),
        },
    };
    response.set_header(REQUEST_ID_HEADER, trace.request_id.to_string());
    response.set_header(TRACEPARENT_HEADER, trace.span.to_string());
    for (name, value) in decision.iter().flat_map(RateDecision::headers) {
        response.set_header(name, value);
    }
    let status = *response.status();
    let latency_ms = started.elapsed().as_millis() as u64;
    guest_kit::send(out, response).await;
    // The client has its answer: log and count.
    println!(
        "gateway {method} {} {status} {latency_ms}ms request_id={} client={} route={} traceparent={}",
        incoming.path,
        trace.request_id,
        &client.as_str()[..12],
        resolution.route(),
        trace.span
    );
    if let Some(store) = &store {
        let observation = Observation {
            at_ms,
            route: resolution.route(),
            status,
            latency_ms,
            limited: decision.is_some_and(|decision| !decision.allowed),
        };
        if let Err(error) = record(store, &observation) {
            eprintln!("gateway: traffic stats: {error}");
        }
    }
}

/// The answer to an admitted request.
async fn answer(
    request: &Incoming,
    resolution: &Resolution,
    trace: &TraceContext,
    settings: &Settings,
    store: Option<&SpinKv>,
) -> Response {
    match resolution {
        Resolution::NotFound => refuse(&GatewayError::NotFound {
            path: request.path.clone(),
        }),
        Resolution::MethodNotAllowed { allow, .. } => {
            let mut response = refuse(&GatewayError::MethodNotAllowed { allow });
            response.set_header("allow", *allow);
            response
        }
        Resolution::Found { target, .. } => match target {
            Target::Health => guest_kit::json(
                200,
                &serde_json::json!({"status": "healthy", "service": "gateway"}),
            ),
            Target::Mesh(view) => mesh::view(*view, trace, settings, store).await,
            Target::Forward(forward) => {
                if forward.access == Access::Admin
                    && let Err(refusal) = guest_kit::access::admin(request)
                {
                    return refusal;
                }
                pass_on(request, forward, trace, settings).await
            }
            Target::CampusOrder => campus_order(request, trace, settings).await,
        },
    }
}

/// Calls the service with the request's method, body and allowed headers, and relays its
/// answer.
async fn pass_on(
    request: &Incoming,
    forward: &Forward,
    trace: &TraceContext,
    settings: &Settings,
) -> Response {
    let sent: Vec<(&str, String)> = headers::forwarded(forward.access)
        .iter()
        .filter_map(|name| request.header(name).map(|value| (*name, value.to_owned())))
        .collect();
    let body = request.body.clone();
    match call(&request.method, forward, sent, body, trace, settings).await {
        Ok(answer) => relay(answer),
        Err(error) => refuse(&error),
    }
}

/// The Campus seed's `POST /order`: a synchronous order (with a fresh idempotency key: the
/// seed sends none), answered in the seed's shape.
async fn campus_order(request: &Incoming, trace: &TraceContext, settings: &Settings) -> Response {
    let order = match CampusOrder::parse(&request.body) {
        Ok(order) => order,
        Err(error) => return guest_kit::json(400, &serde_json::json!({ "error": error })),
    };
    let forward = Forward {
        service: Service::Orders,
        path: "/?mode=sync".into(),
        access: Access::Public,
    };
    let mut sent = vec![
        ("content-type", "application/json".to_owned()),
        (
            "idempotency-key",
            format!("campus-{:016x}{:016x}", random(), random()),
        ),
    ];
    sent.extend(
        request
            .header("prefer")
            .map(|value| ("prefer", value.to_owned())),
    );
    match call(
        &Method::Post,
        &forward,
        sent,
        order.order_body(),
        trace,
        settings,
    )
    .await
    {
        Ok(answer) => {
            let (status, body) = order.answer(answer.status, &answer.body);
            guest_kit::json(status, &body)
        }
        Err(error) => {
            let problem = error.problem();
            let status = problem.status;
            let body = serde_json::json!({ "error": problem.detail.unwrap_or(problem.title) });
            guest_kit::json(status, &body)
        }
    }
}

/// Calls the service with `headers` (and the trace's), within the route's timeout.
async fn call(
    method: &Method,
    forward: &Forward,
    mut headers: Vec<(&str, String)>,
    body: Vec<u8>,
    trace: &TraceContext,
    settings: &Settings,
) -> Result<Fetched, GatewayError> {
    headers.extend(trace.child(&mut random).headers());
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let timeout = settings.timeout_for(method, forward.service);
    let service = forward.service.component();
    guest_kit::fetch(
        method.clone(),
        &forward.url(),
        &headers,
        body,
        every_stage(timeout),
        MAX_ANSWER,
    )
    .await
    .map_err(|error| upstream_error(service, error, timeout))
}

/// The service's answer as the client gets it: its status, body and own headers.
fn relay(answer: Fetched) -> Response {
    let mut response = Response::builder();
    response.status(answer.status);
    for (name, value) in &answer.headers {
        if let (true, Ok(value)) = (headers::returned(name), std::str::from_utf8(value)) {
            response.header(name.as_str(), value);
        }
    }
    response.body(answer.body).build()
}

/// An upstream call's failure, as the gateway answers it.
fn upstream_error(service: &'static str, error: FetchError, timeout: Duration) -> GatewayError {
    match error {
        FetchError::Timeout(_) => GatewayError::UpstreamTimeout {
            service,
            timeout_ms: timeout.as_millis() as u64,
        },
        FetchError::Connect(detail) => GatewayError::UpstreamUnavailable { service, detail },
        other @ (FetchError::BadUrl(_)
        | FetchError::Denied
        | FetchError::TooLarge(_)
        | FetchError::Other(_)) => GatewayError::BadGateway {
            service,
            detail: other.to_string(),
        },
    }
}

/// The gateway's own answer for `error`, a problem.
fn refuse(error: &GatewayError) -> Response {
    guest_kit::problem(&error.problem())
}

/// Counts one request; the first of its kind in a minute also deletes the minutes past the
/// window.
fn record(store: &SpinKv, observation: &Observation<'_>) -> Result<(), guest_kit::KvError> {
    let first_of_minute = store.increment(&observation.counter_key(), 1)? == 1;
    if first_of_minute {
        let expired: Vec<String> = store
            .keys_with_prefix(stats::PREFIX)?
            .into_iter()
            .filter(|key| stats::expired(key, observation.at_ms))
            .collect();
        store.delete_many(&expired)?;
    }
    Ok(())
}
