//! Two `orderly up` processes sharing one `redis-server` (their key-value store and their
//! Redis address), as two instances of one deployment: a client's rate limit is one limit
//! across both, and the circuit breaker one host's calls open holds the other's calls back
//! too. Then the validator comes back and every order on both hosts must be validated.

use crate::app::RunningApp;
use crate::app_http::Http;
use crate::control::{BreakerState, Control, FaultMode};
use crate::report::Findings;
use crate::settle::wait_final;
use anyhow::{Context as _, bail};
use http::Method;
use redis_runner::RedisServer;
use serde_json::json;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The client whose requests both hosts count.
const CLIENT_KEY: &str = "fleet-client";
/// Orders host A sends while the validator is down, at most, waiting for its breaker to open.
const MOST_ORDERS_TO_TRIP: usize = 200;
/// How often a breaker is read while waiting for it.
const BREAKER_POLL: Duration = Duration::from_millis(50);
/// The most validator calls host B's orders may cause while the circuit is open: probes, which
/// one host or the other makes once the open period passes.
const MOST_CALLS_WHILE_OPEN: u64 = 3;
/// How long the breaker may take to close once the validator is back.
const CLOSE_LIMIT: Duration = Duration::from_secs(30);

/// What the experiment is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The client's limit (and burst) per day, which both hosts share.
    pub limit: u32,
    /// Orders host B sends while the circuit is open.
    pub orders_while_open: usize,
    /// The longest wait for every order to be validated once the validator is back.
    pub timeout: Duration,
}

impl Settings {
    /// The standard run: a limit of 50, 40 orders while open; `quick`: 20 and 10.
    pub fn standard(quick: bool) -> Self {
        Self {
            limit: if quick { 20 } else { 50 },
            orders_while_open: if quick { 10 } else { 40 },
            timeout: Duration::from_secs(120),
        }
    }
}

/// Runs the experiment on two fresh `orderly up`s sharing a `redis-server` of its own.
pub async fn findings(settings: &Settings) -> anyhow::Result<Findings> {
    let redis = RedisServer::start().map_err(|error| {
        anyhow::anyhow!(
            "cannot run redis-server ({error}); install it: apt-get install redis-server"
        )
    })?;
    let config = tempfile::tempdir()?;
    let runtime_config = config.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )?;
    let flags = [
        "--runtime-config-file".to_owned(),
        runtime_config.display().to_string(),
    ];
    let variables = [
        format!("rate_limit={}", settings.limit),
        format!("rate_limit_burst={}", settings.limit),
        "rate_limit_period_secs=86400".to_owned(),
    ];
    let url = redis.url();
    let first = RunningApp::start_on(Some(&url), &flags, &variables).await?;
    let second = match RunningApp::start_on(Some(&url), &flags, &variables).await {
        Ok(second) => second,
        Err(error) => {
            first.stop(false).await;
            return Err(error);
        }
    };
    let found = experiment(settings, [&first.http, &second.http]).await;
    first.stop(false).await;
    second.stop(false).await;
    found
}

