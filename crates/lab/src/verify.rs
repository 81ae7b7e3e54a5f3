//! `orderly lab verify RUN`: reads a load run's history, waits for the server to drain (every
//! acknowledged order final, up to a limit, naming the orders still stuck and why), reads what
//! the server holds, and reports Jepsen-style what became of every request
//! ([`verdicts::classify`]), with the saga's invariants over every order the server holds.

use crate::app_http::Http;
use crate::history::{self, Attempt, AttemptOutcome, HISTORY_FILE};
use crate::pipeline::repository;
use crate::report::{Findings, Identity, Report, Verdict};
use crate::settle::{last_events, wait_final};
use crate::verdicts::{self, Classification, HeldOrder};
use anyhow::{Context as _, bail};
use http::Method;
use saga_audit::audit::Audit;
use saga_audit::state::{self, CancelRequest, is_final};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Orders per page when listing the server's orders (its most).
const PAGE: u32 = 1_000;
/// Problems of each kind the report names.
const SHOWN: usize = 20;

/// Verifies the run in `folder` against the server `http` talks to and writes the report into
/// `folder/verify/`; an error when the run does not pass.
pub async fn run(folder: &Path, http: &Http, drain: Duration) -> anyhow::Result<()> {
    let identity = Identity::current(&repository());
    let began = Instant::now();
    let found = findings(folder, http, drain).await;
    let report = Report::new(
        "verify",
        "What became of every request",
        "A load run's history (every attempt, with its idempotency key and answer) checked \
         against what the server holds once it drained, Jepsen-style.",
        identity,
        began.elapsed(),
        found,
    );
    report.write(&folder.join("verify"))?;
    println!("{}", report.markdown());
    if report.verdict != Verdict::Pass {
        bail!("the run did not pass verification");
    }
    Ok(())
}

/// Verifies the run whose history is in `folder` against the server `http` talks to, waiting
/// at most `drain` for acknowledged orders to be final; what it found.
pub async fn findings(folder: &Path, http: &Http, drain: Duration) -> anyhow::Result<Findings> {
    let attempts = history::read(&folder.join(HISTORY_FILE))?;
    if attempts.is_empty() {
        bail!("{} holds no attempts", folder.join(HISTORY_FILE).display());
    }
    let mut findings = judge(&attempts, http, drain).await?;
    findings.configure("run", folder.display());
    Ok(findings)
}

