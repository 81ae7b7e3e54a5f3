//! The saga experiment: `orderly up` serving the real app, random faults in every service at
//! once (inventory, payment, shipping and the validator), a seeded mix of orders (some run a
//! product out of stock, some go over the payment limit, some are cancelled shortly after
//! they are created); then the faults are cleared, every order is awaited to a final status,
//! and the saga's invariants are checked on what the services hold (`saga_audit`). Findings
//! with a verdict per hypothesis.

use crate::app::{RedisChoice, RunningApp};
use crate::app_http::Http;
use crate::report::Findings;
use crate::settle::{last_events, time_to_final, wait_final};
use anyhow::Context as _;
use catalog::Catalog;
use futures::StreamExt as _;
use http::Method;
use saga_audit::audit::Audit;
use saga_audit::mix::{self, Kind, MixSettings, PlannedOrder};
use saga_audit::state::{self, CancelRequest};
use serde_json::json;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The payment limit the app is given (spin.toml's default), which the mix goes over.
pub(crate) const PAYMENT_LIMIT_CENTS: u64 = 1_000_000;
/// The fault controls of every service, by name.
const FAULT_ROUTES: [(&str, &str); 4] = [
    ("inventory", "/internal/inventory/configure"),
    ("payment", "/internal/payment/configure"),
    ("shipping", "/internal/shipping/configure"),
    ("validator (external-sim)", "/external/configure"),
];
/// Tries of an order the app is too busy to take (503) or still taking (409).
const BUSY_TRIES: u32 = 5;
/// The pause between two such tries.
const BUSY_PAUSE: Duration = Duration::from_millis(200);
/// Orders not final whose last events the report shows.
const SHOWN_STUCK: usize = 20;

/// What the experiment is asked to do.
#[derive(Debug, Clone, PartialEq)]
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
}

impl Settings {
    /// The standard run: 5,000 orders, a fifth of every service's calls failing and up to
    /// 10 ms of delay in each, 5 % cancelled within 200 ms; `quick`: 300 orders.
    pub fn standard(seed: u64, quick: bool) -> Self {
        Self {
            orders: if quick { 300 } else { 5_000 },
            seed,
            failure_rate: 0.2,
            max_delay_ms: 10,
            cancel_fraction: 0.05,
            max_cancel_delay: Duration::from_millis(200),
            concurrency: 16,
            timeout: Duration::from_secs(600),
        }
    }
}

/// Runs the experiment on a fresh `orderly up` (with `redis`); what it found.
pub async fn findings(settings: &Settings, redis: RedisChoice) -> anyhow::Result<Findings> {
    let variables = [format!("payment_limit_cents={PAYMENT_LIMIT_CENTS}")];
    let app = RunningApp::start(redis, &variables).await?;
    let found = experiment(settings, &app.http).await;
    app.stop(false).await;
    found
}

