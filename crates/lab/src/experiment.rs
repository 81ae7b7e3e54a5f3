//! `orderly lab experiment NAME`: the seeds' experiments, each with its hypotheses stated
//! before the run and a verdict, written as a report into its run folder; `all` runs them in
//! sequence and ends with a summary table. A run that fails a hypothesis, or cannot finish,
//! makes the command fail.

use crate::app::RedisChoice;
use crate::pipeline::repository;
use crate::report::{Findings, Identity, Report, Verdict, run_folder};
use crate::{
    backlog_recovery, breaker, crash, fleet, idempotency, medisupply, poison, saga, sync_async,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// An experiment `orderly lab experiment` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Experiment {
    /// The MediSupply seed's four expected results: fast answers in every validator mode,
    /// no data loss, failure detection, state consistency.
    Medisupply,
    /// The Campus seed's table: async vs sync creation with the inventory healthy, slow,
    /// past the deadline and failing.
    SyncVsAsync,
    /// Two hosts sharing one Redis: one rate limit, one circuit breaker.
    Fleet,
    /// Random faults in every service at once; the saga's invariants hold.
    Saga,
    /// Duplicate requests (same Idempotency-Key) and redelivered doorbells change nothing.
    Idempotency,
    /// Malformed messages and unreadable validator answers go to the dead-letter queue; the
    /// rest flows, and dead letters can be replayed.
    Poison,
    /// `orderly up` killed with SIGKILL mid-burst and restarted: nothing acknowledged lost.
    Crash,
    /// The circuit breaker in a full outage of the validator: time to detect, time to
    /// recover, calls during the outage.
    Breaker,
    /// The validator down 60 s under load, then the drain: nothing lost.
    BacklogRecovery,
    /// Every experiment above, in sequence, with a summary table.
    All,
}

/// Every experiment `all` runs, in order.
const EVERY: [Experiment; 9] = [
    Experiment::Medisupply,
    Experiment::SyncVsAsync,
    Experiment::BacklogRecovery,
    Experiment::Idempotency,
    Experiment::Poison,
    Experiment::Breaker,
    Experiment::Crash,
    Experiment::Fleet,
    Experiment::Saga,
];

