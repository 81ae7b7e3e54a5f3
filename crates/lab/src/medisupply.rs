//! The MediSupply seed's experiment, with its four expected results as hypotheses: orders are
//! created through the seed's own API (`POST /create_order`) while the external validator is
//! normal, slow, down and failing; each answer must come within 2 s, the monitor must name
//! each failure mode, and once the validator is back every order must be processed, each
//! decided exactly once.

use crate::app::{RedisChoice, RunningApp};
use crate::app_http::Http;
use crate::control::FaultMode;
use crate::orders_load::format_ms;
use crate::report::Findings;
use crate::settle::{last_events, wait_final};
use crate::timeline;
use anyhow::Context as _;
use hdrhistogram::Histogram;
use http::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The seed's products, which the orders rotate through.
const PRODUCTS: [&str; 4] = ["Medicine A", "Medicine B", "Antibiotic C", "Vaccine X"];
/// The seed's first expected result: every order answered within this.
const RESPONSE_LIMIT: Duration = Duration::from_secs(2);
/// The simulator's delay in slow mode: past the monitor's "degraded" mark (1 s), within its
/// probe timeout (2 s).
const SLOW_DELAY: Duration = Duration::from_millis(1_500);
/// Orders not final whose last events the report shows.
const SHOWN_STUCK: usize = 20;

/// What the experiment is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Orders created in each validator mode.
    pub orders_per_mode: usize,
    /// The longest wait for every order to be processed once the validator is back.
    pub timeout: Duration,
}

impl Settings {
    /// The standard run: 50 orders per mode (the seed's script sends 5); `quick`: 10.
    pub fn standard(quick: bool) -> Self {
        Self {
            orders_per_mode: if quick { 10 } else { 50 },
            timeout: Duration::from_secs(120),
        }
    }
}

/// A validator mode, the health the monitor should report in it, and its simulator delay.
struct ModeCase {
    mode: FaultMode,
    expected_health: &'static str,
    delay: Option<Duration>,
}

const CASES: [ModeCase; 4] = [
    ModeCase {
        mode: FaultMode::Normal,
        expected_health: "healthy",
        delay: None,
    },
    ModeCase {
        mode: FaultMode::Slow,
        expected_health: "degraded",
        delay: Some(SLOW_DELAY),
    },
    ModeCase {
        mode: FaultMode::Down,
        expected_health: "down",
        delay: None,
    },
    ModeCase {
        mode: FaultMode::Error,
        expected_health: "unhealthy",
        delay: None,
    },
];

/// What one mode's orders got.
struct ModeResult {
    seen_health: String,
    answers: BTreeMap<u16, u64>,
    unanswered: u64,
    /// Latencies of every answer, in µs.
    latencies: Histogram<u64>,
}

impl ModeResult {
    fn max(&self) -> Option<Duration> {
        (!self.latencies.is_empty()).then(|| Duration::from_micros(self.latencies.max()))
    }

    fn ms(&self, quantile: f64) -> Option<f64> {
        (!self.latencies.is_empty())
            .then(|| self.latencies.value_at_quantile(quantile) as f64 / 1000.0)
    }

    fn all_created(&self) -> bool {
        self.unanswered == 0 && self.answers.keys().all(|status| *status == 200)
    }
}

/// Runs the experiment on a fresh `orderly up` (with `redis`); what it found.
pub async fn findings(settings: &Settings, redis: RedisChoice) -> anyhow::Result<Findings> {
    let app = RunningApp::start(redis, &[]).await?;
    let found = experiment(settings, &app.http).await;
    app.stop(false).await;
    found
}

