//! The synchronous path natively: a real SQLite ledger in a temporary file, the in-memory
//! key-value store, a manual clock that the fakes move as their calls take time, a fake
//! validator and fake services that keep stock and payments, answer late past the request's
//! deadline as a timed-out call does (the late call still lands), and fail on demand.

use super::*;
use fulfilment::{FulfilmentReport, ServiceRequest};
use futures::executor::block_on;
use ledger::{EventKind, Intake, RusqliteSql};
use orders_core::NewOrder;
use resilience::{HttpAnswer, ManualClock, MemoryStore};
use saga::Service;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

const START_MS: u64 = 1_700_000_000_000;
/// The request's time in every test.
const DEADLINE_MS: u64 = 2_000;

fn answer(status: u16, body: Value) -> Result<HttpAnswer, CallFailure> {
    Ok(HttpAnswer {
        status,
        retry_after: None,
        body: body.to_string().into_bytes(),
    })
}

/// A call that takes `took_ms` on `clock`, cut short at `deadline_ms` as a client timeout
/// would; whether it was.
fn take_time(clock: &ManualClock, took_ms: u64, deadline_ms: u64) -> bool {
    let now = clock.now_ms();
    if now + took_ms >= deadline_ms {
        clock.set(deadline_ms.max(now));
        true
    } else {
        clock.advance(took_ms);
        false
    }
}

struct FakeValidator<'a> {
    clock: &'a ManualClock,
    /// `None`: valid; `Some(503)`: down; `Some(200)`: rejects.
    verdict: Cell<Option<u16>>,
    deadline_ms: Cell<u64>,
}

impl ValidatorClient for FakeValidator<'_> {
    async fn validate(&self, body: Vec<u8>) -> Result<HttpAnswer, CallFailure> {
        take_time(self.clock, 5, self.deadline_ms.get());
        let order: Value = serde_json::from_slice(&body).unwrap();
        match self.verdict.get() {
            None => answer(
                200,
                json!({"order_id": order["order_id"], "verdict": "valid"}),
            ),
            Some(200) => answer(
                200,
                json!({"order_id": order["order_id"], "verdict": "rejected",
                    "reason": "unknown_product", "detail": "no such product"}),
            ),
            Some(status) => answer(status, json!({})),
        }
    }
}

/// How the inventory answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Inventory {
    Up,
    /// 500 to every work call.
    Error,
    /// Every work call takes this long (and still lands when the caller gave up).
    Slow(u64),
}

struct FakeServices<'a> {
    clock: &'a ManualClock,
    deadline_ms: Cell<u64>,
    inventory: Cell<Inventory>,
    stock: RefCell<HashMap<String, u32>>,
    /// Per order: what it holds, or `None` once released (a tombstone).
    reservations: RefCell<HashMap<String, Option<u32>>>,
    /// Per order: "authorized", "captured" or "voided".
    payments: RefCell<HashMap<String, &'static str>>,
    decline_over_cents: u64,
}

