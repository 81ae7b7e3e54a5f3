//! Waiting for orders to be final and notified, and saying why one is not.

use crate::app_http::Http;
use futures::StreamExt as _;
use saga_audit::state::{self, is_final};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How often the orders still running are read.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Reads in flight while polling.
const READS_IN_FLIGHT: usize = 16;
/// Events shown per stuck order.
const STUCK_EVENTS: usize = 5;
/// Orders not final that [`write_stuck`] describes; the rest are counted.
const SHOWN_STUCK: usize = 10;

/// How long the orders took to be final, for a report: `1.23 s`, or `not within 60 s (3 not
/// final)` when some (`stuck`) were not within `limit`.
pub fn time_to_final(stuck: &[String], took: Duration, limit: Duration) -> String {
    if stuck.is_empty() {
        format!("{:.2} s", took.as_secs_f64())
    } else {
        format!(
            "not within {} s ({} not final)",
            limit.as_secs(),
            stuck.len()
        )
    }
}

/// Polls the orders until every one is final or `limit` passes; the ids of those that are not.
pub async fn wait_final(http: &Http, ids: &[String], limit: Duration) -> Vec<String> {
    let give_up = Instant::now() + limit;
    let mut pending = ids.to_vec();
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

/// Polls the notifications until each of `ids` has one or `limit` passes; how many
/// notifications each of `ids` has (those without one included, at 0).
pub async fn wait_notified(
    http: &Http,
    ids: &[String],
    limit: Duration,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let give_up = Instant::now() + limit;
    loop {
        let mut counts: BTreeMap<String, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
        for notification in http.every_page("/notifications", "notifications").await? {
            if let Some(count) = notification["order_id"]
                .as_str()
                .and_then(|id| counts.get_mut(id))
            {
                *count += 1;
            }
        }
        if counts.values().all(|count| *count > 0) || Instant::now() >= give_up {
            return Ok(counts);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The order's status and its last events, in one line.
pub async fn last_events(http: &Http, id: &str) -> anyhow::Result<String> {
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

/// Writes each of the first orders of `stuck` (not final) with its status and last events
/// into a findings body, and how many more there are.
pub async fn write_stuck(out: &mut String, http: &Http, stuck: &[String]) -> anyhow::Result<()> {
    for id in stuck.iter().take(SHOWN_STUCK) {
        writeln!(out, "- not final: {id}: {}", last_events(http, id).await?)?;
    }
    if stuck.len() > SHOWN_STUCK {
        writeln!(
            out,
            "- ... and {} more not final",
            stuck.len() - SHOWN_STUCK
        )?;
    }
    Ok(())
}
