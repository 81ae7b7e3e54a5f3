//! The worker's orchestration, natively: a real SQLite ledger in a temporary file, the
//! in-memory key-value store, a manual clock and three fake services that keep the state the
//! real ones keep (idempotent by order, compensations that leave a mark) and fail on demand.

use super::*;
use crate::FulfilmentSettings;
use futures::executor::block_on;
use ledger::{CancelOutcome, DeadLetterSource, JobResult, NextStep, RusqliteSql, VALIDATION_JOB};
use orders_core::{NewOrder, OrderId, OrderStatus};
use resilience::{CircuitState, ManualClock, MemoryStore, SplitMix64};
use serde_json::{Value, json};
use std::cell::Cell;

/// When every test's clock starts.
const START_MS: u64 = 1_700_000_000_000;

/// How a fake service answers.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// As the real one would.
    Up,
    /// 503 to everything.
    Down,
    /// 404 with an HTML page (a wrong URL).
    Misrouted,
}

/// Inventory, payment and shipping, as the saga requires them to behave, in memory.
struct FakeServices {
    stock: RefCell<HashMap<String, u32>>,
    /// Per order: "reserved", "released" or "committed".
    reservations: RefCell<HashMap<String, &'static str>>,
    /// Per reserved order: what it holds.
    held: RefCell<HashMap<String, Vec<(String, u32)>>>,
    /// Per order: "authorized", "captured", "voided" or "refunded".
    payments: RefCell<HashMap<String, &'static str>>,
    /// Per order: "created" or "cancelled".
    shipments: RefCell<HashMap<String, &'static str>>,
    modes: RefCell<HashMap<Service, Mode>>,
    /// Authorizations over this amount are declined.
    decline_over_cents: Cell<u64>,
    /// Refuse to cancel shipments (they are in transit).
    shipments_in_transit: Cell<bool>,
    /// Paths that get 503 whatever the service's mode.
    failing_paths: RefCell<Vec<String>>,
    /// Every request, as `service path`.
    calls: RefCell<Vec<String>>,
    /// A customer who cancels an order (through this ledger connection) while the request to
    /// this path is out: (path, order, ledger).
    cancel_during: RefCell<Option<(String, String, Ledger<RusqliteSql>)>>,
}

impl FakeServices {
    fn new() -> Self {
        Self {
            stock: RefCell::new(HashMap::from([("Pizza".into(), 10), ("Taco".into(), 1)])),
            reservations: RefCell::default(),
            held: RefCell::default(),
            payments: RefCell::default(),
            shipments: RefCell::default(),
            modes: RefCell::default(),
            decline_over_cents: Cell::new(100_000),
            shipments_in_transit: Cell::new(false),
            failing_paths: RefCell::default(),
            calls: RefCell::default(),
            cancel_during: RefCell::default(),
        }
    }