impl FakeServices<'_> {
    fn stock(&self) -> u32 {
        self.stock.borrow()["Pizza"]
    }

    fn handle(&self, request: &ServiceRequest) -> Result<HttpAnswer, CallFailure> {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        if request.service == Service::Inventory {
            match self.inventory.get() {
                Inventory::Up => {}
                Inventory::Error => return answer(500, json!({})),
                Inventory::Slow(delay_ms) => {
                    if take_time(self.clock, delay_ms, self.deadline_ms.get()) {
                        // Cut short: it lands later all the same.
                        let _ = self.inventory_call(&segments, &body);
                        return Err(CallFailure::Timeout("waiting for the answer".into()));
                    }
                }
            }
            return self.inventory_call(&segments, &body);
        }
        let mut payments = self.payments.borrow_mut();
        match (request.service, segments.as_slice()) {
            (Service::Payment, ["payments"]) => {
                if body["amount_cents"].as_u64().unwrap() > self.decline_over_cents {
                    return answer(
                        402,
                        json!({"type": "/problems/payment-declined", "detail": "card declined"}),
                    );
                }
                let order = body["order_id"].as_str().unwrap().to_owned();
                payments.insert(order, "authorized");
                answer(201, json!({}))
            }
            (Service::Payment, ["payments", id, "capture"]) => {
                payments.insert((*id).to_owned(), "captured");
                answer(200, json!({}))
            }
            (Service::Shipping, ["shipments"]) => answer(201, json!({})),
            (Service::Payment, ["payments", id, "compensate"]) => {
                payments.insert((*id).to_owned(), "voided");
                answer(200, json!({}))
            }
            other => panic!("unexpected call {other:?}"),
        }
    }

    fn inventory_call(&self, segments: &[&str], body: &Value) -> Result<HttpAnswer, CallFailure> {
        let mut reservations = self.reservations.borrow_mut();
        let mut stock = self.stock.borrow_mut();
        match segments {
            ["reservations"] => {
                let order = body["order_id"].as_str().unwrap().to_owned();
                if let Some(held) = reservations.get(&order) {
                    return match held {
                        Some(_) => answer(200, json!({})),
                        None => answer(409, json!({"type": "/problems/reservation-released"})),
                    };
                }
                let wanted = body["lines"][0]["quantity"].as_u64().unwrap() as u32;
                let available = stock["Pizza"];
                if available < wanted {
                    return answer(
                        409,
                        json!({"type": "/problems/out-of-stock", "detail": "Pizza: 1 available"}),
                    );
                }
                stock.insert("Pizza".into(), available - wanted);
                reservations.insert(order, Some(wanted));
                answer(201, json!({}))
            }
            ["reservations", _, "commit"] => answer(200, json!({})),
            ["reservations", id, "release"] => {
                if let Some(Some(held)) = reservations.insert((*id).to_owned(), None) {
                    *stock.get_mut("Pizza").unwrap() += held;
                }
                answer(200, json!({}))
            }
            other => panic!("unexpected inventory call {other:?}"),
        }
    }
}

impl ServiceClient for FakeServices<'_> {
    async fn send(&self, request: &ServiceRequest) -> Result<HttpAnswer, CallFailure> {
        take_time(self.clock, 2, self.deadline_ms.get());
        self.handle(request)
    }
}

/// Records the channels it rang doorbells on.
#[derive(Default)]
struct FakePublisher {
    rang_on: RefCell<Vec<String>>,
}

impl DoorbellPublisher for FakePublisher {
    fn ring(&self, channel: &str, _doorbell: &pipeline::Doorbell) -> Result<(), String> {
        self.rang_on.borrow_mut().push(channel.to_owned());
        Ok(())
    }
}

struct Harness<'a> {
    ledger: &'a Ledger<RusqliteSql>,
    publisher: FakePublisher,
    store: MemoryStore,
    clock: &'a ManualClock,
    validator: FakeValidator<'a>,
    services: FakeServices<'a>,
    prices: catalog::Catalog,
    validation: WorkerSettings,
    fulfilment: FulfilmentSettings,
}

impl<'a> Harness<'a> {
    fn new(ledger: &'a Ledger<RusqliteSql>, clock: &'a ManualClock) -> Self {
        Self {
            ledger,
            publisher: FakePublisher::default(),
            store: MemoryStore::new(),
            clock,
            validator: FakeValidator {
                clock,
                verdict: Cell::new(None),
                deadline_ms: Cell::new(u64::MAX),
            },
            services: FakeServices {
                clock,
                deadline_ms: Cell::new(u64::MAX),
                inventory: Cell::new(Inventory::Up),
                stock: RefCell::new(HashMap::from([("Pizza".into(), 10)])),
                reservations: RefCell::default(),
                payments: RefCell::default(),
                // Pizza is 12.99: two pass, three are declined.
                decline_over_cents: 3_000,
            },
            prices: catalog::Catalog::standard(),
            validation: WorkerSettings::read(|_| None).unwrap(),
            fulfilment: FulfilmentSettings::read(|_| None).unwrap(),
        }
    }

