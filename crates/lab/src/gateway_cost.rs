//! What the gateway costs: the same read (`GET` one order) straight from the `orders`
//! component's public route and through the gateway (`/api/orders/:id`: a rate-limit decision
//! in the key-value store, then the private route by service chaining), interleaved in rounds
//! on one `orderly up`; then the rate limiter alone, every request refused (429) by a limit of
//! one request a day.

use crate::app::{RedisChoice, RunningApp};
use crate::load::{self, LoadReport, Requests};
use crate::settle::wait_final;
use anyhow::{Context as _, bail};
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

/// The order every request reads.
const ORDER_ID: &str = "gateway-cost-1";
/// How long the order may take to be final before the loads start.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// What the experiment is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Seconds of load per measurement.
    pub load: Duration,
    /// Rounds of (direct, gateway) measurements, interleaved.
    pub rounds: usize,
}

/// Runs the experiment on two fresh `orderly up`s (limit lifted; limit of one a day) and prints
/// the report.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    println!("# The gateway's cost\n");
    let lifted = RunningApp::start(
        RedisChoice::Embedded,
        &[
            "rate_limit=1000000".to_owned(),
            "rate_limit_burst=1000000".to_owned(),
            "rate_limit_period_secs=1".to_owned(),
        ],
    )
    .await?;
    let compared = compare(settings, &lifted).await;
    lifted.stop(false).await;
    compared?;

    let strict = RunningApp::start(
        RedisChoice::Embedded,
        &[
            "rate_limit=1".to_owned(),
            "rate_limit_burst=1".to_owned(),
            "rate_limit_period_secs=86400".to_owned(),
        ],
    )
    .await?;
    let refused = refusals(settings, &strict).await;
    strict.stop(false).await;
    refused
}

/// The read straight and through the gateway, in interleaved rounds.
async fn compare(settings: &Settings, app: &RunningApp) -> anyhow::Result<()> {
    let http = &app.http;
    let body = json!({"order_id": ORDER_ID, "items": [{"product": "Burger", "quantity": 1}]});
    let (status, answer) = http
        .call(
            Method::POST,
            "/api/orders",
            &[("idempotency-key", ORDER_ID)],
            Some(body.to_string()),
        )
        .await?;
    if status != 202 {
        bail!(
            "creating the order: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    if !wait_final(http, &[ORDER_ID.to_owned()], SETTLE_LIMIT)
        .await
        .is_empty()
    {
        bail!("{ORDER_ID} was not final within {SETTLE_LIMIT:?}");
    }
    let straight_path = format!("/orders/{ORDER_ID}");
    let gateway_path = format!("/api/orders/{ORDER_ID}");
    let targets = [
        (
            "straight (`orders`' public route)",
            Requests {
                path: straight_path,
                ..Requests::default()
            },
        ),
        (
            "through the gateway, a client per connection (`x-api-key`)",
            Requests {
                path: gateway_path.clone(),
                api_key_prefix: Some("lab".to_owned()),
                ..Requests::default()
            },
        ),
        (
            "through the gateway, one client on every connection",
            Requests {
                path: gateway_path,
                ..Requests::default()
            },
        ),
    ];
    println!(
        "`GET` one order on `orderly up` ({}), {} keep-alive connections, {} s per \
         measurement, {} interleaved rounds; the rate limit lifted (10^6/s), so every gateway \
         request makes one allowed decision (a key-value read and compare-and-swap) and one \
         traffic-counter increment. With one client on every connection, its concurrent \
         requests race for its one key.\n",
        http.address,
        settings.connections,
        settings.load.as_secs(),
        settings.rounds
    );
    let mut reports: Vec<Vec<LoadReport>> = vec![Vec::new(); targets.len()];
    for round in 1..=settings.rounds {
        for (index, (name, requests)) in targets.iter().enumerate() {
            eprintln!("round {round}: {name}");
            let report =
                load::run_with(http.address, requests, settings.connections, settings.load)
                    .await
                    .with_context(|| format!("loading {}", requests.path))?;
            reports[index].push(report);
        }
    }
    println!("| path | requests/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|");
    let merged: Vec<LoadReport> = reports.iter().map(|runs| LoadReport::merge(runs)).collect();
    for ((name, _), report) in targets.iter().zip(&merged) {
        println!("{}", report.markdown_row(name));
    }
    let straight = &merged[0];
    for ((name, _), report) in targets.iter().zip(&merged).skip(1) {
        println!(
            "\n{name}: {:.2}× the requests/s and {:.2}× the p99 of the straight read.",
            report.requests_per_second() / straight.requests_per_second(),
            report.percentile_ms(99.0) / straight.percentile_ms(99.0)
        );
    }
    println!();
    Ok(())
}

/// Every request refused by the limiter: how many decisions per second it makes.
async fn refusals(settings: &Settings, app: &RunningApp) -> anyhow::Result<()> {
    let http = &app.http;
    let path = format!("/api/orders/{ORDER_ID}");
    // The one request allowed today (forwarded: 404, this app has no orders).
    let (status, _) = http.call(Method::GET, &path, &[], None).await?;
    if status == 429 {
        bail!("the first request of the day was refused");
    }
    let duration = settings.load * u32::try_from(settings.rounds)?;
    let requests = Requests {
        path,
        expected: Some(StatusCode::TOO_MANY_REQUESTS),
        api_key_prefix: None,
    };
    let report = load::run_with(http.address, &requests, settings.connections, duration).await?;
    println!(
        "Rate limit of one request a day, the same load for {} s: every request refused by \
         the limiter (429: the decision reads the client's state and writes nothing; the \
         traffic counter is one increment).\n",
        duration.as_secs()
    );
    println!("| refused decisions/s | p50 | p99 | other answers |\n|---:|---:|---:|---:|");
    println!(
        "| {:.0} | {:.2} ms | {:.2} ms | {} |",
        report.requests_per_second(),
        report.percentile_ms(50.0),
        report.percentile_ms(99.0),
        report.errors
    );
    if report.errors > 0 {
        bail!("{} answers were not 429", report.errors);
    }
    Ok(())
}