    fn set(&self, service: Service, mode: Mode) {
        self.modes.borrow_mut().insert(service, mode);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn answer(status: u16, body: Value) -> Result<HttpAnswer, CallFailure> {
        Ok(HttpAnswer {
            status,
            retry_after: None,
            body: body.to_string().into_bytes(),
        })
    }

    fn refuse(status: u16, kind: &str, detail: &str) -> Result<HttpAnswer, CallFailure> {
        Self::answer(
            status,
            json!({"type": kind, "title": "refused", "detail": detail}),
        )
    }

    fn handle(&self, request: &ServiceRequest) -> Result<HttpAnswer, CallFailure> {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        let ok = || Self::answer(200, json!({}));
        match (request.service, segments.as_slice()) {
            (Service::Inventory, ["reservations"]) => {
                let order = body["order_id"].as_str().unwrap().to_owned();
                let mut reservations = self.reservations.borrow_mut();
                match reservations.get(&order).copied() {
                    Some("released") => Self::refuse(409, "/problems/released", "released"),
                    Some(_) => ok(),
                    None => {
                        let mut stock = self.stock.borrow_mut();
                        let lines = body["lines"].as_array().unwrap();
                        for line in lines {
                            let sku = line["sku"].as_str().unwrap();
                            let wanted = line["quantity"].as_u64().unwrap() as u32;
                            if stock.get(sku).copied().unwrap_or(0) < wanted {
                                return Self::refuse(
                                    409,
                                    "/problems/out-of-stock",
                                    &format!("{sku}: not enough stock"),
                                );
                            }
                        }
                        let mut held = Vec::new();
                        for line in lines {
                            let sku = line["sku"].as_str().unwrap();
                            let quantity = line["quantity"].as_u64().unwrap() as u32;
                            *stock.get_mut(sku).unwrap() -= quantity;
                            held.push((sku.to_owned(), quantity));
                        }
                        self.held.borrow_mut().insert(order.clone(), held);
                        reservations.insert(order, "reserved");
                        ok()
                    }
                }
            }
            (Service::Inventory, ["reservations", order, "commit"]) => {
                let mut reservations = self.reservations.borrow_mut();
                match reservations.get(*order).copied() {
                    Some("reserved" | "committed") => {
                        reservations.insert((*order).to_owned(), "committed");
                        ok()
                    }
                    _ => Self::refuse(409, "/problems/no-reservation", "nothing reserved"),
                }
            }
            (Service::Inventory, ["reservations", order, "release"]) => {
                let mut reservations = self.reservations.borrow_mut();
                match reservations.get(*order).copied() {
                    Some("committed") => Self::refuse(409, "/problems/shipped", "shipped"),
                    previous => {
                        if previous == Some("reserved") {
                            let held = self.held.borrow_mut().remove(*order).unwrap_or_default();
                            let mut stock = self.stock.borrow_mut();
                            for (sku, quantity) in held {
                                *stock.get_mut(&sku).unwrap() += quantity;
                            }
                        }
                        reservations.insert((*order).to_owned(), "released");
                        ok()
                    }
                }
            }
            (Service::Payment, ["payments"]) => {
                let order = body["order_id"].as_str().unwrap().to_owned();
                let mut payments = self.payments.borrow_mut();
                match payments.get(&order).copied() {
                    Some("voided" | "refunded") => Self::refuse(409, "/problems/voided", "voided"),
                    Some(_) => ok(),
                    None if body["amount_cents"].as_u64().unwrap()
                        > self.decline_over_cents.get() =>
                    {
                        Self::refuse(402, "/problems/declined", "amount over the limit")
                    }
                    None => {
                        payments.insert(order, "authorized");
                        ok()
                    }
                }
            }
            (Service::Payment, ["payments", order, "capture"]) => {
                let mut payments = self.payments.borrow_mut();
                match payments.get(*order).copied() {
                    Some("authorized" | "captured") => {
                        payments.insert((*order).to_owned(), "captured");
                        ok()
                    }
                    _ => Self::refuse(409, "/problems/not-authorized", "nothing to capture"),
                }
            }
            (Service::Payment, ["payments", order, "compensate"]) => {
                let mut payments = self.payments.borrow_mut();
                let next = match payments.get(*order).copied() {
                    Some("captured" | "refunded") => "refunded",
                    _ => "voided",
                };
                payments.insert((*order).to_owned(), next);
                ok()
            }
            (Service::Shipping, ["shipments"]) => {
                let order = body["order_id"].as_str().unwrap().to_owned();
                let mut shipments = self.shipments.borrow_mut();
                match shipments.get(&order).copied() {
                    Some("cancelled") => Self::refuse(409, "/problems/cancelled", "cancelled"),
                    _ => {
                        shipments.insert(order, "created");
                        Self::answer(201, json!({"tracking_number": "T1"}))
                    }
                }
            }
            (Service::Shipping, ["shipments", order, "cancel"]) => {
                if self.shipments_in_transit.get() {
                    return Self::refuse(409, "/problems/in-transit", "already in transit");
                }
                self.shipments
                    .borrow_mut()
                    .insert((*order).to_owned(), "cancelled");
                ok()
            }
            other => panic!("no such route: {other:?}"),
        }
    }
}

impl ServiceClient for FakeServices {
    fn send(
        &self,
        request: &ServiceRequest,
    ) -> impl Future<Output = Result<HttpAnswer, CallFailure>> {
        self.calls
            .borrow_mut()
            .push(format!("{} {}", request.service, request.path));
        let mode = self
            .modes
            .borrow()
            .get(&request.service)
            .cloned()
            .unwrap_or(Mode::Up);
        if let Some((path, order, ledger)) = self.cancel_during.borrow().as_ref()
            && *path == request.path
        {
            let outcome = ledger
                .request_cancel(
                    &OrderId::parse(order).unwrap(),
                    Timestamp(START_MS),
                    "mid-step",
                )
                .unwrap();
            assert_eq!(outcome, CancelOutcome::Cancelling);
        }
        let failing = self.failing_paths.borrow().contains(&request.path);
        let answer = match mode {
            Mode::Up if failing => Self::answer(503, json!({})),
            Mode::Up => self.handle(request),
            Mode::Down => Self::answer(503, json!({})),
            Mode::Misrouted => Ok(HttpAnswer {
                status: 404,
                retry_after: None,
                body: b"<html>no</html>".to_vec(),
            }),
        };
        std::future::ready(answer)
    }
}

/// Pizza costs 12.00, Taco 3.50; nothing else has a price.
struct Prices;

impl PriceList for Prices {
    fn unit_price_cents(&self, product: &str) -> Option<u64> {
        match product {
            "Pizza" => Some(1_200),
            "Taco" => Some(350),
            _ => None,
        }
    }
}

/// Records the channels it rang doorbells on.
#[derive(Default)]
struct FakePublisher {
    rang_on: RefCell<Vec<String>>,
}

impl DoorbellPublisher for FakePublisher {
    fn ring(&self, channel: &str, doorbell: &Doorbell) -> Result<(), String> {
        assert_eq!(*doorbell, Doorbell::backlog());
        self.rang_on.borrow_mut().push(channel.to_owned());
        Ok(())
    }
}

struct Harness {
    _directory: tempfile::TempDir,
    ledger: Ledger<RusqliteSql>,
    store: MemoryStore,
    clock: ManualClock,
    services: FakeServices,
    publisher: FakePublisher,
    settings: FulfilmentSettings,
    runs: Cell<u32>,
}

impl Harness {
    fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(RusqliteSql::open(directory.path().join("l.db")).unwrap());
        Self {
            _directory: directory,
            ledger,
            store: MemoryStore::new(),
            clock: ManualClock::new(START_MS),
            services: FakeServices::new(),
            publisher: FakePublisher::default(),
            settings: FulfilmentSettings::read(|_| None).unwrap(),
            runs: Cell::new(0),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now_ms())
    }