    /// Accepts order `id` for `quantity` pizzas through the intake and runs it synchronously.
    fn order(&self, id: &str, quantity: u32) -> Checkout {
        let now = Timestamp(self.clock.now_ms());
        let order = NewOrder::parse(
            json!({"order_id": id, "customer": "Ada",
                "items": [{"product": "Pizza", "quantity": quantity}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
        .accept(now, [0; 10]);
        let intake = Intake {
            order: &order,
            key: id,
            fingerprint: "f",
            locked_until: now,
            deadline_at: Timestamp(now.millis() + 60_000),
            hold: None,
        };
        self.ledger.accept(&intake).unwrap();
        let deadline = deadline_ms(now.millis(), DEADLINE_MS, None);
        self.validator.deadline_ms.set(deadline);
        self.services.deadline_ms.set(deadline);
        let parts = CheckoutParts {
            ledger: self.ledger,
            store: &self.store,
            clock: self.clock,
            validator: &self.validator,
            services: &self.services,
            prices: &self.prices,
            validation: &self.validation,
            fulfilment: &self.fulfilment,
            publisher: &self.publisher,
        };
        let worker = format!("sync-{id}");
        block_on(parts.run(&order.id, &worker, deadline)).unwrap()
    }

    /// The fulfilment worker, as the sweeper runs it.
    fn drain(&self) -> FulfilmentReport {
        self.services.deadline_ms.set(u64::MAX);
        let worker = FulfilmentWorker::new(
            FulfilmentParts {
                ledger: self.ledger,
                store: &self.store,
                clock: self.clock,
                services: &self.services,
                prices: &self.prices,
                publisher: &self.publisher,
                settings: &self.fulfilment,
            },
            SplitMix64::new(1),
            "fulfilment".into(),
        );
        block_on(worker.drain()).unwrap()
    }

    fn status(&self, id: &str) -> (OrderStatus, Option<String>) {
        let order = self
            .ledger
            .order(&OrderId::parse(id).unwrap())
            .unwrap()
            .unwrap()
            .order;
        (order.status, order.reason)
    }

    fn events(&self, id: &str) -> Vec<EventKind> {
        let events = self.ledger.events(&OrderId::parse(id).unwrap()).unwrap();
        events.into_iter().map(|event| event.kind).collect()
    }
}

fn setup() -> (tempfile::TempDir, Ledger<RusqliteSql>, ManualClock) {
    let directory = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(RusqliteSql::open(directory.path().join("l.db")).unwrap());
    (directory, ledger, ManualClock::new(START_MS))
}

#[test]
fn a_paid_order_is_handed_to_the_fulfilment_worker() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    assert_eq!(harness.order("o-1", 2), Checkout::Paid);
    assert_eq!(harness.status("o-1").0, OrderStatus::Paid);
    assert_eq!(harness.services.stock(), 8);
    assert_eq!(harness.services.payments.borrow()["o-1"], "authorized");
    assert_eq!(
        harness.events("o-1"),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::Validated,
            EventKind::StepDone,
            EventKind::StepDone,
        ]
    );
    // The job is free for the worker at once: it ships, captures and commits.
    let report = harness.drain();
    assert_eq!((report.claimed, report.confirmed), (1, 1));
    assert_eq!(harness.status("o-1").0, OrderStatus::Confirmed);
    assert_eq!(harness.services.payments.borrow()["o-1"], "captured");
    assert_eq!(harness.services.stock(), 8);
}

#[test]
fn out_of_stock_is_refused_and_nothing_stays_reserved() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    let refused = harness.order("big", 11);
    assert!(
        matches!(&refused, Checkout::Refused { step: Step::Reserve, detail } if detail.contains("1 available")),
        "{refused:?}"
    );
    assert_eq!(
        harness.status("big"),
        (OrderStatus::Cancelled, Some("reserve_refused".into()))
    );
    assert_eq!(harness.services.stock(), 10);
    assert_eq!(harness.drain().claimed, 0);
}

#[test]
fn a_declined_payment_releases_the_reservation_before_answering() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    let refused = harness.order("dear", 3);
    assert!(
        matches!(
            refused,
            Checkout::Refused {
                step: Step::Authorize,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(harness.services.stock(), 10);
    assert_eq!(
        harness.status("dear"),
        (OrderStatus::Cancelled, Some("authorize_refused".into()))
    );
    // The order ended here: the notification service is woken.
    assert_eq!(
        *harness.publisher.rang_on.borrow(),
        [pipeline::EVENTS_CHANNEL]
    );
}

#[test]
fn a_rejected_order_is_rejected_with_the_validator_s_reason() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    harness.validator.verdict.set(Some(200));
    let rejected = harness.order("odd", 1);
    assert_eq!(
        rejected,
        Checkout::Rejected {
            status: OrderStatus::Rejected,
            reason: Some("unknown_product".into()),
            detail: Some("no such product".into()),
        }
    );
    assert_eq!(harness.services.stock(), 10);
}

#[test]
fn a_failing_validator_cancels_the_order() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    harness.validator.verdict.set(Some(503));
    let answer = harness.order("v-down", 1);
    assert!(matches!(answer, Checkout::Unavailable { .. }), "{answer:?}");
    assert_eq!(
        harness.status("v-down"),
        (OrderStatus::Cancelled, Some(DEPENDENCY_FAILED.into()))
    );
    // No validation job is left for the workers.
    assert_eq!(
        ledger
            .claim(
                VALIDATION_JOB,
                "v",
                Timestamp(clock.now_ms()),
                Timestamp(u64::MAX / 2),
                10
            )
            .unwrap(),
        []
    );
}

#[test]
fn a_failing_inventory_is_unavailable_and_the_worker_finishes_the_undoing() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    harness.services.inventory.set(Inventory::Error);
    let answer = harness.order("i-down", 1);
    assert!(
        matches!(&answer, Checkout::Unavailable { detail } if detail.contains("HTTP 500")),
        "{answer:?}"
    );
    assert_eq!(harness.services.stock(), 10);
    // The release failed too: the worker does it once the inventory is back.
    assert_eq!(harness.status("i-down").0, OrderStatus::Cancelling);
    harness.services.inventory.set(Inventory::Up);
    clock.advance(60_000);
    harness.drain();
    assert_eq!(
        harness.status("i-down"),
        (OrderStatus::Cancelled, Some("reserve_unavailable".into()))
    );
    assert_eq!(harness.services.stock(), 10);
}

