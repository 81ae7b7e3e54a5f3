//! The saga experiment: `orderly up` serving the real app, random faults in every service at
//! once (inventory, payment, shipping and the validator), a seeded mix of orders (some run a
//! product out of stock, some go over the payment limit, some are cancelled shortly after
//! they are created); then the faults are cleared, every order is awaited to a final status,
//! and the saga's invariants are checked on what the services hold (`saga_audit`). A markdown
//! report; an error when an invariant fails or an order never ends.

use crate::pipeline::{app_flags, repository};
use crate::process::{self, Orderly, Server};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use catalog::Catalog;
use futures::StreamExt as _;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use saga_audit::audit::Audit;
use saga_audit::mix::{self, Kind, MixSettings, PlannedOrder};
use saga_audit::state::{self, CancelRequest, Reader, is_final};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The payment limit the app is given (spin.toml's default), which the mix goes over.
const PAYMENT_LIMIT_CENTS: u64 = 1_000_000;
/// The fault controls of every service, by name.
const FAULT_ROUTES: [(&str, &str); 4] = [
    ("inventory", "/internal/inventory/configure"),
    ("payment", "/internal/payment/configure"),
    ("shipping", "/internal/shipping/configure"),
    ("validator (external-sim)", "/external/configure"),
];
/// The longest one request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per request lost in transport (every request the lab sends is idempotent).
const TRANSPORT_TRIES: u32 = 3;
/// Tries of an order the app is too busy to take (503) or still taking (409).
const BUSY_TRIES: u32 = 5;
/// The pause between two such tries.
const BUSY_PAUSE: Duration = Duration::from_millis(200);
/// How often the orders still running are read.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Reads in flight while polling.
const READS_IN_FLIGHT: usize = 16;
/// Orders not final whose last events the report shows.
const SHOWN_STUCK: usize = 20;
/// Events shown per stuck order.
const STUCK_EVENTS: usize = 5;
/// How long `orderly up` may take to stop after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the experiment is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Orders sent.
    pub orders: usize,
    /// Seeds the orders, the cancellations and the faults.
    pub seed: u64,
    /// Share of calls (0 to 1) every service fails while the faults are on.
    pub failure_rate: f64,
    /// The most delay a service adds to each call while the faults are on (each service's
    /// delay is drawn from 1 ms to this; 0 for none).
    pub max_delay_ms: u32,
    /// Share of orders the customer cancels.
    pub cancel_fraction: f64,
    /// The longest wait before a cancellation.
    pub max_cancel_delay: Duration,
    /// Orders in flight at once.
    pub concurrency: usize,
    /// The longest wait for every order to be final once the faults are cleared.
    pub timeout: Duration,
    /// Keep the state dir and print its path.
    pub keep: bool,
}

