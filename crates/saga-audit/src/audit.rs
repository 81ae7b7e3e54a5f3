//! The saga's invariants over a [`Snapshot`], each with the orders or SKUs that break it.

use crate::state::{CancelRequest, OrderRecord, Snapshot, is_final};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Violations listed per invariant in the report; the rest are counted.
const SHOWN_VIOLATIONS: usize = 10;

/// One invariant and what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The invariant, in words.
    pub invariant: &'static str,
    /// How many orders or SKUs it was checked on.
    pub checked: usize,
    /// Each violation, in words.
    pub violations: Vec<String>,
}

impl Check {
    /// Whether nothing broke it.
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Every invariant checked on one snapshot, and the orders' final statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The invariants, in the order they are reported.
    pub checks: Vec<Check>,
    /// Orders by (status, reason).
    pub outcomes: BTreeMap<(String, String), usize>,
}

impl Audit {
    /// Checks every invariant on `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Self {
        let orders = &snapshot.orders;
        let mut outcomes = BTreeMap::new();
        for record in orders {
            let reason = record.order.reason.clone().unwrap_or_default();
            *outcomes
                .entry((record.order.status.clone(), reason))
                .or_insert(0) += 1;
        }
        Self {
            checks: vec![
                per_order(
                    "every order ends final (confirmed, cancelled, rejected, failed)",
                    orders,
                    ends_final,
                ),
                stock_conserved(snapshot),
                per_order(
                    "every order is charged at most once (a confirmed one exactly once)",
                    orders,
                    charged_at_most_once,
                ),
                per_order(
                    "no order that is not confirmed keeps a charge or a hold (refunded or voided)",
                    orders,
                    uncharged_unless_confirmed,
                ),
                per_order(
                    "no reservation outlives its order (committed if confirmed, else released)",
                    orders,
                    reservation_settled,
                ),
                per_order(
                    "shipments match their orders (live if confirmed, else none or cancelled)",
                    orders,
                    shipment_matches,
                ),
                per_order(
                    "every accepted cancellation (202) ends cancelled",
                    orders,
                    cancellation_kept,
                ),
            ],
            outcomes,
        }
    }

    /// Whether every invariant holds.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::holds)
    }

    /// The invariants as a markdown table, with the first violations of each broken one, then
    /// the orders by final status and reason.
    pub fn markdown(&self) -> String {
        let mut out =
            String::from("| invariant | checked | violations | verdict |\n|---|---:|---:|---|\n");
        for check in &self.checks {
            let verdict = if check.holds() { "PASS" } else { "FAIL" };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {verdict} |",
                check.invariant,
                check.checked,
                check.violations.len()
            );
        }
        for check in self.checks.iter().filter(|check| !check.holds()) {
            let _ = writeln!(out, "\nViolations of \"{}\":\n", check.invariant);
            for violation in check.violations.iter().take(SHOWN_VIOLATIONS) {
                let _ = writeln!(out, "- {violation}");
            }
            if check.violations.len() > SHOWN_VIOLATIONS {
                let _ = writeln!(
                    out,
                    "- ... and {} more",
                    check.violations.len() - SHOWN_VIOLATIONS
                );
            }
        }
        out.push_str("\n| status | reason | orders |\n|---|---|---:|\n");
        for ((status, reason), orders) in &self.outcomes {
            let reason = if reason.is_empty() { "–" } else { reason };
            let _ = writeln!(out, "| {status} | {reason} | {orders} |");
        }
        out
    }
}

/// An invariant checked on each order by `violation`, which describes what is wrong, if
/// anything.
fn per_order(
    invariant: &'static str,
    orders: &[OrderRecord],
    violation: fn(&OrderRecord) -> Option<String>,
) -> Check {
    Check {
        invariant,
        checked: orders.len(),
        violations: orders
            .iter()
            .filter_map(|record| {
                violation(record).map(|what| format!("order {}: {what}", record.order.id))
            })
            .collect(),
    }
}