    /// An order of `items` (JSON), accepted and validated now.
    fn validated(&self, id: &str, items: &str) {
        let order = NewOrder::parse(
            format!(r#"{{"order_id": "{id}", "customer": "Ada", "items": {items}}}"#).as_bytes(),
        )
        .unwrap()
        .accept(self.now(), [0; 10]);
        let intake = ledger::Intake {
            order: &order,
            key: id,
            fingerprint: "f",
            locked_until: self.now(),
            deadline_at: Timestamp(self.now().millis() + 60_000),
            hold: None,
        };
        self.ledger.accept(&intake).unwrap();
        let job = self
            .ledger
            .claim(
                VALIDATION_JOB,
                "v",
                self.now(),
                Timestamp(self.now().millis() + 1_000),
                1,
            )
            .unwrap()
            .remove(0);
        let decision = JobResult {
            job_id: job.job_id,
            order_id: job.order_id,
            attempt: Some(1),
            outcome: Some("valid".into()),
            latency_ms: Some(1),
            recovered_from: None,
            next: NextStep::Decide {
                status: OrderStatus::Validated,
                reason: None,
                detail: None,
            },
        };
        self.ledger.apply("v", self.now(), &[decision]).unwrap();
    }

    fn drain(&self) -> FulfilmentReport {
        block_on(self.worker().drain()).unwrap()
    }

    /// A doorbell on the fulfilment channel, handled.
    fn ring(&self) -> FulfilmentReport {
        let doorbell = Doorbell::backlog().to_bytes();
        block_on(self.worker().on_message("orderly-fulfilment", &doorbell)).unwrap()
    }

    /// A fresh worker (its own id and random seed).
    fn worker(
        &self,
    ) -> FulfilmentWorker<
        '_,
        RusqliteSql,
        MemoryStore,
        ManualClock,
        FakeServices,
        Prices,
        FakePublisher,
        SplitMix64,
    > {
        self.runs.set(self.runs.get() + 1);
        FulfilmentWorker::new(
            FulfilmentParts {
                ledger: &self.ledger,
                store: &self.store,
                clock: &self.clock,
                services: &self.services,
                prices: &Prices,
                publisher: &self.publisher,
                settings: &self.settings,
            },
            SplitMix64::new(u64::from(self.runs.get())),
            format!("worker-{}", self.runs.get()),
        )
    }

    fn order(&self, id: &str) -> ledger::OrderView {
        self.ledger
            .order(&OrderId::parse(id).unwrap())
            .unwrap()
            .unwrap()
    }

    fn events(&self, id: &str) -> Vec<(EventKind, Option<String>)> {
        self.ledger
            .events(&OrderId::parse(id).unwrap())
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.outcome))
            .collect()
    }

    /// Whether any fulfilment job is left, due now or later.
    fn fulfilment_left(&self) -> bool {
        self.ledger
            .probe_work(FULFILMENT_JOB, Timestamp(i64::MAX as u64), None)
            .unwrap()
            .due
    }

    fn stock(&self, sku: &str) -> u32 {
        self.services.stock.borrow()[sku]
    }
}