/// Judges `attempts` against the server `http` talks to, waiting at most `drain` for the
/// acknowledged orders to be final.
pub async fn judge(attempts: &[Attempt], http: &Http, drain: Duration) -> anyhow::Result<Findings> {
    let acknowledged: Vec<String> = attempts
        .iter()
        .filter(|attempt| attempt.outcome == AttemptOutcome::Acknowledged)
        .filter_map(|attempt| attempt.order_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    eprintln!(
        "waiting up to {} s for {} acknowledged orders to be final",
        drain.as_secs(),
        acknowledged.len()
    );
    let waited = Instant::now();
    let stuck = wait_final(http, &acknowledged, drain).await;
    let drained_after = waited.elapsed();

    let named: BTreeSet<String> = attempts
        .iter()
        .filter_map(|attempt| attempt.order_id.clone())
        .collect();
    let all_orders = list_orders(http).await?;
    let held: BTreeMap<String, HeldOrder> = all_orders
        .iter()
        .filter(|(id, _)| named.contains(id.as_str()))
        .map(|(id, status)| {
            (
                id.clone(),
                HeldOrder {
                    status: status.clone(),
                    is_final: is_final(status),
                },
            )
        })
        .collect();
    let prefix = common_prefix(&named);
    let listed: Vec<String> = all_orders
        .keys()
        .filter(|id| !prefix.is_empty() && id.starts_with(&prefix))
        .cloned()
        .collect();
    let verdict = verdicts::classify(attempts, &held, &listed);

    eprintln!(
        "checking the saga's invariants over {} orders",
        all_orders.len()
    );
    let everything: Vec<(String, CancelRequest)> = all_orders
        .keys()
        .map(|id| (id.clone(), CancelRequest::NotAsked))
        .collect();
    let snapshot = state::snapshot(http, &everything, Vec::new())
        .await
        .map_err(anyhow::Error::msg)?;
    let audit = Audit::of(&snapshot);

    let mut findings = Findings::default();
    findings.configure("server", http.address);
    findings.configure("drain limit", format!("{} s", drain.as_secs()));
    for (name, value) in [
        ("attempts", verdict.attempts),
        ("requests", verdict.requests),
        ("acknowledged", verdict.acknowledged),
        ("ok", verdict.ok),
        ("lost", verdict.lost.len()),
        ("duplicated", verdict.duplicated.len()),
        ("unexpected", verdict.unexpected.len()),
        ("recovered", verdict.recovered.len()),
    ] {
        findings.figure(name, value as f64);
    }
    findings.figure("drained_after_secs", drained_after.as_secs_f64());
    write_body(
        &mut findings.body,
        &verdict,
        &audit,
        http,
        &stuck,
        drained_after,
    )
    .await?;
    findings.check(
        "No acknowledged order is lost: every one exists and is final after the drain",
        format!(
            "{} of {} ok, {} lost",
            verdict.ok,
            verdict.acknowledged,
            verdict.lost.len()
        ),
        verdict.lost.is_empty(),
    );
    findings.check(
        "No request created two orders, and no order appeared that no request made",
        format!(
            "{} duplicated, {} unexpected",
            verdict.duplicated.len(),
            verdict.unexpected.len()
        ),
        verdict.duplicated.is_empty() && verdict.unexpected.is_empty(),
    );
    let failed = audit.checks.iter().filter(|check| !check.holds()).count();
    findings.check(
        "The saga's invariants hold over every order the server holds (stock conserved, \
         charged at most once, every cancelled charge refunded, no reservation left)",
        format!("{failed} of {} invariants failed", audit.checks.len()),
        audit.passed(),
    );
    Ok(findings)
}

async fn write_body(
    out: &mut String,
    verdict: &Classification,
    audit: &Audit,
    http: &Http,
    stuck: &[String],
    drained_after: Duration,
) -> anyhow::Result<()> {
    writeln!(out, "## Requests\n\n| class | requests |\n|---|---:|")?;
    for (class, count) in [
        ("attempted (retries apart)", verdict.requests),
        ("acknowledged", verdict.acknowledged),
        ("ok: acknowledged, held, final", verdict.ok),
        (
            "**lost**: acknowledged, missing or not final",
            verdict.lost.len(),
        ),
        (
            "**duplicated**: more than one order",
            verdict.duplicated.len(),
        ),
        (
            "unexpected orders (no request made them)",
            verdict.unexpected.len(),
        ),
        (
            "recovered: not acknowledged, created anyway",
            verdict.recovered.len(),
        ),
        ("not acknowledged, not created", verdict.never_created),
    ] {
        writeln!(out, "| {class} | {count} |")?;
    }
    writeln!(
        out,
        "\n{} attempts in all; the drain took {:.2} s{}.",
        verdict.attempts,
        drained_after.as_secs_f64(),
        if stuck.is_empty() {
            String::new()
        } else {
            format!(" and left {} orders not final", stuck.len())
        }
    )?;
    for lost in verdict.lost.iter().take(SHOWN) {
        let events = match &lost.order_id {
            Some(id) if lost.why != "missing" => last_events(http, id).await?,
            _ => String::new(),
        };
        writeln!(
            out,
            "- lost `{}` (order {}): {} {events}",
            lost.key,
            lost.order_id.as_deref().unwrap_or("?"),
            lost.why
        )?;
    }
    for key in verdict.duplicated.iter().take(SHOWN) {
        writeln!(out, "- duplicated: `{key}`")?;
    }
    for id in verdict.unexpected.iter().take(SHOWN) {
        writeln!(out, "- unexpected order `{id}`")?;
    }
    writeln!(out, "\n## Invariants\n\n{}", audit.markdown())?;
    Ok(())
}

/// Every order the server lists, with its status, paging through `GET /orders`.
async fn list_orders(http: &Http) -> anyhow::Result<BTreeMap<String, String>> {
    let mut orders = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("/orders?limit={PAGE}&after={cursor}"),
            None => format!("/orders?limit={PAGE}"),
        };
        let page = http.expect_ok(Method::GET, &path, None).await?;
        let listed = page["orders"]
            .as_array()
            .with_context(|| format!("no orders in {page}"))?;
        for order in listed {
            let id = order["id"].as_str().context("an order without an id")?;
            let status = order["status"].as_str().unwrap_or("?");
            orders.insert(id.to_owned(), status.to_owned());
        }
        match page["next"].as_str() {
            Some(next) if !listed.is_empty() => after = Some(next.to_owned()),
            _ => return Ok(orders),
        }
    }
}

/// The longest prefix of the run's order ids up to its last `-` (`lab-7-1700-` for
/// `lab-7-1700-0`, `lab-7-1700-1`, ...), to tell the run's orders from others; empty when the
/// ids share none.
fn common_prefix(ids: &BTreeSet<String>) -> String {
    let mut names = ids.iter();
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut prefix = first.as_str();
    for id in names {
        let shared = prefix
            .char_indices()
            .zip(id.chars())
            .find(|((_, a), b)| a != b)
            .map_or(prefix.len().min(id.len()), |((index, _), _)| index);
        prefix = &prefix[..shared];
    }
    match prefix.rfind('-') {
        Some(dash) => prefix[..=dash].to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn the_run_prefix_stops_at_the_last_shared_dash() {
        assert_eq!(
            common_prefix(&ids(&["lab-7-17-0", "lab-7-17-1", "lab-7-17-12"])),
            "lab-7-17-"
        );
        assert_eq!(common_prefix(&ids(&["lab-7-17-0"])), "lab-7-17-");
        assert_eq!(common_prefix(&ids(&["abc", "abd"])), "");
        assert_eq!(common_prefix(&ids(&[])), "");
    }
}