#[test]
fn a_slow_inventory_times_out_and_the_late_reservation_is_released() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    harness.services.inventory.set(Inventory::Slow(3_000));
    let started = clock.now_ms();
    let answer = harness.order("slow", 2);
    assert!(matches!(answer, Checkout::TimedOut { .. }), "{answer:?}");
    assert_eq!(
        clock.now_ms() - started,
        DEADLINE_MS,
        "answered at the deadline"
    );
    // The reservation landed after the caller gave up; the worker releases it.
    assert_eq!(harness.services.stock(), 8);
    assert_eq!(harness.status("slow").0, OrderStatus::Cancelling);
    harness.services.inventory.set(Inventory::Up);
    harness.drain();
    assert_eq!(harness.services.stock(), 10);
    assert_eq!(harness.status("slow").0, OrderStatus::Cancelled);
}

#[test]
fn an_order_a_worker_holds_goes_on_asynchronously() {
    let (_dir, ledger, clock) = setup();
    let harness = Harness::new(&ledger, &clock);
    // Paid once; asked again (a replayed request), its jobs are no longer there to take.
    assert_eq!(harness.order("twice", 1), Checkout::Paid);
    let parts = CheckoutParts {
        ledger: &ledger,
        store: &harness.store,
        clock: &clock,
        validator: &harness.validator,
        services: &harness.services,
        prices: &harness.prices,
        validation: &harness.validation,
        fulfilment: &harness.fulfilment,
        publisher: &harness.publisher,
    };
    let id = OrderId::parse("twice").unwrap();
    let again = block_on(parts.run(&id, "sync-again", clock.now_ms() + 1_000)).unwrap();
    assert_eq!(again, Checkout::Continuing);
    assert_eq!(harness.services.stock(), 9);
}
