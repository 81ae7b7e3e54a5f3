//! The crash experiment: `orderly up` killed with SIGKILL in the middle of a burst of orders,
//! started again on the same state dir and port, and nothing acknowledged lost. The app runs
//! with a `redis-server` of its own (which outlives the crash); orders are sent by concurrent
//! clients, so requests are in flight when the process dies, each client sending the same
//! request again, with the same key, until it is acknowledged. Then every
//! acknowledged order must exist, be final and notified once, with one order per key, no
//! transition repeated, and the saga's invariants intact.

use crate::app::{RedisChoice, RunningApp};
use crate::app_http::Http;
use crate::inspection::Inspection;
use crate::report::{Findings, write_list};
use crate::saga::PAYMENT_LIMIT_CENTS;
use crate::settle::{time_to_final, wait_final, write_stuck};
use crate::submit::{
    Patience, Reply, Sent, Submission, keyed_body, orders_by_key, submit_from_clients,
};
use catalog::Catalog;
use http::Method;
use rustix::process::Signal;
use saga_audit::mix::{self, MixSettings};
use saga_audit::state::is_final;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The pause between two tries of a request the app did not answer (it is down) or is still
/// handling.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest `orderly up` may take to answer again after the kill.
const RESTART_LIMIT: Duration = Duration::from_secs(15);
/// How often the acknowledged orders are counted while waiting for the moment to kill.
const KILL_POLL: Duration = Duration::from_millis(1);

/// What the experiment is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Seeds the orders.
    pub seed: u64,
    /// Orders sent.
    pub orders: usize,
    /// Clients sending at once, each its next order once its last one is acknowledged.
    pub clients: usize,
    /// The share of the orders (0 to 1) acknowledged when `orderly up` is killed.
    pub kill_at: f64,
    /// The workers' leases, when shorter than the app's defaults: work a killed host held
    /// waits this long before another worker takes it.
    pub lease: Option<Duration>,
    /// How long a client keeps sending an unacknowledged request again.
    pub patience: Duration,
    /// The longest wait, from the restart, for every acknowledged order to be final.
    pub timeout: Duration,
}

impl Settings {
    /// The standard run: 2,000 orders from 16 clients, killed once 40 % are acknowledged, with
    /// the app's leases (30 s); `quick`: 500 orders and 5 s leases.
    pub fn standard(seed: u64, quick: bool) -> Self {
        Self {
            seed,
            orders: if quick { 500 } else { 2_000 },
            clients: 16,
            kill_at: 0.4,
            lease: quick.then_some(Duration::from_secs(5)),
            patience: Duration::from_secs(60),
            timeout: Duration::from_secs(if quick { 60 } else { 120 }),
        }
    }
}

/// Runs the experiment on a fresh `orderly up` with a `redis-server` of its own (which keeps
/// running through the crash); what it found.
pub async fn findings(settings: &Settings) -> anyhow::Result<Findings> {
    let mut variables = vec![format!("payment_limit_cents={PAYMENT_LIMIT_CENTS}")];
    if let Some(lease) = settings.lease {
        let ms = lease.as_millis();
        variables.push(format!("worker_lease_ms={ms}"));
        variables.push(format!("fulfilment_lease_ms={ms}"));
    }
    let mut app = RunningApp::start(RedisChoice::Server, &variables).await?;
    let found = experiment(settings, &mut app).await;
    app.stop(false).await;
    found
}

/// How the crash went.
struct Crash {
    /// `GET /admin/stats` just before the kill.
    stats_before: Value,
    /// How `orderly up` ended.
    exit: ExitStatus,
    /// When it was killed.
    killed_at: Instant,
    /// When it answered again.
    answering_at: Instant,
}