fn ends_final(record: &OrderRecord) -> Option<String> {
    (!is_final(&record.order.status)).then(|| format!("still {}", record.order.status))
}

fn charged_at_most_once(record: &OrderRecord) -> Option<String> {
    let confirmed = record.order.status == "confirmed";
    let Some(payment) = &record.payment else {
        return confirmed.then(|| "confirmed without a payment".to_owned());
    };
    let amount = payment.amount_cents.unwrap_or(0);
    if payment.captured_cents != 0 && payment.captured_cents != amount {
        return Some(format!(
            "captured {} cents of an authorization of {amount}",
            payment.captured_cents
        ));
    }
    if payment.refunded_cents > payment.captured_cents {
        return Some(format!(
            "refunded {} cents of {} captured",
            payment.refunded_cents, payment.captured_cents
        ));
    }
    (confirmed && (payment.state != "captured" || payment.charged_cents() != amount)).then(|| {
        format!(
            "confirmed, but its payment is {} with {} of {amount} cents charged",
            payment.state,
            payment.charged_cents()
        )
    })
}

fn uncharged_unless_confirmed(record: &OrderRecord) -> Option<String> {
    let status = record.order.status.as_str();
    if status == "confirmed" || !is_final(status) {
        return None;
    }
    let payment = record.payment.as_ref()?;
    let settled = ["declined", "voided", "refunded", "cancelled"].contains(&payment.state.as_str());
    (!settled || payment.charged_cents() > 0).then(|| {
        format!(
            "{status}, but its payment is {} with {} cents charged",
            payment.state,
            payment.charged_cents()
        )
    })
}

fn reservation_settled(record: &OrderRecord) -> Option<String> {
    let status = record.order.status.as_str();
    if !is_final(status) {
        return None;
    }
    let state = record
        .reservation
        .as_ref()
        .map(|found| found.state.as_str());
    match (status, state) {
        ("confirmed", Some("committed")) => None,
        ("confirmed", state) => Some(format!(
            "confirmed, but its reservation is {}",
            state.unwrap_or("missing")
        )),
        (_, None | Some("released")) => None,
        (status, Some(state)) => Some(format!("{status}, but its reservation is {state}")),
    }
}

fn shipment_matches(record: &OrderRecord) -> Option<String> {
    let status = record.order.status.as_str();
    if !is_final(status) {
        return None;
    }
    let shipment = record.shipment.as_ref().map(|found| found.status.as_str());
    match (status, shipment) {
        ("confirmed", Some(shipment)) if shipment != "cancelled" => None,
        ("confirmed", shipment) => Some(format!(
            "confirmed, but its shipment is {}",
            shipment.unwrap_or("missing")
        )),
        (_, None | Some("cancelled")) => None,
        (status, Some(shipment)) => Some(format!("{status}, but its shipment is {shipment}")),
    }
}

fn cancellation_kept(record: &OrderRecord) -> Option<String> {
    let status = record.order.status.as_str();
    (record.cancel == CancelRequest::Accepted && is_final(status) && status != "cancelled")
        .then(|| format!("its cancellation was accepted, but it ended {status}"))
}