/// Runs the experiment on a fresh `orderly up` and prints the report.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let began = Instant::now();
    let manifest = repository().join("spin.toml");
    let orderly = Orderly::locate()?;
    eprintln!("building the components of {}", manifest.display());
    orderly.build(&manifest)?;
    let state = tempfile::tempdir()?;
    let address = process::free_address()?;
    let mut flags = app_flags(address, None);
    for variable in [
        format!("services_origin=http://{address}"),
        format!("payment_limit_cents={PAYMENT_LIMIT_CENTS}"),
    ] {
        flags.extend(["--variable".to_owned(), variable]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::orderly_on(&orderly, &manifest, state.path(), address, &flags).await?;
    let outcome = experiment(settings, &Http::new(address)).await;
    server.terminate(SHUTDOWN_GRACE).await;
    if settings.keep {
        println!("\nState dir kept: {}", state.keep().display());
    }
    println!("\nElapsed: {:.1} s in all.", began.elapsed().as_secs_f64());
    match outcome? {
        Verdict::Passed => Ok(()),
        Verdict::Failed(why) => bail!("{why}"),
    }
}

/// How the run ended.
enum Verdict {
    Passed,
    Failed(String),
}

async fn experiment(settings: &Settings, http: &Http) -> anyhow::Result<Verdict> {
    let catalog = Catalog::standard();
    let orders = mix::plan(
        &catalog,
        &MixSettings {
            seed: settings.seed,
            orders: settings.orders,
            cancel_fraction: settings.cancel_fraction,
            max_cancel_delay_ms: u64::try_from(settings.max_cancel_delay.as_millis())?,
            payment_limit_cents: PAYMENT_LIMIT_CENTS,
            id_prefix: format!("saga-{}", settings.seed),
        },
    );
    println!("# Saga under random faults\n");
    println!(
        "`orderly up` on {}; {} orders (seed {}: {} small, {} large of scarce products, {} over \
         the payment limit of {PAYMENT_LIMIT_CENTS} cents; {} cancelled up to {} ms after \
         creation), {} in flight.\n",
        http.address,
        orders.len(),
        settings.seed,
        count_kind(&orders, Kind::Small),
        count_kind(&orders, Kind::Scarce),
        count_kind(&orders, Kind::OverLimit),
        orders.iter().filter(|order| order.cancel).count(),
        settings.max_cancel_delay.as_millis(),
        settings.concurrency,
    );

    println!(
        "## Faults\n\n| service | mode | delay | failure rate | seed |\n|---|---|---:|---:|---:|"
    );
    let mut draws = fastrand::Rng::with_seed(settings.seed);
    for (service, path) in FAULT_ROUTES {
        let delay_ms = match settings.max_delay_ms {
            0 => 0,
            most => draws.u32(1..=most),
        };
        let seed = draws.u64(..);
        let mode = if delay_ms > 0 { "slow" } else { "normal" };
        let mut body = json!({"mode": mode, "failure_rate": settings.failure_rate, "seed": seed});
        if delay_ms > 0 {
            body["delay_ms"] = delay_ms.into();
        }
        http.expect_ok(Method::POST, path, Some(body)).await?;
        println!(
            "| {service} | {mode} | {delay_ms} ms | {} | {seed} |",
            settings.failure_rate
        );
    }
    let calls_before = validator_calls(http).await?;

    eprintln!("sending {} orders", orders.len());
    let sending = Instant::now();
    let sent = send_orders(http, &orders, settings.concurrency).await;
    let send_time = sending.elapsed();
    let accepted: Vec<(String, CancelRequest)> = sent
        .iter()
        .filter(|order| order.created)
        .map(|order| (order.id.clone(), order.cancel))
        .collect();
    let not_created: Vec<&Sent> = sent.iter().filter(|order| !order.created).collect();
    let cancel_errors: Vec<&Sent> = sent
        .iter()
        .filter(|order| order.cancel_error.is_some())
        .collect();

    for (_, path) in FAULT_ROUTES {
        let body = json!({"mode": "normal", "failure_rate": 0.0});
        http.expect_ok(Method::POST, path, Some(body)).await?;
    }
    let cleared = Instant::now();
    eprintln!("faults cleared; waiting for every order to be final");
    let stuck = wait_final(http, &accepted, settings.timeout).await;
    let settle_time = cleared.elapsed();
    let calls = validator_calls(http).await?.saturating_sub(calls_before);

    println!("\n## Run\n\n| figure | value |\n|---|---|");
    println!(
        "| orders accepted (202) | {} of {} in {:.2} s ({:.0}/s) |",
        accepted.len(),
        orders.len(),
        send_time.as_secs_f64(),
        accepted.len() as f64 / send_time.as_secs_f64()
    );
    let asked = |answer| {
        sent.iter()
            .filter(|order| order.created && order.cancel == answer)
            .count()
    };
    println!(
        "| cancellations accepted / refused (409) / failed | {} / {} / {} |",
        asked(CancelRequest::Accepted),
        asked(CancelRequest::Refused),
        cancel_errors.len()
    );
    println!(
        "| faults cleared → every order final | {} |",
        if stuck.is_empty() {
            format!("{:.2} s", settle_time.as_secs_f64())
        } else {
            format!(
                "not within {} s ({} not final)",
                settings.timeout.as_secs(),
                stuck.len()
            )
        }
    );
    println!("| validator calls (external-sim) | {calls} |");
    println!("| service calls | not counted by the services |");
    for order in not_created.iter().take(SHOWN_STUCK) {
        println!(
            "\nNot created: {}: {}",
            order.id,
            order.create_error.as_deref().unwrap_or("?")
        );
    }
    for order in cancel_errors.iter().take(SHOWN_STUCK) {
        println!(
            "\nCancellation failed: {}: {}",
            order.id,
            order.cancel_error.as_deref().unwrap_or("?")
        );
    }
    if !stuck.is_empty() {
        println!("\n## Orders not final\n");
        for id in stuck.iter().take(SHOWN_STUCK) {
            println!("- {id}: {}", last_events(http, id).await?);
        }
        if stuck.len() > SHOWN_STUCK {
            println!("- ... and {} more", stuck.len() - SHOWN_STUCK);
        }
    }

    eprintln!("reading the services' state");
    let snapshot = state::snapshot(http, &accepted, Vec::new())
        .await
        .map_err(anyhow::Error::msg)?;
    let audit = Audit::of(&snapshot);
    println!("\n## Invariants\n\n{}", audit.markdown());

    let mut problems = Vec::new();
    if !audit.passed() {
        let failed = audit.checks.iter().filter(|check| !check.holds()).count();
        problems.push(format!("{failed} invariants failed"));
    }
    if !not_created.is_empty() {
        problems.push(format!("{} orders were not accepted", not_created.len()));
    }
    if !cancel_errors.is_empty() {
        problems.push(format!(
            "{} cancellations got no answer",
            cancel_errors.len()
        ));
    }
    Ok(if problems.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(problems.join("; "))
    })
}