async fn experiment(settings: &Settings, hosts: [&Http; 2]) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    findings.configure("hosts", 2);
    findings.configure(
        "shared store",
        "one redis-server (key-value store and Redis address)",
    );
    findings.configure(
        "rate limit",
        format!("{} a day, burst {}", settings.limit, settings.limit),
    );
    findings.configure("orders while open (host B)", settings.orders_while_open);

    let allowed = rate_limit(settings, hosts).await?;
    let outage = outage(settings, hosts).await?;

    let out = &mut findings.body;
    writeln!(
        out,
        "Host A and host B are two `orderly up` processes whose key-value store and Redis \
         address are the same `redis-server`, each with its own SQLite ledger.\n"
    )?;
    writeln!(
        out,
        "## One rate limit\n\n{} requests of client `{CLIENT_KEY}`, alternating between the \
         hosts (`GET /api/orders/…` through each gateway):\n\n| host | allowed | refused (429) |\n|---|---:|---:|",
        settings.limit * 2
    )?;
    for (name, (ok, refused)) in ["A", "B"].iter().zip(allowed) {
        writeln!(out, "| {name} | {ok} | {refused} |")?;
    }
    writeln!(
        out,
        "\n## One circuit breaker\n\n| figure | value |\n|---|---|"
    )?;
    for (name, value) in [
        (
            "orders host A sent until its breaker opened",
            outage.orders_to_trip.to_string(),
        ),
        (
            "host B saw the breaker open",
            format!(
                "{:.1} ms after host A did",
                outage.seen_on_second.as_secs_f64() * 1000.0
            ),
        ),
        (
            "the breaker's `since` on A / B",
            format!("{} / {}", outage.since_first, outage.since_second),
        ),
        (
            "validator calls while host B sent its orders",
            outage.calls_while_open.to_string(),
        ),
        (
            "host B's orders accepted (202)",
            format!(
                "{} of {}",
                outage.accepted_on_second, settings.orders_while_open
            ),
        ),
        (
            "host B's orders held back by its worker (`deferred`)",
            outage.held_back_on_second.to_string(),
        ),
        (
            "breaker closed after the validator came back",
            outage.closed_after.map_or("no".to_owned(), |after| {
                format!("{:.2} s", after.as_secs_f64())
            }),
        ),
        (
            "trips in a row, read on A / B while open",
            format!("{} / {}", outage.trips[0], outage.trips[1]),
        ),
        (
            "orders not validated after the recovery (A + B)",
            outage.not_validated.to_string(),
        ),
    ] {
        writeln!(out, "| {name} | {value} |")?;
    }

    let total_allowed = allowed[0].0 + allowed[1].0;
    let second_open = outage.second_state == BreakerState::Open;
    findings.figure("allowed_requests", total_allowed as f64);
    findings.figure("calls_while_open", outage.calls_while_open as f64);
    findings.figure(
        "seen_on_second_ms",
        outage.seen_on_second.as_secs_f64() * 1000.0,
    );
    findings.check(
        format!(
            "One rate limit: of {} requests by one client spread over both hosts, exactly its \
             burst of {} are allowed (each host alone would allow {} more)",
            settings.limit * 2,
            settings.limit,
            settings.limit
        ),
        format!(
            "{total_allowed} allowed (A {}, B {})",
            allowed[0].0, allowed[1].0
        ),
        total_allowed == u64::from(settings.limit) && allowed[0].0 > 0 && allowed[1].0 > 0,
    );
    findings.check(
        "One breaker: the circuit host A's calls opened is open on host B too (the same record: \
         same `since`, same trip count)",
        format!(
            "B saw it {:?} {:.1} ms after A; since {} / {}; trips {} / {}",
            outage.second_state,
            outage.seen_on_second.as_secs_f64() * 1000.0,
            outage.since_first,
            outage.since_second,
            outage.trips[0],
            outage.trips[1]
        ),
        second_open && outage.since_first == outage.since_second && outage.trips == [1, 1],
    );
    findings.check(
        format!(
            "While it is open, host B's orders are accepted (202) and held back by host B's \
             worker (a `deferred` event each) without calling the validator (at most \
             {MOST_CALLS_WHILE_OPEN} probe calls)"
        ),
        format!(
            "{} of {} accepted, {} deferred; {} validator calls",
            outage.accepted_on_second,
            settings.orders_while_open,
            outage.held_back_on_second,
            outage.calls_while_open
        ),
        outage.accepted_on_second == settings.orders_while_open
            && outage.held_back_on_second == settings.orders_while_open
            && outage.calls_while_open <= MOST_CALLS_WHILE_OPEN,
    );
    findings.check(
        format!(
            "Once the validator is back the breaker closes within {} s and every order on both \
             hosts is validated within {} s",
            CLOSE_LIMIT.as_secs(),
            settings.timeout.as_secs()
        ),
        format!(
            "closed: {}; {} orders not validated",
            outage.closed_after.map_or("no".to_owned(), |after| format!(
                "after {:.2} s",
                after.as_secs_f64()
            )),
            outage.not_validated
        ),
        outage.closed_after.is_some() && outage.not_validated == 0,
    );
    Ok(findings)
}