impl Crash {
    /// Orders accepted and not yet final just before the kill.
    fn unfinished_before(&self) -> u64 {
        self.stats_before["orders"]
            .as_object()
            .map(|counts| {
                counts
                    .iter()
                    .filter(|(status, _)| !is_final(status))
                    .filter_map(|(_, count)| count.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// From the kill until `orderly up` answered again.
    fn restart_time(&self) -> Duration {
        self.answering_at.saturating_duration_since(self.killed_at)
    }
}

/// Waits until `acknowledged` reaches `kill_after`, reads the pipeline's counters, kills
/// `orderly up` with SIGKILL and starts it again on the same state dir, port and Redis.
async fn crash_and_restart(
    app: &mut RunningApp,
    acknowledged: &AtomicUsize,
    kill_after: usize,
) -> anyhow::Result<Crash> {
    while acknowledged.load(Ordering::SeqCst) < kill_after {
        tokio::time::sleep(KILL_POLL).await;
    }
    let stats_before = app
        .http
        .expect_ok(Method::GET, "/admin/stats", None)
        .await?;
    let killed_at = Instant::now();
    let exit = app.kill().await?;
    eprintln!("orderly up killed ({exit}); starting it again");
    app.restart().await?;
    Ok(Crash {
        stats_before,
        exit,
        killed_at,
        answering_at: Instant::now(),
    })
}

/// Where a request stood when `orderly up` was killed, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    /// Acknowledged before the kill.
    AcknowledgedBefore,
    /// Sent before the kill, acknowledged after it as a replay: stored before the crash, its
    /// first answer lost with the process.
    InFlightStored,
    /// Sent before the kill, acknowledged after it as created: the crash came before it was
    /// stored.
    InFlightNotStored,
    /// First sent after the kill (while the app was down or after its restart).
    SentAfter,
    /// Never acknowledged.
    NotAcknowledged,
}

impl Fate {
    /// The fate of a request first sent at `started`, with `orderly up` killed at `killed_at`.
    fn of(started: Instant, submission: &Submission, killed_at: Instant) -> Self {
        let acknowledged_at = match (&submission.reply, submission.answered_at) {
            (Some(Reply::Created { .. } | Reply::Replayed { .. }), Some(at)) => at,
            _ => return Self::NotAcknowledged,
        };
        if acknowledged_at < killed_at {
            Self::AcknowledgedBefore
        } else if started >= killed_at {
            Self::SentAfter
        } else if matches!(submission.reply, Some(Reply::Replayed { .. })) {
            Self::InFlightStored
        } else {
            Self::InFlightNotStored
        }
    }

    /// The fate in words, for the report.
    fn describe(self) -> &'static str {
        match self {
            Self::AcknowledgedBefore => "acknowledged before the kill",
            Self::InFlightStored => {
                "in flight at the kill, stored before it: replayed (202, Idempotent-Replayed)"
            }
            Self::InFlightNotStored => "in flight at the kill, not stored: created after it",
            Self::SentAfter => "first sent after the kill",
            Self::NotAcknowledged => "never acknowledged",
        }
    }
}

/// The experiment on a running app, which it kills and restarts.
async fn experiment(settings: &Settings, app: &mut RunningApp) -> anyhow::Result<Findings> {
    let orders = mix::plan(
        &Catalog::standard(),
        &MixSettings {
            seed: settings.seed,
            orders: settings.orders,
            cancel_fraction: 0.0,
            max_cancel_delay_ms: 0,
            payment_limit_cents: PAYMENT_LIMIT_CENTS,
            id_prefix: format!("crash-{}", settings.seed),
        },
    );
    // The clients' own connections: the app's client stays free for the crash.
    let client = Http::new(app.http.address);
    let kill_after = (settings.orders as f64 * settings.kill_at) as usize;
    let patience = Patience {
        pause: RETRY_PAUSE,
        limit: settings.patience,
    };
    eprintln!(
        "sending {} orders from {} clients; the kill comes after {kill_after} are acknowledged",
        orders.len(),
        settings.clients
    );
    let acknowledged_so_far = AtomicUsize::new(0);
    let burst_start = Instant::now();
    let (sent, crash) = tokio::join!(
        submit_from_clients(
            &client,
            &orders,
            keyed_body,
            settings.clients,
            patience,
            &acknowledged_so_far
        ),
        crash_and_restart(app, &acknowledged_so_far, kill_after),
    );
    let crash = crash?;
    let settled_after = burst_start.elapsed();
    let http = &app.http;
    let acknowledged: Vec<String> = sent
        .iter()
        .filter_map(|sent| sent.submission.order_id().map(str::to_owned))
        .collect();
    eprintln!(
        "{} orders acknowledged; waiting for every one to be final",
        acknowledged.len()
    );
    let stuck = wait_final(http, &acknowledged, settings.timeout).await;
    let drain_time = crash.answering_at.elapsed();
    eprintln!("reading every order, its timeline, the notifications and the services");
    let listed = http.every_page("/orders", "orders").await?;
    let listed_ids: BTreeSet<&str> = listed
        .iter()
        .filter_map(|order| order["id"].as_str())
        .collect();
    let (present, missing): (Vec<String>, Vec<String>) = acknowledged
        .iter()
        .cloned()
        .partition(|id| listed_ids.contains(id.as_str()));
    let duplicated: Vec<String> = orders_by_key(&listed)
        .iter()
        .filter(|(_, orders)| orders.len() > 1)
        .map(|(key, orders)| format!("{key}: {} orders", orders.len()))
        .collect();
    let observed = Observed {
        fates: sent
            .iter()
            .map(|sent| Fate::of(sent.started, &sent.submission, crash.killed_at))
            .collect(),
        inspection: Inspection::of(http, &present).await?,
        sent,
        crash,
        acknowledged,
        missing,
        duplicated,
        orders_listed: listed.len(),
        settled_after,
        drain_time,
    };

    let mut findings = Findings::default();
    findings.configure("seed", settings.seed);
    findings.configure(
        "redis",
        "server (always: the experiment's own redis-server outlives the crash)",
    );
    findings.configure("orders", settings.orders);
    findings.configure("clients", settings.clients);
    findings.configure(
        "kill",
        format!(
            "once {:.0} % of the orders are acknowledged",
            settings.kill_at * 100.0
        ),
    );
    findings.configure(
        "worker and fulfilment leases",
        settings.lease.map_or_else(
            || "the app's defaults (30 s)".to_owned(),
            |lease| format!("{} ms", lease.as_millis()),
        ),
    );
    writeln!(
        findings.body,
        "`orderly up` on {} with its own `redis-server`; {} orders of a seeded mix (seed {}) \
         from {} clients, each without an `order_id` and with its key as the customer, sent \
         again with the same key every {} ms while unanswered, 409 (in flight) or 503. \
         `orderly up` was killed with SIGKILL {:.2} s into the burst and started again on the \
         same state dir and port.\n",
        http.address,
        orders.len(),
        settings.seed,
        settings.clients,
        RETRY_PAUSE.as_millis(),
        observed
            .crash
            .killed_at
            .saturating_duration_since(burst_start)
            .as_secs_f64(),
    )?;
    observed.write(&mut findings.body, settings, &stuck)?;
    write_stuck(&mut findings.body, http, &stuck).await?;
    writeln!(
        findings.body,
        "\n## Invariants\n\n{}",
        observed.inspection.audit.markdown()
    )?;
    observed.judge(settings, &stuck, &mut findings);
    Ok(findings)
}

/// Everything the run saw.
struct Observed {
    /// Every order's request.
    sent: Vec<Sent>,
    /// Where each request (in `sent`'s order) stood at the kill.
    fates: Vec<Fate>,
    /// How the crash went.
    crash: Crash,
    /// The orders acknowledged.
    acknowledged: Vec<String>,
    /// Acknowledged orders the app does not list.
    missing: Vec<String>,
    /// Keys with more than one order, with how many.
    duplicated: Vec<String>,
    /// Orders the app lists.
    orders_listed: usize,
    /// The acknowledged orders the app lists, read.
    inspection: Inspection,
    /// From the first request until every request was settled.
    settled_after: Duration,
    /// From the restart until every acknowledged order was final (or the wait ended).
    drain_time: Duration,
}

impl Observed {
    /// Requests whose fate is `wanted`.
    fn count(&self, wanted: impl Fn(Fate) -> bool) -> usize {
        self.fates.iter().filter(|fate| wanted(**fate)).count()
    }

    /// Requests acknowledged before the kill.
    fn acknowledged_before(&self) -> usize {
        self.count(|fate| fate == Fate::AcknowledgedBefore)
    }

    /// Requests sent before the kill and answered after it.
    fn in_flight_at_kill(&self) -> usize {
        self.count(|fate| matches!(fate, Fate::InFlightStored | Fate::InFlightNotStored))
    }

    /// The findings' tables.
    fn write(&self, out: &mut String, settings: &Settings, stuck: &[String]) -> std::fmt::Result {
        let crash = &self.crash;
        writeln!(out, "## The crash\n\n| figure | value |\n|---|---|")?;
        writeln!(
            out,
            "| orders accepted and not final just before the kill | {} |",
            crash.unfinished_before()
        )?;
        writeln!(out, "| how `orderly up` ended | {} |", crash.exit)?;
        writeln!(
            out,
            "| kill → answering again | {:.2} s |",
            crash.restart_time().as_secs_f64()
        )?;
        writeln!(
            out,
            "| tries the app did not answer | {} |",
            self.sent
                .iter()
                .map(|sent| sent.submission.unanswered)
                .sum::<u32>()
        )?;
        writeln!(
            out,
            "| first request → every request settled | {:.2} s |",
            self.settled_after.as_secs_f64()
        )?;
        writeln!(
            out,
            "| restart → every acknowledged order final | {} |",
            time_to_final(stuck, self.drain_time, settings.timeout)
        )?;
        writeln!(
            out,
            "| work taken over from the killed host (`lease_expired` events) | {} |",
            self.inspection.events("lease_expired")
        )?;

        writeln!(
            out,
            "\n## Requests\n\n| where the request stood | requests | 409 in flight seen | most \
             tries |\n|---|---:|---:|---:|"
        )?;
        let mut by_fate: BTreeMap<Fate, (usize, u32, u32)> = BTreeMap::new();
        for (fate, sent) in self.fates.iter().zip(&self.sent) {
            let entry = by_fate.entry(*fate).or_default();
            entry.0 += 1;
            entry.1 += sent.submission.in_flight;
            entry.2 = entry.2.max(sent.submission.tries);
        }
        for (fate, (requests, in_flight, tries)) in &by_fate {
            writeln!(
                out,
                "| {} | {requests} | {in_flight} | {tries} |",
                fate.describe()
            )?;
        }
        let never: Vec<String> = self
            .fates
            .iter()
            .zip(&self.sent)
            .filter(|(fate, _)| **fate == Fate::NotAcknowledged)
            .map(|(_, sent)| {
                let how = match &sent.submission.reply {
                    Some(reply) => format!("{reply:?}"),
                    None => sent.submission.last_error.clone().unwrap_or_default(),
                };
                format!("{}: {how}", sent.order.id)
            })
            .collect();
        write_list(out, "Never acknowledged", &never)?;

        let inspection = &self.inspection;
        writeln!(
            out,
            "\n## After the restart\n\n| figure | value |\n|---|---|"
        )?;
        writeln!(
            out,
            "| acknowledged orders | {} ({} before the kill) |",
            self.acknowledged.len(),
            self.acknowledged_before()
        )?;
        writeln!(
            out,
            "| acknowledged orders missing | {} |",
            self.missing.len()
        )?;
        writeln!(out, "| acknowledged orders not final | {} |", stuck.len())?;
        writeln!(out, "| final statuses | {} |", inspection.statuses())?;
        writeln!(
            out,
            "| orders in the app / keys with more than one | {} / {} |",
            self.orders_listed,
            self.duplicated.len()
        )?;
        writeln!(
            out,
            "| orders with a transition repeated or missing | {} |",
            inspection.timeline_faults.len()
        )?;
        writeln!(
            out,
            "| confirmed or cancelled orders notified exactly once | {} of {} |",
            inspection.notifiable - inspection.notification_faults.len(),
            inspection.notifiable
        )?;
        write_list(out, "Missing", &self.missing)?;
        write_list(out, "Duplicated keys", &self.duplicated)?;
        write_list(out, "Timeline faults", &inspection.timeline_faults)?;
        write_list(out, "Notifications", &inspection.notification_faults)
    }

    /// The figures, and a verdict on each hypothesis.
    fn judge(&self, settings: &Settings, stuck: &[String], findings: &mut Findings) {
        let (crash, inspection) = (&self.crash, &self.inspection);
        let acknowledged_before = self.acknowledged_before();
        let in_flight_at_kill = self.in_flight_at_kill();
        findings.figure("orders_acknowledged", self.acknowledged.len() as f64);
        findings.figure("acknowledged_before_kill", acknowledged_before as f64);
        findings.figure("in_flight_at_kill", in_flight_at_kill as f64);
        findings.figure("unfinished_at_kill", crash.unfinished_before() as f64);
        findings.figure("restart_secs", crash.restart_time().as_secs_f64());
        findings.figure("drain_secs", self.drain_time.as_secs_f64());
        findings.figure("lost", (self.missing.len() + stuck.len()) as f64);
        findings.figure("duplicated_keys", self.duplicated.len() as f64);
        findings.figure("failed_invariants", inspection.failed_invariants() as f64);
        findings.check(
            "The kill hits the burst mid-flight: `orderly up` dies of SIGKILL while orders it \
             acknowledged are not final and requests are in flight",
            format!(
                "{}; {} orders not final just before; {in_flight_at_kill} requests in flight",
                crash.exit,
                crash.unfinished_before()
            ),
            crash.exit.signal() == Some(Signal::KILL.as_raw())
                && crash.unfinished_before() > 0
                && in_flight_at_kill > 0,
        );
        findings.check(
            format!(
                "`orderly up` answers again within {} s of the kill, on the same state dir and \
                 port",
                RESTART_LIMIT.as_secs()
            ),
            format!("{:.2} s", crash.restart_time().as_secs_f64()),
            crash.restart_time() <= RESTART_LIMIT,
        );
        findings.check(
            format!(
                "Every request is acknowledged (202) within {} s, sent again with its key while \
                 unanswered",
                settings.patience.as_secs()
            ),
            format!(
                "{} of {} acknowledged",
                self.acknowledged.len(),
                self.sent.len()
            ),
            self.acknowledged.len() == self.sent.len(),
        );
        findings.check(
            format!(
                "Nothing acknowledged is lost: every acknowledged order exists and is final \
                 within {} s of the restart (lost = 0)",
                settings.timeout.as_secs()
            ),
            format!(
                "{} acknowledged ({acknowledged_before} before the kill): {} missing, {} not \
                 final ({:.2} s after the restart)",
                self.acknowledged.len(),
                self.missing.len(),
                stuck.len(),
                self.drain_time.as_secs_f64()
            ),
            self.missing.is_empty() && stuck.is_empty(),
        );
        findings.check(
            "Nothing is done twice: one order per key (orders in the app = keys), no transition \
             repeated (one decision, each saga step at most once, one end), every confirmed or \
             cancelled order notified exactly once",
            format!(
                "{} orders for {} keys, {} keys with more than one; {} timeline faults; {} \
                 notification faults",
                self.orders_listed,
                self.sent.len(),
                self.duplicated.len(),
                inspection.timeline_faults.len(),
                inspection.notification_faults.len()
            ),
            self.orders_listed == self.sent.len()
                && self.duplicated.is_empty()
                && inspection.once_each(),
        );
        findings.check(
            "Every saga invariant holds across the crash: stock conserved, each order charged at \
             most once, nothing kept for an order not confirmed, no reservation or shipment left \
             behind",
            format!(
                "{} of {} invariants failed",
                inspection.failed_invariants(),
                inspection.audit.checks.len()
            ),
            inspection.audit.passed(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_http::Answer;
    use bytes::Bytes;
    use http::HeaderMap;

    /// A submission that ended with `reply` at `answered_at`.
    fn submission(reply: Option<Reply>, answered_at: Option<Instant>) -> Submission {
        Submission {
            answer: reply.as_ref().map(|_| Answer {
                status: 202,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            }),
            reply,
            answered_at,
            tries: 1,
            in_flight: 0,
            busy: 0,
            unanswered: 0,
            last_error: None,
        }
    }

    #[test]
    fn each_request_is_placed_against_the_kill() {
        let kill = Instant::now() + Duration::from_secs(10);
        let (before, after) = (kill - Duration::from_secs(1), kill + Duration::from_secs(1));
        let created = || {
            Some(Reply::Created {
                order_id: "o".into(),
            })
        };
        let replayed = || {
            Some(Reply::Replayed {
                order_id: "o".into(),
            })
        };
        assert_eq!(
            Fate::of(before, &submission(created(), Some(before)), kill),
            Fate::AcknowledgedBefore
        );
        assert_eq!(
            Fate::of(before, &submission(replayed(), Some(after)), kill),
            Fate::InFlightStored
        );
        assert_eq!(
            Fate::of(before, &submission(created(), Some(after)), kill),
            Fate::InFlightNotStored
        );
        assert_eq!(
            Fate::of(after, &submission(created(), Some(after)), kill),
            Fate::SentAfter
        );
        assert_eq!(
            Fate::of(
                before,
                &submission(Some(Reply::InFlight), Some(after)),
                kill
            ),
            Fate::NotAcknowledged
        );
        assert_eq!(
            Fate::of(before, &submission(None, None), kill),
            Fate::NotAcknowledged
        );
    }

    #[test]
    fn unfinished_orders_are_those_not_final() {
        let crash = Crash {
            stats_before: serde_json::json!({"orders": {"processing": 3, "validated": 2,
                "paid": 1, "confirmed": 40, "cancelled": 5, "failed": 1}}),
            exit: ExitStatus::from_raw(Signal::KILL.as_raw()),
            killed_at: Instant::now(),
            answering_at: Instant::now(),
        };
        assert_eq!(crash.unfinished_before(), 6);
        assert_eq!(crash.exit.signal(), Some(Signal::KILL.as_raw()));
    }
}