fn count_kind(orders: &[PlannedOrder], kind: Kind) -> usize {
    orders.iter().filter(|order| order.kind == kind).count()
}

/// What happened to one planned order.
struct Sent {
    id: String,
    created: bool,
    create_error: Option<String>,
    cancel: CancelRequest,
    cancel_error: Option<String>,
}

/// Sends every order, `concurrency` at a time; an order to cancel is cancelled its delay after
/// it was accepted.
async fn send_orders(http: &Http, orders: &[PlannedOrder], concurrency: usize) -> Vec<Sent> {
    futures::stream::iter(orders)
        .map(|order| send_order(http, order))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

async fn send_order(http: &Http, order: &PlannedOrder) -> Sent {
    let mut sent = Sent {
        id: order.id.clone(),
        created: false,
        create_error: None,
        cancel: CancelRequest::NotAsked,
        cancel_error: None,
    };
    let headers = [("idempotency-key", order.id.as_str())];
    let mut answer = http
        .call(Method::POST, "/orders", &headers, Some(order.body()))
        .await;
    // A busy store (503) or the first try still in flight (409) asks for the same request
    // again, which the idempotency key makes safe.
    for _ in 1..BUSY_TRIES {
        if !matches!(answer, Ok((503 | 409, _))) {
            break;
        }
        tokio::time::sleep(BUSY_PAUSE).await;
        answer = http
            .call(Method::POST, "/orders", &headers, Some(order.body()))
            .await;
    }
    match answer {
        Ok((202, _)) => sent.created = true,
        Ok((status, body)) => {
            sent.create_error = Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        Err(error) => sent.create_error = Some(format!("{error:#}")),
    }
    if !(sent.created && order.cancel) {
        return sent;
    }
    tokio::time::sleep(Duration::from_millis(order.cancel_after_ms)).await;
    let path = format!("/orders/{}/cancel", order.id);
    match http.call(Method::POST, &path, &[], None).await {
        Ok((202, _)) => sent.cancel = CancelRequest::Accepted,
        Ok((409, _)) => sent.cancel = CancelRequest::Refused,
        Ok((status, body)) => {
            sent.cancel_error = Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        Err(error) => sent.cancel_error = Some(format!("{error:#}")),
    }
    sent
}

/// Polls the orders until every one is final or `limit` passes; the ids of those that are not.
async fn wait_final(
    http: &Http,
    orders: &[(String, CancelRequest)],
    limit: Duration,
) -> Vec<String> {
    let give_up = Instant::now() + limit;
    let mut pending: Vec<String> = orders.iter().map(|(id, _)| id.clone()).collect();
    let mut last_progress = Instant::now();
    loop {
        let statuses: Vec<(String, String)> = futures::stream::iter(&pending)
            .map(|id| async move {
                // A read that fails (the app busy) leaves the order pending for the next poll.
                let status = match state::get_json(http, &format!("/orders/{id}")).await {
                    Ok(Some(order)) => order["status"].as_str().unwrap_or("?").to_owned(),
                    Ok(None) => "missing".to_owned(),
                    Err(_) => "unread".to_owned(),
                };
                (id.clone(), status)
            })
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        pending.clear();
        for (id, status) in statuses {
            if !is_final(&status) {
                *by_status.entry(status).or_default() += 1;
                pending.push(id);
            }
        }
        if pending.is_empty() || Instant::now() >= give_up {
            return pending;
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            eprintln!("  not final yet: {} {by_status:?}", pending.len());
            last_progress = Instant::now();
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The order's status and its last events, in one line.
async fn last_events(http: &Http, id: &str) -> anyhow::Result<String> {
    let order = state::get_json(http, &format!("/orders/{id}"))
        .await
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let events = state::get_json(http, &format!("/orders/{id}/events"))
        .await
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let events = events["events"].as_array().cloned().unwrap_or_default();
    let described: Vec<String> = events
        .iter()
        .skip(events.len().saturating_sub(STUCK_EVENTS))
        .map(|event| {
            let text = |name: &str| event[name].as_str().unwrap_or("").to_owned();
            format!("{} {} {}", text("kind"), text("outcome"), text("detail"))
                .trim()
                .to_owned()
        })
        .collect();
    Ok(format!(
        "{}; last events: {}",
        order["status"].as_str().unwrap_or("?"),
        described.join(" | ")
    ))
}

async fn validator_calls(http: &Http) -> anyhow::Result<u64> {
    let stats = http.expect_ok(Method::GET, "/external/stats", None).await?;
    stats["calls"]
        .as_u64()
        .with_context(|| format!("no calls in {stats}"))
}

type Sender = SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 client for one app, its idle connections pooled.
struct Http {
    address: SocketAddr,
    idle: Mutex<Vec<Sender>>,
}

impl Http {
    fn new(address: SocketAddr) -> Self {
        Self {
            address,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// One request (JSON `body`, if any), its status and body; a request lost in transport is
    /// sent again, up to [`TRANSPORT_TRIES`] times.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut last_error = None;
        for _ in 0..TRANSPORT_TRIES {
            let attempt = self.once(method.clone(), path, headers, body.clone());
            match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(error)) => last_error = Some(error),
                Err(_) => last_error = Some(anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}")),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("not sent"))
            .context(format!("{method} {path} on {}", self.address)))
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut sender = match pooled {
            Some(sender) if !sender.is_closed() => sender,
            _ => crate::load::connect(self.address).await?,
        };
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.address.to_string());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        Ok((status, body))
    }

    /// A request that must succeed; its JSON answer.
    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self
            .call(method.clone(), path, &[], body.map(|body| body.to_string()))
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
        serde_json::from_slice(&answer)
            .with_context(|| format!("{method} {path}: {}", String::from_utf8_lossy(&answer)))
    }
}

impl Reader for Http {
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.call(Method::GET, path, &[], None)
            .await
            .map(|(status, body)| (status, body.to_vec()))
            .map_err(|error| format!("{error:#}"))
    }
}
