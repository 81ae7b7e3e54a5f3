//! What an experiment reads once its orders are final: each order and its timeline (nothing
//! done twice, nothing missing), the notifications (each confirmed or cancelled order notified
//! exactly once), and the saga's invariants over what the services hold.

use crate::app_http::Http;
use crate::settle::wait_notified;
use crate::timeline::{self, Traced};
use saga_audit::audit::Audit;
use saga_audit::state::{self, CancelRequest};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest wait for every confirmed or cancelled order's notification.
const NOTIFICATION_WAIT: Duration = Duration::from_secs(15);

/// The orders of a run, read after it.
pub struct Inspection {
    /// Each order and its timeline.
    pub traced: Vec<Traced>,
    /// What is wrong with the timelines, as `<id>: <fault>`.
    pub timeline_faults: Vec<String>,
    /// Confirmed or cancelled orders checked for their notification.
    pub notifiable: usize,
    /// Those not notified exactly once, as `<id>: <count> notifications`.
    pub notification_faults: Vec<String>,
    /// The saga's invariants over every order.
    pub audit: Audit,
}

impl Inspection {
    /// Reads the orders `ids` (none cancelled by its customer), their timelines, their
    /// notifications and what the services hold about them.
    pub async fn of(http: &Http, ids: &[String]) -> anyhow::Result<Self> {
        let traced = timeline::trace_all(http, ids).await?;
        let notifiable: Vec<String> = traced
            .iter()
            .filter(|order| matches!(order.status.as_str(), "confirmed" | "cancelled"))
            .map(|order| order.id.clone())
            .collect();
        let notifications = wait_notified(http, &notifiable, NOTIFICATION_WAIT).await?;
        let orders: Vec<(String, CancelRequest)> = ids
            .iter()
            .map(|id| (id.clone(), CancelRequest::NotAsked))
            .collect();
        let snapshot = state::snapshot(http, &orders, Vec::new())
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            timeline_faults: timeline::faults(&traced),
            notifiable: notifiable.len(),
            notification_faults: notification_faults(&notifications),
            audit: Audit::of(&snapshot),
            traced,
        })
    }

    /// How many of the saga's invariants failed.
    pub fn failed_invariants(&self) -> usize {
        self.audit
            .checks
            .iter()
            .filter(|check| !check.holds())
            .count()
    }

    /// Whether nothing was done twice or left out, and every notification came once.
    pub fn once_each(&self) -> bool {
        self.timeline_faults.is_empty() && self.notification_faults.is_empty()
    }

    /// Events of `kind` over every order.
    pub fn events(&self, kind: &str) -> usize {
        self.traced
            .iter()
            .map(|order| order.timeline.count(kind))
            .sum()
    }

    /// The orders by status, as `cancelled 7, confirmed 213`.
    pub fn statuses(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for order in &self.traced {
            *counts.entry(order.status.as_str()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(status, count)| format!("{status} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The orders not notified exactly once, from the number of notifications of each.
fn notification_faults(notifications: &BTreeMap<String, usize>) -> Vec<String> {
    notifications
        .iter()
        .filter(|(_, count)| **count != 1)
        .map(|(id, count)| format!("{id}: {count} notifications"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_notified_other_than_once_is_a_fault() {
        let counts: BTreeMap<String, usize> = [("a", 1), ("b", 0), ("c", 2)]
            .into_iter()
            .map(|(id, count)| (id.to_owned(), count))
            .collect();
        assert_eq!(
            notification_faults(&counts),
            ["b: 0 notifications", "c: 2 notifications"]
        );
    }
}