fn kinds(events: &[(EventKind, Option<String>)]) -> Vec<EventKind> {
    events.iter().map(|(kind, _)| *kind).collect()
}

#[test]
fn a_validated_order_is_reserved_paid_shipped_captured_and_confirmed() {
    let h = Harness::new();
    h.validated("o1", r#"[{"product": "Pizza", "quantity": 2}]"#);
    let report = h.drain();
    assert_eq!(
        (report.claimed, report.calls, report.steps, report.confirmed),
        (1, 5, 5, 1)
    );
    assert_eq!(
        h.services.calls(),
        [
            "inventory /reservations",
            "payment /payments",
            "shipping /shipments",
            "payment /payments/o1/capture",
            "inventory /reservations/o1/commit",
        ]
    );
    assert_eq!(h.order("o1").order.status, OrderStatus::Confirmed);
    assert_eq!(h.services.payments.borrow()["o1"], "captured");
    assert_eq!(h.services.reservations.borrow()["o1"], "committed");
    assert_eq!(h.stock("Pizza"), 8);
    let events = h.events("o1");
    let saga_events: Vec<(EventKind, Option<String>)> = events
        .into_iter()
        .skip_while(|(kind, _)| *kind != EventKind::StepDone)
        .collect();
    assert_eq!(
        saga_events,
        [
            (EventKind::StepDone, Some("reserve".into())),
            (EventKind::StepDone, Some("authorize".into())),
            (EventKind::StepDone, Some("ship".into())),
            (EventKind::StepDone, Some("capture".into())),
            (EventKind::Confirmed, Some("commit".into())),
        ]
    );
    assert!(!h.fulfilment_left());
    assert_eq!(*h.publisher.rang_on.borrow(), [EVENTS_CHANNEL]);
    assert_eq!(h.drain(), FulfilmentReport::default());
    assert_eq!(
        *h.publisher.rang_on.borrow(),
        [EVENTS_CHANNEL],
        "nothing ended: no doorbell"
    );
}

#[test]
fn out_of_stock_cancels_the_order_and_releases_nothing_twice() {
    let h = Harness::new();
    h.validated("o2", r#"[{"product": "Taco", "quantity": 2}]"#);
    let report = h.drain();
    assert_eq!(report.cancelled, 1);
    let view = h.order("o2");
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(view.order.reason.as_deref(), Some("reserve_refused"));
    assert_eq!(view.order.detail.as_deref(), Some("Taco: not enough stock"));
    assert_eq!(
        h.services.calls(),
        [
            "inventory /reservations",
            "inventory /reservations/o2/release"
        ]
    );
    assert_eq!(h.stock("Taco"), 1);
    assert!(
        kinds(&h.events("o2")).ends_with(&[EventKind::StepRefused, EventKind::Cancelled]),
        "{:?}",
        h.events("o2")
    );
    assert_eq!(*h.publisher.rang_on.borrow(), [EVENTS_CHANNEL]);
}

#[test]
fn a_declined_payment_voids_it_and_releases_the_stock() {
    let h = Harness::new();
    h.services.decline_over_cents.set(1_000);
    h.validated("o3", r#"[{"product": "Pizza", "quantity": 1}]"#);
    h.drain();
    let view = h.order("o3");
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(view.order.reason.as_deref(), Some("authorize_refused"));
    assert_eq!(
        h.services.calls()[2..],
        [
            "payment /payments/o3/compensate",
            "inventory /reservations/o3/release"
        ]
    );
    assert_eq!(h.stock("Pizza"), 10);
    assert_eq!(h.services.payments.borrow()["o3"], "voided");
}

#[test]
fn a_failing_service_is_retried_later_and_the_saga_resumes_where_it_was() {
    let h = Harness::new();
    h.validated("o4", r#"[{"product": "Pizza", "quantity": 1}]"#);
    h.services.set(Service::Payment, Mode::Down);
    let report = h.drain();
    assert_eq!((report.steps, report.retried), (1, 1));
    assert_eq!(h.order("o4").order.status, OrderStatus::Reserved);
    assert!(
        h.events("o4")
            .iter()
            .any(|(kind, outcome)| *kind == EventKind::Attempt
                && outcome.as_deref() == Some("authorize: HTTP 503"))
    );
    // Not due yet: nothing happens.
    assert_eq!(h.drain().claimed, 0);
    h.services.set(Service::Payment, Mode::Up);
    h.clock.advance(h.settings.retry.max_delay_ms);
    let report = h.drain();
    assert_eq!(report.confirmed, 1);
    assert_eq!(h.order("o4").order.status, OrderStatus::Confirmed);
    // The reservation was made once.
    let reserves = h
        .services
        .calls()
        .iter()
        .filter(|call| *call == "inventory /reservations")
        .count();
    assert_eq!(reserves, 1);
}

#[test]
fn an_open_circuit_defers_sagas_without_calling_the_service() {
    let h = Harness::new();
    for index in 0..12 {
        h.validated(
            &format!("b{index}"),
            r#"[{"product": "Pizza", "quantity": 1}]"#,
        );
    }
    h.services.set(Service::Inventory, Mode::Down);
    let report = h.drain();
    let breaker = CircuitBreaker::new(
        &h.store,
        &h.clock,
        "service-inventory",
        h.settings.breaker.clone(),
    );
    assert_eq!(breaker.record_snapshot().unwrap().state, CircuitState::Open);
    assert!(report.deferred > 0, "{report:?}");
    assert!(
        (report.calls as u64) < 12,
        "an open circuit stops the calls: {report:?}"
    );
    assert!(
        h.events("b11")
            .iter()
            .any(|(kind, _)| matches!(kind, EventKind::Deferred | EventKind::RetryScheduled))
    );
}

#[test]
fn a_customer_cancellation_undoes_what_was_done() {
    let h = Harness::new();
    h.validated("o5", r#"[{"product": "Pizza", "quantity": 3}]"#);
    h.services.set(Service::Shipping, Mode::Down);
    h.drain();
    assert_eq!(h.order("o5").order.status, OrderStatus::Paid);
    assert_eq!(h.stock("Pizza"), 7);
    let outcome = h
        .ledger
        .request_cancel(&OrderId::parse("o5").unwrap(), h.now(), "changed my mind")
        .unwrap();
    assert_eq!(outcome, CancelOutcome::Cancelling);
    // Shipping is still down: its compensation waits, the order says it is being cancelled.
    h.drain();
    let view = h.order("o5");
    assert_eq!(view.order.status, OrderStatus::Cancelling);
    assert_eq!(view.order.reason.as_deref(), Some("cancelled_by_customer"));
    h.services.set(Service::Shipping, Mode::Up);
    h.clock.advance(h.settings.retry.max_delay_ms);
    let report = h.drain();
    assert_eq!(report.cancelled, 1);
    let view = h.order("o5");
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(view.order.reason.as_deref(), Some("cancelled_by_customer"));
    assert_eq!(view.order.detail.as_deref(), Some("changed my mind"));
    assert_eq!(h.stock("Pizza"), 10);
    assert_eq!(h.services.payments.borrow()["o5"], "voided");
    // The shipment that never answered is cancelled too, so a late one is refused.
    assert_eq!(h.services.shipments.borrow()["o5"], "cancelled");
    assert_eq!(
        h.ledger
            .request_cancel(&OrderId::parse("o5").unwrap(), h.now(), "again")
            .unwrap(),
        CancelOutcome::Cancelled
    );
}

#[test]
fn a_cancellation_asked_for_during_a_step_is_honoured_before_the_next() {
    let h = Harness::new();
    h.validated("o10", r#"[{"product": "Pizza", "quantity": 2}]"#);
    let customer = Ledger::new(RusqliteSql::open(h._directory.path().join("l.db")).unwrap());
    // The customer cancels while the payment is being authorized (the order is `reserved`).
    *h.services.cancel_during.borrow_mut() = Some(("/payments".into(), "o10".into(), customer));
    let report = h.drain();
    assert_eq!(report.cancelled, 1);
    let view = h.order("o10");
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(view.order.reason.as_deref(), Some("cancelled_by_customer"));
    // Nothing after the authorization was made; what was done is undone (and the shipment that
    // would have come next is cancelled ahead, so a late one is refused).
    assert_eq!(
        h.services.calls(),
        [
            "inventory /reservations",
            "payment /payments",
            "shipping /shipments/o10/cancel",
            "payment /payments/o10/compensate",
            "inventory /reservations/o10/release",
        ]
    );
    assert_eq!(h.services.payments.borrow()["o10"], "voided");
    assert_eq!(h.stock("Pizza"), 10);
}

#[test]
fn a_shipped_order_cannot_be_cancelled_and_goes_on_to_be_confirmed() {
    let h = Harness::new();
    h.validated("o6", r#"[{"product": "Pizza", "quantity": 1}]"#);
    h.services
        .failing_paths
        .borrow_mut()
        .push("/payments/o6/capture".into());
    h.drain();
    assert_eq!(h.order("o6").order.status, OrderStatus::Shipped);
    assert_eq!(
        h.ledger
            .request_cancel(&OrderId::parse("o6").unwrap(), h.now(), "too late")
            .unwrap(),
        CancelOutcome::Refused(OrderStatus::Shipped)
    );
    h.services.failing_paths.borrow_mut().clear();
    h.clock.advance(h.settings.retry.max_delay_ms);
    h.drain();
    assert_eq!(h.order("o6").order.status, OrderStatus::Confirmed);
    assert_eq!(h.services.payments.borrow()["o6"], "captured");
}

#[test]
fn a_saga_past_its_deadline_is_undone() {
    let h = Harness::new();
    h.validated("o7", r#"[{"product": "Pizza", "quantity": 1}]"#);
    h.services.set(Service::Payment, Mode::Down);
    h.drain();
    h.services.set(Service::Payment, Mode::Up);
    h.clock.advance(h.settings.deadline_ms);
    let report = h.drain();
    assert_eq!(report.cancelled, 1);
    let view = h.order("o7");
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(
        view.order.reason.as_deref(),
        Some("authorize_deadline_passed")
    );
    assert_eq!(h.services.payments.borrow()["o7"], "voided");
    assert_eq!(h.stock("Pizza"), 10);
}

#[test]
fn answers_no_service_gives_and_stuck_compensations_go_to_a_person() {
    let h = Harness::new();
    h.validated("o8", r#"[{"product": "Pizza", "quantity": 1}]"#);
    h.services.set(Service::Inventory, Mode::Misrouted);
    let report = h.drain();
    assert_eq!(report.dead_lettered, 1);
    let letters = h.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, DeadLetterSource::Job);
    assert!(
        letters[0]
            .reason
            .contains("reserve: unexpected answer: HTTP 404"),
        "{}",
        letters[0].reason
    );
    assert_eq!(h.order("o8").order.status, OrderStatus::Validated);

    // A compensation refused for good cannot be skipped either: the shipment that the saga
    // reached is in transit by the time the customer cancels.
    h.services.set(Service::Inventory, Mode::Up);
    h.validated("o9", r#"[{"product": "Pizza", "quantity": 1}]"#);
    h.services.set(Service::Shipping, Mode::Down);
    h.drain();
    assert_eq!(h.order("o9").order.status, OrderStatus::Paid);
    h.ledger
        .request_cancel(&OrderId::parse("o9").unwrap(), h.now(), "no")
        .unwrap();
    h.services.set(Service::Shipping, Mode::Up);
    h.services.shipments_in_transit.set(true);
    let report = h.drain();
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(h.order("o9").order.status, OrderStatus::Cancelling);
    let letters = h.ledger.dead_letters(false, 10).unwrap();
    assert!(
        letters
            .iter()
            .any(|letter| letter.reason.contains("refused to cancel_shipment")),
        "{letters:?}"
    );
}

#[test]
fn a_product_without_a_price_cannot_be_charged() {
    let h = Harness::new();
    h.services.stock.borrow_mut().insert("Salad".into(), 5);
    h.validated("o10", r#"[{"product": "Salad", "quantity": 1}]"#);
    h.drain();
    let view = h.order("o10");
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(view.order.reason.as_deref(), Some("authorize_refused"));
    assert_eq!(view.order.detail.as_deref(), Some("no price for Salad"));
    assert_eq!(h.stock("Salad"), 5);
}

#[test]
fn doorbells_start_no_more_workers_than_there_are_drainer_slots() {
    let harness = Harness::new();
    harness.validated("o-1", r#"[{"product": "Pizza", "quantity": 1}]"#);
    // Every slot held by workers that are draining elsewhere.
    let drainers = Bulkhead::new(
        &harness.store,
        &harness.clock,
        pipeline::FULFILMENT_DRAINERS,
        harness.settings.drainers.clone(),
    );
    let held: Vec<_> = (0..harness.settings.drainers.slots)
        .map(|_| drainers.try_enter().unwrap().unwrap())
        .collect();
    assert_eq!(
        harness.ring().claimed,
        0,
        "no slot: the doorbell leaves it to them"
    );
    assert_eq!(harness.order("o-1").order.status, OrderStatus::Validated);
    // The sweep needs no slot.
    assert_eq!(harness.drain().confirmed, 1);
    for permit in held {
        drainers.leave(permit).unwrap();
    }
    harness.validated("o-2", r#"[{"product": "Pizza", "quantity": 1}]"#);
    assert_eq!(
        harness.ring().confirmed,
        1,
        "a free slot: the doorbell drains"
    );
    assert_eq!(drainers.occupied().unwrap(), 0, "and gives its slot back");
}