async fn experiment(settings: &Settings, http: &Http) -> anyhow::Result<Findings> {
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
    let mut findings = Findings::default();
    findings.configure("orders", settings.orders);
    findings.configure("seed", settings.seed);
    findings.configure("failure rate in every service", settings.failure_rate);
    findings.configure(
        "most delay per service",
        format!("{} ms", settings.max_delay_ms),
    );
    findings.configure("orders in flight", settings.concurrency);
    let out = &mut findings.body;
    writeln!(
        out,
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
    )?;

    writeln!(
        out,
        "## Faults\n\n| service | mode | delay | failure rate | seed |\n|---|---|---:|---:|---:|"
    )?;
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
        writeln!(
            out,
            "| {service} | {mode} | {delay_ms} ms | {} | {seed} |",
            settings.failure_rate
        )?;
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
    let ids: Vec<String> = accepted.iter().map(|(id, _)| id.clone()).collect();
    let stuck = wait_final(http, &ids, settings.timeout).await;
    let settle_time = cleared.elapsed();
    let calls = validator_calls(http).await?.saturating_sub(calls_before);

    writeln!(out, "\n## Run\n\n| figure | value |\n|---|---|")?;
    writeln!(
        out,
        "| orders accepted (202) | {} of {} in {:.2} s ({:.0}/s) |",
        accepted.len(),
        orders.len(),
        send_time.as_secs_f64(),
        accepted.len() as f64 / send_time.as_secs_f64()
    )?;
    let asked = |answer| {
        sent.iter()
            .filter(|order| order.created && order.cancel == answer)
            .count()
    };
    writeln!(
        out,
        "| cancellations accepted / refused (409) / failed | {} / {} / {} |",
        asked(CancelRequest::Accepted),
        asked(CancelRequest::Refused),
        cancel_errors.len()
    )?;
    writeln!(
        out,
        "| faults cleared → every order final | {} |",
        time_to_final(&stuck, settle_time, settings.timeout)
    )?;
    writeln!(out, "| validator calls (external-sim) | {calls} |")?;
    writeln!(out, "| service calls | not counted by the services |")?;
    for order in not_created.iter().take(SHOWN_STUCK) {
        writeln!(
            out,
            "\nNot created: {}: {}",
            order.id,
            order.create_error.as_deref().unwrap_or("?")
        )?;
    }
    for order in cancel_errors.iter().take(SHOWN_STUCK) {
        writeln!(
            out,
            "\nCancellation failed: {}: {}",
            order.id,
            order.cancel_error.as_deref().unwrap_or("?")
        )?;
    }
    if !stuck.is_empty() {
        writeln!(out, "\n## Orders not final\n")?;
        for id in stuck.iter().take(SHOWN_STUCK) {
            writeln!(out, "- {id}: {}", last_events(http, id).await?)?;
        }
        if stuck.len() > SHOWN_STUCK {
            writeln!(out, "- ... and {} more", stuck.len() - SHOWN_STUCK)?;
        }
    }

    eprintln!("reading the services' state");
    let snapshot = state::snapshot(http, &accepted, Vec::new())
        .await
        .map_err(anyhow::Error::msg)?;
    let audit = Audit::of(&snapshot);
    writeln!(out, "\n## Invariants\n\n{}", audit.markdown())?;

    let failed_invariants = audit.checks.iter().filter(|check| !check.holds()).count();
    findings.figure("orders_accepted", accepted.len() as f64);
    findings.figure(
        "accepted_per_second",
        accepted.len() as f64 / send_time.as_secs_f64(),
    );
    findings.figure("settle_secs", settle_time.as_secs_f64());
    findings.figure("failed_invariants", failed_invariants as f64);
    findings.check(
        "Every order is accepted (202) while every service fails a share of its calls",
        format!("{} of {} accepted", accepted.len(), orders.len()),
        not_created.is_empty(),
    );
    findings.check(
        "Every cancellation is answered (202 accepted or 409 too late)",
        format!("{} unanswered", cancel_errors.len()),
        cancel_errors.is_empty(),
    );
    findings.check(
        format!(
            "Every order is final within {} s of the faults being cleared",
            settings.timeout.as_secs()
        ),
        if stuck.is_empty() {
            format!("all final after {:.2} s", settle_time.as_secs_f64())
        } else {
            format!("{} not final", stuck.len())
        },
        stuck.is_empty(),
    );
    findings.check(
        "Every saga invariant holds: stock conserved, each order charged at most once and \
         nothing kept for one not confirmed, no reservation or shipment left behind, every \
         accepted cancellation kept",
        format!(
            "{} of {} invariants failed",
            failed_invariants,
            audit.checks.len()
        ),
        audit.passed(),
    );
    Ok(findings)
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

async fn validator_calls(http: &Http) -> anyhow::Result<u64> {
    let stats = http.expect_ok(Method::GET, "/external/stats", None).await?;
    stats["calls"]
        .as_u64()
        .with_context(|| format!("no calls in {stats}"))
}