impl Experiment {
    /// Its name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Medisupply => "medisupply",
            Self::SyncVsAsync => "sync-vs-async",
            Self::Fleet => "fleet",
            Self::Saga => "saga",
            Self::Idempotency => "idempotency",
            Self::Poison => "poison",
            Self::Crash => "crash",
            Self::Breaker => "breaker",
            Self::BacklogRecovery => "backlog-recovery",
            Self::All => "all",
        }
    }

    /// Its report's title.
    fn title(self) -> &'static str {
        match self {
            Self::Medisupply => "MediSupply: the seed's four expected results",
            Self::SyncVsAsync => "Synchronous vs asynchronous order creation",
            Self::Fleet => "A fleet: two hosts, one rate limit, one circuit breaker",
            Self::Saga => "The fulfilment saga under random faults",
            Self::Idempotency => "Duplicate requests and redelivered messages",
            Self::Poison => "Poison messages and the dead-letter queue",
            Self::Crash => "A crash mid-burst: SIGKILL, restart, nothing lost",
            Self::Breaker => "The circuit breaker in a full outage of the validator",
            Self::BacklogRecovery => "Backlog and recovery: the validator down under load",
            Self::All => "Every experiment",
        }
    }

    /// What it sets out to show.
    fn purpose(self) -> &'static str {
        match self {
            Self::Medisupply => {
                "The MediSupply seed expects four results from its order pipeline behind a \
                 failing external validator: order creation answers within 2 s even when the \
                 validator is down, no order is lost, the monitor tells the failure modes \
                 apart, and every order leaves `processing` exactly once. The same runs here \
                 against Orderly, through the seed's own API."
            }
            Self::SyncVsAsync => {
                "The Campus seed shows that a synchronous call chain passes every downstream \
                 delay and failure on to its caller. The same orders are created both ways \
                 through the gateway while the inventory is healthy, 2 s slow, slower than the \
                 sync deadline, and failing: sync creation should pay the delay and cascade \
                 503/504, async creation should not notice, and nothing may leak."
            }
            Self::Fleet => {
                "Breaker state and rate limits live in the key-value store so that every \
                 instance of a deployment shares them (the seeds' breakers reset with every job \
                 or process). Two `orderly up` processes share one redis-server: a client gets \
                 one limit across both, and a circuit one host opens protects the other."
            }
            Self::Saga => {
                "Inventory, payment, shipping and the validator all fail a share of their calls \
                 and add delay, while a seeded mix of orders runs out of stock, goes over the \
                 payment limit or is cancelled by its customer. Once the faults are cleared, \
                 every order must end confirmed or cancelled with the saga's invariants intact."
            }
            Self::Idempotency => {
                "Clients retry, and Redis pub/sub may deliver a doorbell twice (or a worker be \
                 woken by many). The same request sent again with its Idempotency-Key, one \
                 after another and several at once, must create one order and get the first \
                 answer back; a key reused for another body must be refused; and doorbells \
                 published many extra times on every channel while the orders flow must not \
                 make anything happen twice: one validator call, one decision, each saga step \
                 once, one notification, nothing charged twice."
            }
            Self::Poison => {
                "A message no handler can read, or a job whose validator answers garbage, must \
                 not block the rest (the Campus seed's DLQ test). Malformed doorbells and \
                 doorbells for orders that do not exist are published among good orders, and \
                 a validator (a proxy in front of the simulator) answers garbage for a tenth \
                 of the orders: the poison must end in the dead-letter queue with its reason, \
                 every good order must flow to a final status meanwhile, and once the validator \
                 is healed the dead letters must be replayable."
            }
            Self::Crash => {
                "A host crash must not lose what was acknowledged (the README's claim: a \
                 transactional outbox, jobs in SQLite, leases). `orderly up` is killed with \
                 SIGKILL in the middle of a burst of orders and started again on the same \
                 state dir and port, while clients resend unanswered requests with their keys: \
                 every acknowledged order must end final, exactly once, with the saga's \
                 invariants intact."
            }
            Self::Breaker => {
                "The seeds' circuit breaker stops calling a dependency that fails and lets it \
                 recover. Under a steady load of orders the validator goes fully down, then \
                 comes back: the breaker should open within a second, let only probes through \
                 while the validator is down, close within seconds of its return, and order \
                 intake should not notice any of it."
            }
            Self::BacklogRecovery => {
                "The Campus seed's backlog and recovery test: the consumer is down for 60 s \
                 while orders keep coming, then restarts and the queue drains. Here the \
                 validator is down for 60 s under a steady 200 orders/s: every order accepted \
                 meanwhile must be validated once it is back (none lost), the backlog must \
                 drain within seconds while new orders keep arriving, and acceptance must stay \
                 fast throughout."
            }
            Self::All => "Each experiment in sequence.",
        }
    }

    /// Runs it on an app of its own; what it found.
    async fn findings(self, options: &Options) -> anyhow::Result<Findings> {
        match self {
            Self::Medisupply => {
                let settings = medisupply::Settings::standard(options.quick);
                medisupply::findings(&settings, options.redis).await
            }
            Self::SyncVsAsync => {
                let settings = sync_async::Settings::standard(options.quick);
                sync_async::findings(&settings, options.redis).await
            }
            Self::Fleet => fleet::findings(&fleet::Settings::standard(options.quick)).await,
            Self::Saga => {
                let settings = saga::Settings::standard(options.seed, options.quick);
                saga::findings(&settings, options.redis).await
            }
            Self::Idempotency => {
                idempotency::findings(&idempotency::Settings::standard(
                    options.seed,
                    options.quick,
                ))
                .await
            }
            Self::Poison => {
                poison::findings(&poison::Settings::standard(options.seed, options.quick)).await
            }
            Self::Crash => {
                crash::findings(&crash::Settings::standard(options.seed, options.quick)).await
            }
            Self::Breaker => {
                let settings = breaker::Settings::standard(options.quick);
                breaker::findings(&settings, options.redis).await
            }
            Self::BacklogRecovery => {
                let settings = backlog_recovery::Settings::standard(options.quick);
                backlog_recovery::findings(&settings, options.redis).await
            }
            Self::All => anyhow::bail!("`all` is a sequence, not one experiment"),
        }
    }
}

