//! Waiting on an outage of the validator through Orderly's admin endpoints, as the `pipeline`
//! command does: the breaker opening and closing, the backlog draining.

use crate::control::{AdminStats, Breaker, BreakerState, Control};
use std::time::{Duration, Instant, SystemTime};

/// How often the admin endpoints are polled while waiting for the breaker or the drain.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Polls between two progress lines while waiting for the backlog to drain.
const POLLS_PER_PROGRESS_LINE: u32 = 20;

/// Waiting for nothing to be processing.
pub struct Drain {
    /// When a poll first saw nothing processing; `None` if none did in time.
    pub drained_at: Option<Instant>,
    /// The last counters read.
    pub last: AdminStats,
}

/// Polls until nothing is processing, or until `limit` has passed.
pub async fn wait_drained(control: &Control, limit: Duration) -> anyhow::Result<Drain> {
    let give_up = Instant::now() + limit;
    let mut polls = 0_u32;
    loop {
        let stats = control.stats().await?;
        let now = Instant::now();
        if stats.orders.processing == 0 || now >= give_up {
            return Ok(Drain {
                drained_at: (stats.orders.processing == 0).then_some(now),
                last: stats,
            });
        }
        if polls.is_multiple_of(POLLS_PER_PROGRESS_LINE) {
            eprintln!("  draining: {}", backlog(&stats));
        }
        polls += 1;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The pipeline's backlog in one line.
fn backlog(stats: &AdminStats) -> String {
    format!(
        "{} processing, {} settled; jobs {} due (oldest {} ms), {} deferred, {} leased; {} dead letters",
        stats.orders.processing,
        stats.orders.settled(),
        stats.jobs_due,
        stats
            .oldest_due_age_ms
            .map_or_else(|| "–".to_owned(), |age| age.to_string()),
        stats.jobs_deferred,
        stats.jobs_leased,
        stats.dead_letters
    )
}

/// Polls the breaker until it is seen open since `began`, or until `give_up`; returns when it
/// opened.
pub async fn first_open(
    control: &Control,
    began: SystemTime,
    give_up: Instant,
) -> anyhow::Result<Option<SystemTime>> {
    loop {
        if let Some(since) = opened_since(&control.breaker().await?, began) {
            return Ok(Some(since));
        }
        if Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// When `breaker` opened, if it is open and opened at or after `began` (an earlier opening
/// belongs to something else).
fn opened_since(breaker: &Breaker, began: SystemTime) -> Option<SystemTime> {
    (breaker.state == BreakerState::Open && breaker.since >= began).then_some(breaker.since)
}

/// Polls the breaker until it is closed, or until `give_up`; returns since when.
pub async fn wait_closed(
    control: &Control,
    give_up: Instant,
) -> anyhow::Result<Option<SystemTime>> {
    loop {
        let breaker = control.breaker().await?;
        if breaker.state == BreakerState::Closed {
            return Ok(Some(breaker.since));
        }
        if Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `to − from` in milliseconds, negative when `to` is earlier.
pub fn signed_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(after) => after.as_secs_f64() * 1000.0,
        Err(before) => -before.duration().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::parse_timestamp;

    #[test]
    fn only_an_opening_after_the_outage_began_counts() {
        let began = parse_timestamp("2026-11-30T10:00:00.000Z").unwrap();
        let breaker = |state, since| Breaker {
            state,
            since: parse_timestamp(since).unwrap(),
            trips: 1,
        };
        let opened = breaker(BreakerState::Open, "2026-11-30T10:00:00.412Z");
        assert_eq!(opened_since(&opened, began), Some(opened.since));
        assert_eq!(signed_ms(began, opened.since), 412.0);
        let stale = breaker(BreakerState::Open, "2026-11-30T09:59:59.000Z");
        assert_eq!(opened_since(&stale, began), None);
        let probing = breaker(BreakerState::HalfOpen, "2026-11-30T10:00:01.000Z");
        assert_eq!(opened_since(&probing, began), None);
    }

    #[test]
    fn signed_ms_is_negative_when_the_event_came_first() {
        let normal = parse_timestamp("2026-11-30T10:00:05.000Z").unwrap();
        let closed = parse_timestamp("2026-11-30T10:00:04.750Z").unwrap();
        assert_eq!(signed_ms(normal, closed), -250.0);
        assert_eq!(signed_ms(closed, normal), 250.0);
    }
}