/// Stock: for every SKU, `available + reserved + shipped = received = initial + restocks`, and
/// the reserved and shipped units are exactly those of the orders' reservations that are held
/// and committed.
fn stock_conserved(snapshot: &Snapshot) -> Check {
    let mut held: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for reservation in snapshot
        .orders
        .iter()
        .filter_map(|record| record.reservation.as_ref())
    {
        for (sku, units) in &reservation.lines {
            let entry = held.entry(sku.to_ascii_lowercase()).or_default();
            match reservation.state.as_str() {
                "reserved" => entry.0 += units,
                "committed" => entry.1 += units,
                _ => {}
            }
        }
    }
    let mut violations = Vec::new();
    for level in &snapshot.stock {
        let restocked: u64 = snapshot
            .restocked
            .iter()
            .filter(|(sku, _)| sku.eq_ignore_ascii_case(&level.sku))
            .map(|(_, units)| units)
            .sum();
        let total = level.available + level.reserved + level.shipped;
        let expected = level.initial.map(|initial| initial + restocked);
        if total != level.received || expected.is_some_and(|expected| expected != level.received) {
            violations.push(format!(
                "{}: available {} + reserved {} + shipped {} = {total}, received {}, initial {} + restocked {restocked}",
                level.sku,
                level.available,
                level.reserved,
                level.shipped,
                level.received,
                level
                    .initial
                    .map_or_else(|| "unknown".to_owned(), |initial| initial.to_string()),
            ));
        }
        let (reserved, shipped) = held
            .get(&level.sku.to_ascii_lowercase())
            .copied()
            .unwrap_or_default();
        if (reserved, shipped) != (level.reserved, level.shipped) {
            violations.push(format!(
                "{}: the stock shows {} reserved and {} shipped, the orders' reservations hold {reserved} and committed {shipped}",
                level.sku, level.reserved, level.shipped
            ));
        }
    }
    Check {
        invariant: "stock is conserved: available + reserved + shipped = initial + restocks, reserved and shipped as the reservations say",
        checked: snapshot.stock.len(),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{OrderView, PaymentView, ReservationView, ShipmentView, StockView};

    fn payment(state: &str, amount: u64, captured: u64, refunded: u64) -> Option<PaymentView> {
        Some(PaymentView {
            state: state.into(),
            amount_cents: Some(amount),
            captured_cents: captured,
            refunded_cents: refunded,
        })
    }

    fn reservation(state: &str, units: u64) -> Option<ReservationView> {
        Some(ReservationView {
            state: state.into(),
            lines: vec![("Pizza".into(), units)],
        })
    }

    fn shipment(status: &str) -> Option<ShipmentView> {
        Some(ShipmentView {
            status: status.into(),
        })
    }

    fn order(id: &str, status: &str) -> OrderRecord {
        OrderRecord {
            order: OrderView {
                id: id.into(),
                status: status.into(),
                reason: None,
            },
            cancel: CancelRequest::NotAsked,
            payment: None,
            reservation: None,
            shipment: None,
        }
    }

    fn confirmed(id: &str, units: u64) -> OrderRecord {
        OrderRecord {
            payment: payment("captured", 100 * units, 100 * units, 0),
            reservation: reservation("committed", units),
            shipment: shipment("label_created"),
            ..order(id, "confirmed")
        }
    }

    fn pizza(available: u64, reserved: u64, shipped: u64) -> StockView {
        StockView {
            sku: "Pizza".into(),
            available,
            reserved,
            shipped,
            received: 10,
            initial: Some(10),
        }
    }

    /// A healthy run: one confirmed, one cancelled by its customer after reserving and paying,
    /// one refused for stock, one rejected by the validator.
    fn healthy() -> Snapshot {
        let mut refunded = OrderRecord {
            cancel: CancelRequest::Accepted,
            payment: payment("voided", 200, 0, 0),
            reservation: reservation("released", 2),
            shipment: shipment("cancelled"),
            ..order("cancelled", "cancelled")
        };
        refunded.order.reason = Some("cancelled_by_customer".into());
        let mut short = OrderRecord {
            payment: None,
            ..order("short", "cancelled")
        };
        short.order.reason = Some("reserve_refused".into());
        Snapshot {
            orders: vec![
                confirmed("ok", 3),
                refunded,
                short,
                order("bad", "rejected"),
            ],
            stock: vec![pizza(7, 0, 3)],
            restocked: Vec::new(),
        }
    }

    fn violations(snapshot: &Snapshot) -> Vec<(&'static str, String)> {
        Audit::of(snapshot)
            .checks
            .into_iter()
            .flat_map(|check| {
                check
                    .violations
                    .into_iter()
                    .map(move |violation| (check.invariant, violation))
            })
            .collect()
    }

    #[test]
    fn a_healthy_run_passes_every_invariant() {
        let audit = Audit::of(&healthy());
        assert!(audit.passed(), "{}", audit.markdown());
        assert_eq!(audit.checks.len(), 7);
        assert_eq!(
            audit.outcomes[&("cancelled".to_owned(), "reserve_refused".to_owned())],
            1
        );
        let report = audit.markdown();
        assert!(report.contains("| confirmed | – | 1 |"), "{report}");
        assert!(!report.contains("FAIL"), "{report}");
    }

    #[test]
    fn an_order_left_midway_is_not_final() {
        let mut snapshot = healthy();
        snapshot.orders.push(order("late", "paid"));
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "order late: still paid");
    }

    #[test]
    fn stock_that_does_not_add_up_is_caught() {
        let mut snapshot = healthy();
        snapshot.stock = vec![pizza(8, 0, 3)];
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("= 11, received 10"), "{found:?}");

        // Adds up, but the stock holds units no reservation accounts for.
        let mut snapshot = healthy();
        snapshot.stock = vec![pizza(5, 2, 3)];
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("hold 0 and committed 3"), "{found:?}");

        // A restock counts towards what was received.
        let mut snapshot = healthy();
        snapshot.stock = vec![StockView {
            received: 15,
            ..pizza(12, 0, 3)
        }];
        assert_eq!(violations(&snapshot).len(), 1);
        snapshot.restocked = vec![("pizza".into(), 5)];
        assert!(violations(&snapshot).is_empty());
    }

    #[test]
    fn a_double_or_partial_charge_is_caught() {
        let mut snapshot = healthy();
        snapshot.orders[0].payment = payment("captured", 300, 600, 0);
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("captured 600 cents"), "{found:?}");

        let mut snapshot = healthy();
        snapshot.orders[0].payment = payment("authorized", 300, 0, 0);
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .1
                .contains("confirmed, but its payment is authorized")
        );
    }

    #[test]
    fn a_cancelled_order_still_charged_or_held_is_caught() {
        for kept in [
            payment("captured", 200, 200, 0),
            payment("authorized", 200, 0, 0),
        ] {
            let mut snapshot = healthy();
            snapshot.orders[1].payment = kept;
            let found = violations(&snapshot);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].0.starts_with("no order that is not confirmed"));
        }
    }

    #[test]
    fn a_reservation_held_or_committed_for_a_dead_order_is_caught() {
        let mut snapshot = healthy();
        snapshot.orders[1].reservation = reservation("reserved", 2);
        snapshot.stock = vec![pizza(5, 2, 3)];
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].1,
            "order cancelled: cancelled, but its reservation is reserved"
        );

        let mut snapshot = healthy();
        snapshot.orders[0].reservation = reservation("reserved", 3);
        snapshot.stock = vec![pizza(7, 3, 0)];
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .1
                .contains("confirmed, but its reservation is reserved")
        );
    }

    #[test]
    fn shipments_and_kept_cancellations_are_checked() {
        let mut snapshot = healthy();
        snapshot.orders[0].shipment = shipment("cancelled");
        snapshot.orders[1].shipment = shipment("label_created");
        let found = violations(&snapshot);
        assert_eq!(found.len(), 2, "{found:?}");

        let mut snapshot = healthy();
        snapshot.orders[0].cancel = CancelRequest::Accepted;
        let found = violations(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .1
                .contains("cancellation was accepted, but it ended confirmed")
        );
        snapshot.orders[0].cancel = CancelRequest::Refused;
        assert!(violations(&snapshot).is_empty());
    }

    #[test]
    fn the_report_lists_the_first_violations_and_counts_the_rest() {
        let mut snapshot = healthy();
        for n in 0..12 {
            snapshot.orders.push(order(&format!("p{n}"), "processing"));
        }
        let audit = Audit::of(&snapshot);
        assert!(!audit.passed());
        let report = audit.markdown();
        assert!(report.contains("| 16 | 12 | FAIL |"), "{report}");
        assert!(report.contains("- order p9: still processing"), "{report}");
        assert!(!report.contains("order p10:"), "{report}");
        assert!(report.contains("- ... and 2 more"), "{report}");
    }
}