/// How experiments are run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the run folders go (`runs/` under it).
    pub out: PathBuf,
    /// Who serves the app's Redis address (`idempotency`, `poison`, `crash` and `fleet` always
    /// run a `redis-server` of their own: they publish on it, it must outlive a crash, or the
    /// hosts share it).
    pub redis: RedisChoice,
    /// Seeds what the experiments draw (order mixes, faults).
    pub seed: u64,
    /// Smaller runs, for a try-out or a test (the verdicts still apply).
    pub quick: bool,
}

/// Runs `experiment` (or every one, for [`Experiment::All`]), writing each report; an error
/// when any did not pass.
pub async fn run(experiment: Experiment, options: &Options) -> anyhow::Result<()> {
    let folder = run_folder(&options.out, experiment.name());
    let reports = match experiment {
        Experiment::All => {
            let mut reports = Vec::new();
            for each in EVERY {
                reports.push(run_one(each, options, &folder.join(each.name())).await?);
            }
            let summary = summary(&reports);
            std::fs::write(folder.join("summary.md"), &summary)?;
            println!("\n{summary}");
            println!("Reports: {}", folder.display());
            reports
        }
        single => vec![run_one(single, options, &folder).await?],
    };
    let failed: Vec<&str> = reports
        .iter()
        .filter(|report| report.verdict != Verdict::Pass)
        .map(|report| report.experiment.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("did not pass: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs one experiment, writes its report into `folder` and prints it.
async fn run_one(
    experiment: Experiment,
    options: &Options,
    folder: &Path,
) -> anyhow::Result<Report> {
    eprintln!("\n==> experiment {}", experiment.name());
    let identity = Identity::current(&repository());
    let began = Instant::now();
    let findings = experiment.findings(options).await;
    let mut findings = findings;
    if let Ok(found) = &mut findings {
        // An experiment that needs a Redis of its own says so in its own setting.
        found
            .configuration
            .entry("redis".to_owned())
            .or_insert_with(|| format!("{:?}", options.redis).to_lowercase());
        found.configure("quick", options.quick);
    }
    let report = Report::new(
        experiment.name(),
        experiment.title(),
        experiment.purpose(),
        identity,
        began.elapsed(),
        findings,
    );
    report.write(folder)?;
    println!("{}", report.markdown());
    eprintln!(
        "==> {}: {} ({})",
        experiment.name(),
        report.verdict.label(),
        folder.join("report.md").display()
    );
    Ok(report)
}

/// The summary table of a sequence of reports.
fn summary(reports: &[Report]) -> String {
    let mut out = String::new();
    let passed = reports
        .iter()
        .filter(|report| report.verdict == Verdict::Pass)
        .count();
    let seconds: f64 = reports.iter().map(|report| report.elapsed_secs).sum();
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "# Every experiment\n\n{passed} of {} passed in {:.0} s.\n",
        reports.len(),
        seconds
    );
    let _ = writeln!(
        out,
        "| experiment | verdict | hypotheses held | time |\n|---|---|---:|---:|"
    );
    for report in reports {
        let (held, claims) = report.held();
        let _ = writeln!(
            out,
            "| [{}]({}/report.md) | {} | {held} of {claims} | {:.0} s |",
            report.experiment,
            report.experiment,
            report.verdict.label(),
            report.elapsed_secs
        );
    }
    out
}