/// Twice the limit in requests by one client, alternating hosts: (allowed, refused) per host.
async fn rate_limit(settings: &Settings, hosts: [&Http; 2]) -> anyhow::Result<[(u64, u64); 2]> {
    let mut counts = [(0, 0); 2];
    for n in 0..settings.limit * 2 {
        let host = usize::from(n % 2 == 1);
        let (status, body) = hosts[host]
            .call(
                Method::GET,
                "/api/orders/fleet-none",
                &[("x-api-key", CLIENT_KEY)],
                None,
            )
            .await?;
        match status {
            429 => counts[host].1 += 1,
            // The order does not exist: the request was let through to `orders`.
            404 => counts[host].0 += 1,
            other => bail!(
                "GET /api/orders/fleet-none: {other} {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    Ok(counts)
}

/// What the outage showed.
struct Outage {
    orders_to_trip: usize,
    seen_on_second: Duration,
    since_first: String,
    since_second: String,
    second_state: BreakerState,
    calls_while_open: u64,
    accepted_on_second: usize,
    held_back_on_second: usize,
    closed_after: Option<Duration>,
    trips: [u64; 2],
    not_validated: usize,
}

/// The validator down: host A's orders open the breaker, host B's find it open; then the
/// validator back, and every order awaited.
async fn outage(settings: &Settings, hosts: [&Http; 2]) -> anyhow::Result<Outage> {
    let controls = hosts.map(|http| Control::new(http.address));
    controls[0].configure(FaultMode::Down, None).await?;
    let mut ids: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut opened = None;
    for n in 0..MOST_ORDERS_TO_TRIP {
        let id = format!("fleet-a-{n}");
        create(hosts[0], &id).await?;
        ids[0].push(id);
        if controls[0].breaker().await?.state == BreakerState::Open {
            opened = Some(Instant::now());
            break;
        }
        tokio::time::sleep(BREAKER_POLL).await;
    }
    let opened = opened.with_context(|| {
        format!("host A's breaker did not open after {MOST_ORDERS_TO_TRIP} orders")
    })?;
    let orders_to_trip = ids[0].len();
    let first = controls[0].breaker().await?;
    let second = loop {
        let breaker = controls[1].breaker().await?;
        if breaker.state == BreakerState::Open || opened.elapsed() > Duration::from_secs(5) {
            break breaker;
        }
        tokio::time::sleep(BREAKER_POLL).await;
    };
    let seen_on_second = opened.elapsed();
    let trips = [first.trips, second.trips];

    let calls_before = controls[1].validator_calls().await?;
    let mut accepted_on_second = 0;
    for n in 0..settings.orders_while_open {
        let id = format!("fleet-b-{n}");
        if create(hosts[1], &id).await? {
            accepted_on_second += 1;
            ids[1].push(id);
        }
    }
    // Give host B's worker time to take its jobs up (and hold them back).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_while_open = controls[1]
        .validator_calls()
        .await?
        .saturating_sub(calls_before);

    controls[0].configure(FaultMode::Normal, None).await?;
    let back = Instant::now();
    let mut closed_after = None;
    while back.elapsed() < CLOSE_LIMIT {
        if controls[1].breaker().await?.state == BreakerState::Closed {
            closed_after = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(BREAKER_POLL).await;
    }
    let mut held_back_on_second = 0;
    for id in &ids[1] {
        let timeline = hosts[1]
            .expect_ok(Method::GET, &format!("/orders/{id}/events"), None)
            .await?;
        let events = timeline["events"].as_array().cloned().unwrap_or_default();
        if events.iter().any(|event| event["kind"] == "deferred") {
            held_back_on_second += 1;
        }
    }
    let mut not_validated = 0;
    for (http, ids) in hosts.iter().zip(&ids) {
        not_validated += wait_final(http, ids, settings.timeout).await.len();
        for id in ids {
            let order = http
                .expect_ok(Method::GET, &format!("/orders/{id}"), None)
                .await?;
            if order["status"] == "rejected" || order["status"] == "failed" {
                not_validated += 1;
            }
        }
    }
    Ok(Outage {
        orders_to_trip,
        seen_on_second,
        since_first: humantime::format_rfc3339_millis(first.since).to_string(),
        since_second: humantime::format_rfc3339_millis(second.since).to_string(),
        second_state: second.state,
        calls_while_open,
        accepted_on_second,
        held_back_on_second,
        closed_after,
        trips,
        not_validated,
    })
}

/// Creates order `id` on `http`; whether it was accepted (202).
async fn create(http: &Http, id: &str) -> anyhow::Result<bool> {
    let body = json!({"order_id": id, "items": [{"product": "Medicine A", "quantity": 2}]});
    let (status, _) = http
        .call(
            Method::POST,
            "/orders",
            &[("idempotency-key", id)],
            Some(body.to_string()),
        )
        .await?;
    Ok(status == 202)
}