async fn experiment(settings: &Settings, http: &Http) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    findings.configure("orders per mode", settings.orders_per_mode);
    findings.configure(
        "slow mode's delay",
        format!("{} ms", SLOW_DELAY.as_millis()),
    );
    let mut results = Vec::new();
    let mut created = Vec::new();
    for case in &CASES {
        eprintln!("validator {}", case.mode.as_str());
        let mut body = json!({"mode": case.mode.as_str()});
        if let Some(delay) = case.delay {
            body["delay_ms"] = u64::try_from(delay.as_millis())?.into();
        }
        http.expect_ok(Method::POST, "/external/configure", Some(body))
            .await?;
        let report = http
            .expect_ok(Method::GET, "/health_status?refresh=true", None)
            .await?;
        let seen_health = report["services"]["external-validator"]["status"]
            .as_str()
            .with_context(|| format!("no external-validator status in {report}"))?
            .to_owned();
        let mut result = ModeResult {
            seen_health,
            answers: BTreeMap::new(),
            unanswered: 0,
            latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        };
        for n in 0..settings.orders_per_mode {
            let id = format!("ms-{}-{n}", case.mode.as_str());
            let body = json!({
                "order_id": id,
                "product": PRODUCTS[n % PRODUCTS.len()],
                "quantity": n % 10 + 1,
            });
            let sent = Instant::now();
            match http
                .call(Method::POST, "/create_order", &[], Some(body.to_string()))
                .await
            {
                Ok((status, _)) => {
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    result.latencies.saturating_record(micros);
                    *result.answers.entry(status).or_default() += 1;
                    if status == 200 {
                        created.push(id);
                    }
                }
                Err(_) => result.unanswered += 1,
            }
        }
        results.push(result);
    }
    http.expect_ok(
        Method::POST,
        "/external/configure",
        Some(json!({"mode": "normal"})),
    )
    .await?;
    let recovered = Instant::now();
    eprintln!("validator normal again; waiting for every order to be processed");
    let stuck = wait_final(http, &created, settings.timeout).await;
    let drain = recovered.elapsed();
    let consistency = decisions(http, &created).await?;
    let listed = listed_orders(http).await?;

    let out = &mut findings.body;
    writeln!(
        out,
        "Orders are created one at a time through the seed's API, `POST /create_order`, in \
         each of the external validator's modes; the monitor's `GET /health_status?refresh=true` \
         is read once the mode is set.\n"
    )?;
    writeln!(
        out,
        "## Per mode\n\n| validator | monitor says | answers | p50 | p99 | max |\n|---|---|---|---:|---:|---:|"
    )?;
    for (case, result) in CASES.iter().zip(&results) {
        let mut answers: Vec<String> = result
            .answers
            .iter()
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        if result.unanswered > 0 {
            answers.push(format!("{} unanswered", result.unanswered));
        }
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            case.mode.as_str(),
            result.seen_health,
            answers.join(", "),
            format_ms(result.ms(0.5)),
            format_ms(result.ms(0.99)),
            format_ms(result.max().map(|max| max.as_secs_f64() * 1000.0)),
        )?;
    }
    writeln!(out, "\n(milliseconds)\n")?;
    writeln!(
        out,
        "## After recovery\n\n{} orders created; {} processed {:.2} s after the validator came \
         back; `GET /get_orders` lists {} of them. Decisions per order: {}.",
        created.len(),
        created.len() - stuck.len(),
        drain.as_secs_f64(),
        listed,
        consistency.describe()
    )?;
    for id in stuck.iter().take(SHOWN_STUCK) {
        writeln!(
            out,
            "- not processed: {id}: {}",
            last_events(http, id).await?
        )?;
    }

    let slowest = results
        .iter()
        .filter_map(ModeResult::max)
        .max()
        .unwrap_or_default();
    let all_created = results.iter().all(ModeResult::all_created);
    findings.figure("slowest_answer_ms", slowest.as_secs_f64() * 1000.0);
    findings.figure("orders_created", created.len() as f64);
    findings.figure("drain_secs", drain.as_secs_f64());
    findings.check(
        format!(
            "1. Response time: every order is answered (created) within {} s in every mode, \
             the validator down included",
            RESPONSE_LIMIT.as_secs()
        ),
        format!(
            "{}; slowest {:.0} ms",
            if all_created {
                "every order created"
            } else {
                "some orders were not created"
            },
            slowest.as_secs_f64() * 1000.0
        ),
        all_created && slowest <= RESPONSE_LIMIT,
    );
    let expected = CASES.len() * settings.orders_per_mode;
    findings.check(
        format!(
            "2. No data loss: every order is processed (a final status) within {} s of the \
             validator's recovery, and listed by `GET /get_orders`",
            settings.timeout.as_secs()
        ),
        format!(
            "{} of {expected} processed; {listed} listed",
            created.len() - stuck.len()
        ),
        created.len() == expected && stuck.is_empty() && listed == expected,
    );
    let detected: Vec<String> = CASES
        .iter()
        .zip(&results)
        .map(|(case, result)| format!("{} → {}", case.mode.as_str(), result.seen_health))
        .collect();
    findings.check(
        "3. Failure detection: the monitor reports the validator healthy when normal, degraded \
         when slow, down when down and unhealthy when it answers errors",
        detected.join(", "),
        CASES
            .iter()
            .zip(&results)
            .all(|(case, result)| result.seen_health == case.expected_health),
    );
    findings.check(
        "4. State consistency: each order leaves `processing` exactly once (one decision: \
         validated, rejected or failed), no duplicate processing",
        consistency.describe(),
        consistency.exactly_once == created.len(),
    );
    Ok(findings)
}

/// How many decisions the orders' timelines hold.
#[derive(Debug, Default)]
struct Decisions {
    exactly_once: usize,
    none: usize,
    several: usize,
    duplicates_ignored: usize,
}

impl Decisions {
    fn describe(&self) -> String {
        format!(
            "{} exactly one, {} none, {} several; {} duplicate deliveries ignored",
            self.exactly_once, self.none, self.several, self.duplicates_ignored
        )
    }
}

/// Counts the decision events in every order's timeline.
async fn decisions(http: &Http, ids: &[String]) -> anyhow::Result<Decisions> {
    let mut counted = Decisions::default();
    for traced in timeline::trace_all(http, ids).await? {
        counted.duplicates_ignored += traced.timeline.count("duplicate_ignored");
        match traced.timeline.decisions() {
            0 => counted.none += 1,
            1 => counted.exactly_once += 1,
            _ => counted.several += 1,
        }
    }
    Ok(counted)
}

/// How many orders `GET /get_orders` (the seed's listing) holds.
async fn listed_orders(http: &Http) -> anyhow::Result<usize> {
    let listing = http.expect_ok(Method::GET, "/get_orders", None).await?;
    listing["orders"]
        .as_array()
        .map(Vec::len)
        .with_context(|| format!("no orders in {listing}"))
}
