//! The worker's orchestration, natively: a real SQLite ledger in a temporary file, the
//! in-memory key-value store, a manual clock, a validator that answers from a script and a
//! publisher that records the doorbells it rang. Time only moves when a test (or a scripted
//! call's latency) moves it.

use super::{
    DRAINERS, DoorbellPublisher, DrainReport, FULFILMENT_CHANNEL, HEARTBEAT_KEY, JOBS_CHANNEL,
    ValidationWorker, ValidatorClient, WorkerParts, doorbell_needed,
};
use crate::{
    DEADLINE_PASSED, Doorbell, IntakeResult, IntakeSettings, Totals, VALIDATOR_REFUSED,
    WorkerSettings, accept, read_totals,
};
use futures::FutureExt;
use futures::executor::block_on;
use ledger::{DeadLetterSource, EventKind, JobView, Ledger, OrderView, PipelineStats, RusqliteSql};
use orders_core::{NewOrder, OrderId, OrderStatus, Timestamp};
use resilience::{
    BudgetPolicy, Bulkhead, CallFailure, CircuitBreaker, CircuitState, Clock, ForcedState,
    HttpAnswer, IdempotencyKey, KvStore, ManualClock, MemoryStore, SplitMix64,
};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

/// When every test's clock starts.
const START_MS: u64 = 1_700_000_000_000;

/// What the fake validator does with one call.
enum Reply {
    /// Answers with this status and body.
    Answer { status: u16, body: &'static str },
    /// No answer: the call failed.
    Fail(CallFailure),
    /// Never answers (the worker dies waiting).
    Hang,
}

fn valid() -> Reply {
    Reply::Answer {
        status: 200,
        body: r#"{"verdict": "valid"}"#,
    }
}

fn status(status: u16) -> Reply {
    Reply::Answer {
        status,
        body: r#"{"error": "no"}"#,
    }
}

fn unreadable() -> Reply {
    Reply::Answer {
        status: 200,
        body: "<html>maintenance</html>",
    }
}

/// The external validator, answering each call with the next scripted reply after its
/// latency (moved on the manual clock). A call beyond the script fails the test.
struct FakeValidator {
    clock: Rc<ManualClock>,
    script: RefCell<VecDeque<(Reply, u64)>>,
    /// The order each call was about, in call order.
    called_about: RefCell<Vec<String>>,
    /// Run as the next call is made (while its wave is out).
    during_next_call: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl FakeValidator {
    /// A validator with nothing scripted, its latencies moving `clock`.
    fn new(clock: Rc<ManualClock>) -> Self {
        Self {
            clock,
            script: RefCell::default(),
            called_about: RefCell::default(),
            during_next_call: RefCell::default(),
        }
    }

    /// Scripts the next call's reply, answered at once.
    fn then(&self, reply: Reply) {
        self.then_after(0, reply);
    }

    /// Scripts the next call's reply, answered `latency_ms` after the call.
    fn then_after(&self, latency_ms: u64, reply: Reply) {
        self.script.borrow_mut().push_back((reply, latency_ms));
    }

    /// Scripts `count` calls answered `valid`.
    fn then_valid(&self, count: usize) {
        for _ in 0..count {
            self.then(valid());
        }
    }

    /// Runs `action` as the next call is made.
    fn during_next_call(&self, action: impl FnOnce() + 'static) {
        *self.during_next_call.borrow_mut() = Some(Box::new(action));
    }

    /// How many calls were made.
    fn calls(&self) -> usize {
        self.called_about.borrow().len()
    }

    /// The orders called about, in call order.
    fn called_about(&self) -> Vec<String> {
        self.called_about.borrow().clone()
    }
}

impl ValidatorClient for FakeValidator {
    fn validate(&self, body: Vec<u8>) -> impl Future<Output = Result<HttpAnswer, CallFailure>> {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let order_id = request["order_id"].as_str().unwrap().to_owned();
        let next = self.script.borrow_mut().pop_front();
        let Some((reply, latency_ms)) = next else {
            panic!("unexpected call about order {order_id}: the script is used up");
        };
        self.called_about.borrow_mut().push(order_id);
        let action = self.during_next_call.borrow_mut().take();
        if let Some(action) = action {
            action();
        }
        let clock = Rc::clone(&self.clock);
        async move {
            clock.advance(latency_ms);
            match reply {
                Reply::Answer { status, body } => Ok(HttpAnswer {
                    status,
                    retry_after: None,
                    body: body.as_bytes().to_vec(),
                }),
                Reply::Fail(failure) => Err(failure),
                Reply::Hang => std::future::pending().await,
            }
        }
    }
}

/// Records the doorbells rung, and on which channel.
#[derive(Default)]
struct FakePublisher {
    rang_on: RefCell<Vec<(String, Doorbell)>>,
}

impl FakePublisher {
    /// The doorbells rung on `channel`.
    fn rang(&self, channel: &str) -> Vec<Doorbell> {
        self.rang_on
            .borrow()
            .iter()
            .filter(|(on, _)| on == channel)
            .map(|(_, doorbell)| doorbell.clone())
            .collect()
    }
}

impl DoorbellPublisher for FakePublisher {
    fn ring(&self, channel: &str, doorbell: &Doorbell) -> Result<(), String> {
        self.rang_on
            .borrow_mut()
            .push((channel.to_owned(), doorbell.clone()));
        Ok(())
    }
}

/// A worker as the tests build it.
type TestWorker<'a> = ValidationWorker<
    'a,
    RusqliteSql,
    MemoryStore,
    ManualClock,
    FakeValidator,
    FakePublisher,
    SplitMix64,
>;

/// Everything a worker runs on, shared by the workers a test starts one after the other.
struct Harness {
    ledger: Ledger<RusqliteSql>,
    path: PathBuf,
    store: Rc<MemoryStore>,
    clock: Rc<ManualClock>,
    validator: FakeValidator,
    publisher: FakePublisher,
    settings: WorkerSettings,
    intake: IntakeSettings,
    workers_started: Cell<u64>,
    /// Last, so that the database closes before its directory goes.
    _directory: tempfile::TempDir,
}

impl Harness {
    /// The default settings, but waves of 4 jobs and 2 drainer slots.
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// The settings of [`Harness::new`], changed by `adjust`.
    fn with(adjust: impl FnOnce(&mut WorkerSettings)) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        let clock = Rc::new(ManualClock::new(START_MS));
        let mut settings = WorkerSettings::read(|_| None).unwrap();
        settings.wave_size = 4;
        settings.drainers.slots = 2;
        adjust(&mut settings);
        Self {
            ledger: Ledger::new(RusqliteSql::open(&path).unwrap()),
            path,
            store: Rc::new(MemoryStore::new()),
            validator: FakeValidator::new(Rc::clone(&clock)),
            clock,
            publisher: FakePublisher::default(),
            settings,
            intake: IntakeSettings::read(|_| None).unwrap(),
            workers_started: Cell::new(0),
            _directory: directory,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now_ms())
    }

    fn advance(&self, ms: u64) {
        self.clock.advance(ms);
    }

    /// Accepts order `id` through intake, with the default validation deadline.
    fn order(&self, id: &str) -> OrderId {
        self.order_due_within(id, self.intake.deadline_ms)
    }

    /// Accepts order `id` through intake, to be validated within `deadline_ms`.
    fn order_due_within(&self, id: &str, deadline_ms: u64) -> OrderId {
        let body = format!(r#"{{"order_id": "{id}", "product": "Medicine A", "quantity": 2}}"#);
        let settings = IntakeSettings {
            deadline_ms,
            ..self.intake
        };
        let result = accept(
            &self.ledger,
            &IdempotencyKey::parse(&format!("key-{id}")).unwrap(),
            NewOrder::parse(body.as_bytes()).unwrap(),
            self.now(),
            [0; 10],
            &settings,
            None,
            |order| order.id.to_string(),
        )
        .unwrap();
        let IntakeResult::Created { order, .. } = result else {
            panic!("order {id} was not created: {result:?}");
        };
        order.id
    }

    /// A new worker (each has its own id, as each invocation does).
    fn worker(&self) -> TestWorker<'_> {
        let number = self.workers_started.get() + 1;
        self.workers_started.set(number);
        let parts = WorkerParts {
            ledger: &self.ledger,
            store: &*self.store,
            clock: &*self.clock,
            validator: &self.validator,
            publisher: &self.publisher,
            settings: &self.settings,
        };
        ValidationWorker::new(parts, SplitMix64::new(number), format!("w-{number}"))
    }

    /// A new worker handles `message` from the jobs channel.
    fn message(&self, message: &[u8]) -> DrainReport {
        block_on(self.worker().on_message(JOBS_CHANNEL, message)).unwrap()
    }

    /// A new worker handles the doorbell rung for order `id`.
    fn ring(&self, id: &OrderId) -> DrainReport {
        self.message(&Doorbell::for_order(id).to_bytes())
    }

    /// A new worker sweeps.
    fn sweep(&self) -> DrainReport {
        block_on(self.worker().sweep()).unwrap()
    }

    fn view(&self, id: &OrderId) -> OrderView {
        self.ledger.order(id).unwrap().unwrap()
    }

    fn status(&self, id: &OrderId) -> OrderStatus {
        self.view(id).order.status
    }

    fn job(&self, id: &OrderId) -> JobView {
        self.view(id).job.unwrap()
    }

    /// The kinds of order `id`'s events, oldest first.
    fn kinds(&self, id: &OrderId) -> Vec<EventKind> {
        let events = self.ledger.events(id).unwrap();
        events.into_iter().map(|event| event.kind).collect()
    }

    fn stats(&self) -> PipelineStats {
        self.ledger.stats(self.now()).unwrap()
    }

    /// Orders with `status`, from the ledger's counters.
    fn orders_with(&self, status: OrderStatus) -> u64 {
        let stats = self.stats();
        stats.orders.iter().find(|(s, _)| *s == status).unwrap().1
    }

    fn totals(&self) -> Totals {
        read_totals(&*self.store).unwrap()
    }

    /// Calls counted under the outcome `label`.
    fn calls_counted(&self, label: &str) -> u64 {
        let totals = self.totals();
        totals.calls.iter().find(|(l, _)| *l == label).unwrap().1
    }

    fn breaker(&self) -> CircuitBreaker<'_, MemoryStore, ManualClock> {
        CircuitBreaker::new(
            &*self.store,
            &*self.clock,
            super::DEPENDENCY,
            self.settings.breaker.clone(),
        )
    }

    fn circuit(&self) -> CircuitState {
        self.breaker().record_snapshot().unwrap().state
    }

    /// The drainers' bulkhead, as another worker holds it.
    fn drainers(&self) -> Bulkhead<'_, MemoryStore, ManualClock> {
        Bulkhead::new(
            &*self.store,
            &*self.clock,
            DRAINERS,
            self.settings.drainers.clone(),
        )
    }

    /// Runs `statements` on a connection of its own (to break the ledger behind its back).
    fn tamper(&self, statements: &str) {
        let connection: rusqlite::Connection =
            RusqliteSql::open(&self.path).unwrap().into_connection();
        connection.execute_batch(statements).unwrap();
    }
}

/// How long until order `id`'s job is due again (its backoff).
fn until_due(harness: &Harness, id: &OrderId) -> u64 {
    let due = harness.job(id).next_attempt_at.millis();
    assert!(due >= harness.clock.now_ms(), "the job is due in the past");
    due - harness.clock.now_ms()
}

#[test]
fn a_valid_order_is_validated_with_one_call() {
    let harness = Harness::new();
    let order = harness.order("a");
    harness.validator.then_after(40, valid());
    let report = harness.ring(&order);
    assert_eq!(
        (report.waves, report.claimed, report.calls, report.decided),
        (1, 1, 1, 1)
    );
    assert_eq!(harness.status(&order), OrderStatus::Validated);
    assert_eq!(harness.view(&order).job, None);
    let events = harness.ledger.events(&order).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::Validated
        ]
    );
    assert_eq!(events[1].attempt, Some(1));
    assert_eq!(events[1].outcome.as_deref(), Some("valid"));
    assert_eq!(events[1].latency_ms, Some(40));
    assert_eq!(harness.validator.called_about(), ["a"]);
    let totals = harness.totals();
    assert_eq!(harness.calls_counted("valid"), 1);
    assert_eq!(totals.call_latency.count, 1);
    assert_eq!(totals.call_latency.sum_seconds, 0.04);
    assert_eq!(totals.validation_latency.count, 1);
    assert_eq!(totals.retries, 0);
    assert!(harness.publisher.rang(JOBS_CHANNEL).is_empty());
    // The fulfilment workers are woken once for the wave that validated it.
    assert_eq!(
        harness.publisher.rang(FULFILMENT_CHANNEL),
        [Doorbell::backlog()]
    );
    // The same doorbell again (Redis may deliver it twice): nothing is due, nothing called.
    assert_eq!(harness.ring(&order), DrainReport::default());
    assert_eq!(harness.validator.calls(), 1);
}

#[test]
fn a_draining_fulfilment_worker_is_not_woken_again() {
    let harness = Harness::new();
    let order = harness.order("a");
    harness.validator.then(Reply::Answer {
        status: 200,
        body: r#"{"verdict": "valid"}"#,
    });
    // A fulfilment worker holds a drainer slot: it looks for work before it stops.
    let fulfilment = Bulkhead::new(
        &*harness.store,
        &*harness.clock,
        crate::FULFILMENT_DRAINERS,
        resilience::BulkheadPolicy {
            slots: 4,
            lease_ms: 30_000,
        },
    );
    let permit = fulfilment.try_enter().unwrap().unwrap();
    assert_eq!(harness.ring(&order).decided, 1);
    assert!(harness.publisher.rang(FULFILMENT_CHANNEL).is_empty());
    fulfilment.leave(permit).unwrap();
}

#[test]
fn a_rejected_order_carries_the_reason() {
    let harness = Harness::new();
    let order = harness.order("a");
    harness.validator.then(Reply::Answer {
        status: 200,
        body: r#"{"verdict": "rejected", "reason": "unknown_product", "detail": "no such medicine"}"#,
    });
    let report = harness.ring(&order);
    assert_eq!(report.decided, 1);
    let view = harness.view(&order);
    assert_eq!(view.order.status, OrderStatus::Rejected);
    assert_eq!(view.order.reason.as_deref(), Some("unknown_product"));
    assert_eq!(view.order.detail.as_deref(), Some("no such medicine"));
    assert_eq!(
        harness.kinds(&order),
        [EventKind::Accepted, EventKind::Attempt, EventKind::Rejected]
    );
    assert_eq!(harness.calls_counted("rejected"), 1);
    // Nothing to fulfil: the fulfilment workers are left asleep.
    assert!(harness.publisher.rang(FULFILMENT_CHANNEL).is_empty());
    // A rejection means the validator works: the circuit stays closed, the run ends.
    assert_eq!(harness.circuit(), CircuitState::Closed);
}

#[test]
fn a_client_error_fails_the_order_without_a_retry() {
    let harness = Harness::new();
    let order = harness.order("a");
    harness.validator.then(status(400));
    let report = harness.ring(&order);
    assert_eq!((report.calls, report.decided), (1, 1));
    let view = harness.view(&order);
    assert_eq!(view.order.status, OrderStatus::Failed);
    assert_eq!(view.order.reason.as_deref(), Some(VALIDATOR_REFUSED));
    assert_eq!(view.job, None);
    assert_eq!(
        harness.kinds(&order),
        [EventKind::Accepted, EventKind::Attempt, EventKind::Failed]
    );
    assert_eq!(harness.calls_counted("client_error"), 1);
    // Nothing is left to retry, however long one waits (the script has no second answer).
    harness.advance(3_600_000);
    let swept = harness.sweep();
    assert_eq!((swept.claimed, swept.calls), (0, 0));
    assert_eq!(harness.validator.calls(), 1);
}

#[test]
fn a_server_error_schedules_a_retry_with_backoff_and_records_the_error() {
    let harness = Harness::new();
    let order = harness.order("a");
    harness.validator.then_after(5, status(503));
    let report = harness.ring(&order);
    assert_eq!((report.calls, report.decided, report.deferred), (1, 0, 0));
    assert_eq!(harness.status(&order), OrderStatus::Processing);
    let job = harness.job(&order);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(job.leased_until, None);
    // The first retry waits up to `retry_base_ms` (full jitter).
    let wait = until_due(&harness, &order);
    assert!((1..=250).contains(&wait), "{wait}");
    assert_eq!(
        harness.kinds(&order),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::RetryScheduled
        ]
    );
    assert_eq!(harness.calls_counted("server_error"), 1);
    assert_eq!(harness.stats().jobs_deferred, 1);

    // Not due yet: a doorbell finds nothing to do.
    assert_eq!(harness.ring(&order), DrainReport::default());
    harness.advance(wait);
    harness.validator.then(valid());
    let report = harness.ring(&order);
    assert_eq!((report.calls, report.decided), (1, 1));
    assert_eq!(harness.status(&order), OrderStatus::Validated);
    let events = harness.ledger.events(&order).unwrap();
    assert_eq!(events[3].kind, EventKind::Attempt);
    assert_eq!(events[3].attempt, Some(2));
    assert_eq!(events[4].kind, EventKind::Validated);
    let totals = harness.totals();
    assert_eq!(totals.retries, 1);
    assert_eq!(totals.call_latency.count, 2);
    assert_eq!(harness.validator.called_about(), ["a", "a"]);
}

#[test]
fn repeated_failures_open_the_circuit_then_a_probe_closes_it() {
    let harness = Harness::with(|settings| settings.wave_size = 8);
    let orders: Vec<OrderId> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|id| harness.order(id))
        .collect();
    for _ in &orders {
        harness.validator.then(status(503));
    }
    let report = harness.ring(&orders[0]);
    assert_eq!(report.calls, 6);
    let trip = &report.transitions[0];
    assert_eq!(
        (trip.from, trip.to),
        (CircuitState::Closed, CircuitState::Open)
    );
    assert_eq!(harness.circuit(), CircuitState::Open);
    let open_until = harness.breaker().record_snapshot().unwrap().open_until_ms;

    // The retries come due while the circuit is open: one drain defers them all in one step,
    // without a call.
    harness.advance(500);
    let report = harness.ring(&orders[0]);
    assert_eq!(
        (report.waves, report.claimed, report.calls, report.deferred),
        (0, 0, 0, 6)
    );
    assert_eq!(harness.validator.calls(), 6);
    assert_eq!(harness.totals().deferrals, 6);
    for order in &orders {
        assert_eq!(harness.kinds(order).last(), Some(&EventKind::Deferred));
        assert_eq!(harness.job(order).next_attempt_at, Timestamp(open_until));
    }
    let stats = harness.stats();
    assert_eq!((stats.jobs_due, stats.jobs_deferred), (0, 6));

    // After the open time a single job probes; it fails, so the circuit opens again (for
    // longer) and the other jobs are deferred again, still without a call.
    harness.clock.set(open_until);
    harness.validator.then(Reply::Fail(CallFailure::Connect(
        "connection refused".into(),
    )));
    let report = harness.ring(&orders[0]);
    assert_eq!(report.calls, 1);
    assert_eq!(harness.validator.called_about()[6], "a");
    let reopened = &report.transitions[0];
    assert_eq!(
        (reopened.from, reopened.to),
        (CircuitState::HalfOpen, CircuitState::Open)
    );
    assert_eq!(harness.stats().jobs_due, 0);
    let open_until = harness.breaker().record_snapshot().unwrap().open_until_ms;
    assert_eq!(open_until, harness.clock.now_ms() + 2_000);

    // The next probe succeeds: the circuit closes and the same drain validates the rest.
    harness.clock.set(open_until);
    harness.validator.then_valid(6);
    let report = harness.ring(&orders[0]);
    assert_eq!((report.calls, report.decided), (6, 6));
    let closed = &report.transitions[0];
    assert_eq!(
        (closed.from, closed.to),
        (CircuitState::HalfOpen, CircuitState::Closed)
    );
    assert_eq!(harness.circuit(), CircuitState::Closed);
    assert_eq!(harness.orders_with(OrderStatus::Validated), 6);
    assert_eq!(harness.validator.calls(), 13);
    assert_eq!(harness.calls_counted("server_error"), 6);
    assert_eq!(harness.calls_counted("connect_error"), 1);
    assert_eq!(harness.calls_counted("valid"), 6);
}

#[test]
fn a_probe_is_not_spent_on_a_job_that_needs_no_call() {
    let harness = Harness::new();
    // The oldest order's deadline passes while the circuit is open.
    let late = harness.order_due_within("a", 800);
    let others: Vec<OrderId> = ["b", "c", "d", "e"]
        .iter()
        .map(|id| harness.order(id))
        .collect();
    for _ in 0..5 {
        harness.validator.then(status(503));
    }
    let report = harness.ring(&late);
    assert_eq!(report.calls, 5);
    assert_eq!(harness.circuit(), CircuitState::Open);
    harness.advance(300);
    assert_eq!(harness.ring(&late).deferred, 5);
    let open_until = harness.breaker().record_snapshot().unwrap().open_until_ms;

    // The first job claimed at probe time needs no call (its deadline passed): it is
    // settled, and the probe is made with a job that does.
    harness.clock.set(open_until);
    harness.validator.then_valid(4);
    let report = harness.ring(&late);
    assert_eq!((report.calls, report.decided), (4, 5));
    let view = harness.view(&late);
    assert_eq!(view.order.status, OrderStatus::Failed);
    assert_eq!(view.order.reason.as_deref(), Some(DEADLINE_PASSED));
    assert_eq!(harness.validator.called_about()[5..], ["b", "c", "d", "e"]);
    assert_eq!(harness.circuit(), CircuitState::Closed);
    for order in &others {
        assert_eq!(harness.status(order), OrderStatus::Validated);
    }
}

#[test]
fn the_retry_budget_holds_back_retries_beyond_it() {
    let harness = Harness::with(|settings| {
        settings.budget = BudgetPolicy {
            ratio: 0.5,
            min_per_sec: 0.0,
            window_ms: 10_000,
        };
    });
    let orders: Vec<OrderId> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| harness.order(id))
        .collect();
    for _ in &orders {
        harness.validator.then(status(503));
    }
    assert_eq!(harness.ring(&orders[0]).calls, 4);
    // Every retry is due; 4 calls in the window allow 2 retries.
    harness.advance(1_000);
    harness.validator.then_valid(2);
    let report = harness.ring(&orders[0]);
    assert_eq!(
        (
            report.claimed,
            report.calls,
            report.deferred,
            report.decided
        ),
        (4, 2, 2, 2)
    );
    // The two called were validated; the other two were held back without a call.
    let called = harness.validator.called_about()[4..].to_vec();
    for order in &orders {
        if called.contains(&order.to_string()) {
            assert_eq!(harness.status(order), OrderStatus::Validated);
            continue;
        }
        assert_eq!(
            harness.kinds(order).last(),
            Some(&EventKind::BudgetExhausted)
        );
        let job = harness.job(order);
        assert_eq!(job.attempts, 1);
        assert_eq!(
            job.next_attempt_at,
            Timestamp(harness.clock.now_ms() + harness.settings.budget_wait_ms)
        );
    }
    let totals = harness.totals();
    assert_eq!((totals.budget_rejections, totals.retries), (2, 2));
}

#[test]
fn unreadable_answers_are_retried_then_dead_lettered_at_the_poison_limit() {
    let harness = Harness::new();
    assert_eq!(harness.settings.job.poison_limit, 3);
    let order = harness.order("a");
    for attempt in 1..=3 {
        harness.validator.then(unreadable());
        let report = harness.sweep();
        assert_eq!(report.calls, 1, "attempt {attempt}");
        if attempt < 3 {
            assert_eq!(report.dead_lettered, 0);
            let wait = until_due(&harness, &order);
            harness.advance(wait);
        } else {
            assert_eq!(report.dead_lettered, 1);
        }
    }
    assert_eq!(
        harness.kinds(&order),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::Attempt,
            EventKind::DeadLettered,
        ]
    );
    let view = harness.view(&order);
    assert_eq!(view.order.status, OrderStatus::Processing);
    assert!(view.job.unwrap().dead_lettered);
    let letters = harness.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, DeadLetterSource::Job);
    assert_eq!(letters[0].order_id.as_deref(), Some("a"));
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].reason.contains("unreadable 3 times"),
        "{}",
        letters[0].reason
    );
    let totals = harness.totals();
    assert_eq!(harness.calls_counted("unreadable"), 3);
    assert_eq!((totals.dead_letters, totals.retries), (1, 2));
    assert_eq!(harness.stats().dead_letters, 1);
    // A dead letter is not retried.
    harness.advance(3_600_000);
    assert_eq!(harness.sweep().calls, 0);
}

#[test]
fn a_burst_of_poison_leaves_the_circuit_closed_for_the_good_orders() {
    let harness = Harness::with(|settings| settings.wave_size = 8);
    // Six unreadable answers in a row: poison about six orders, not a failing validator.
    let poisoned: Vec<OrderId> = ["p1", "p2", "p3", "p4", "p5", "p6"]
        .iter()
        .map(|id| harness.order(id))
        .collect();
    for _ in &poisoned {
        harness.validator.then(unreadable());
    }
    let report = harness.ring(&poisoned[0]);
    assert_eq!(report.calls, 6);
    assert!(report.transitions.is_empty(), "{:?}", report.transitions);
    assert_eq!(harness.circuit(), CircuitState::Closed);
    // A good order right behind them is validated at once.
    let good = harness.order("good");
    harness.validator.then(valid());
    assert_eq!(harness.ring(&good).decided, 1);
    assert_eq!(harness.status(&good), OrderStatus::Validated);
}

#[test]
fn a_job_whose_order_is_missing_is_dead_lettered_without_a_call() {
    let harness = Harness::new();
    harness.order("gone");
    let kept = harness.order("kept");
    harness.tamper("DELETE FROM orders WHERE id = 'gone'");
    harness.validator.then(valid());
    let report = harness.sweep();
    assert_eq!(
        (
            report.claimed,
            report.calls,
            report.dead_lettered,
            report.decided
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(harness.validator.called_about(), ["kept"]);
    assert_eq!(harness.status(&kept), OrderStatus::Validated);
    let letters = harness.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, DeadLetterSource::Job);
    assert_eq!(letters[0].order_id.as_deref(), Some("gone"));
    assert_eq!(letters[0].reason, "order gone does not exist");
    assert_eq!(harness.totals().dead_letters, 1);
}

#[test]
fn malformed_messages_and_doorbells_about_unknown_orders_are_dead_lettered() {
    let harness = Harness::new();
    let waiting = harness.order("a");
    let report = harness.message(b"wake up!");
    assert_eq!(
        report,
        DrainReport {
            dead_lettered: 1,
            ..DrainReport::default()
        }
    );
    let ghost = OrderId::parse("ghost").unwrap();
    assert_eq!(harness.ring(&ghost).dead_lettered, 1);
    // Neither drained: the order waits for a doorbell of its own (or the sweep).
    assert_eq!(harness.validator.calls(), 0);
    assert_eq!(harness.status(&waiting), OrderStatus::Processing);
    let letters = harness.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 2);
    // Newest first.
    let (unknown, malformed) = (&letters[0], &letters[1]);
    for letter in [unknown, malformed] {
        assert_eq!(letter.source, DeadLetterSource::Message);
        assert_eq!(letter.channel.as_deref(), Some(JOBS_CHANNEL));
        assert_eq!(letter.job_id, None);
    }
    assert_eq!(malformed.payload.as_deref(), Some(&b"wake up!"[..]));
    assert!(
        malformed.reason.starts_with("malformed doorbell: not JSON"),
        "{}",
        malformed.reason
    );
    assert_eq!(
        unknown.payload,
        Some(Doorbell::for_order(&ghost).to_bytes())
    );
    assert_eq!(
        unknown.reason,
        "doorbell for order ghost, which does not exist"
    );
    assert_eq!(harness.totals().dead_letters, 2);
}

#[test]
fn the_sweep_fails_a_job_whose_deadline_passed_without_a_call() {
    let harness = Harness::new();
    let order = harness.order_due_within("a", 5_000);
    harness.validator.then(status(503));
    assert_eq!(harness.ring(&order).calls, 1);
    harness.advance(10_000);
    let report = harness.sweep();
    assert_eq!((report.claimed, report.calls, report.decided), (1, 0, 1));
    let view = harness.view(&order);
    assert_eq!(view.order.status, OrderStatus::Failed);
    assert_eq!(view.order.reason.as_deref(), Some(DEADLINE_PASSED));
    assert_eq!(view.job, None);
    assert_eq!(harness.kinds(&order).last(), Some(&EventKind::Failed));
    assert_eq!(harness.validator.calls(), 1);
    // The order's wait counts in the acceptance-to-decision histogram.
    let totals = harness.totals();
    assert_eq!(totals.validation_latency.count, 1);
    assert_eq!(totals.validation_latency.sum_seconds, 10.0);
    // The sweep left its heartbeat.
    let heartbeat: serde_json::Value =
        serde_json::from_slice(&harness.store.get(HEARTBEAT_KEY).unwrap().unwrap()).unwrap();
    assert_eq!(heartbeat["at_ms"], harness.clock.now_ms());
    assert_eq!(heartbeat["decided"], 1);
}

#[test]
fn with_every_drainer_slot_taken_a_doorbell_leaves_the_work_to_the_holders() {
    let harness = Harness::new();
    let drainers = harness.drainers();
    let held: Vec<_> = (0..harness.settings.drainers.slots)
        .map(|_| drainers.try_enter().unwrap().unwrap())
        .collect();
    let order = harness.order("a");
    assert!(!doorbell_needed(&*harness.store, &*harness.clock, &harness.settings.breaker).unwrap());
    assert_eq!(harness.ring(&order), DrainReport::default());
    assert_eq!(harness.validator.calls(), 0);
    let stats = harness.stats();
    assert_eq!((stats.jobs_due, stats.jobs_leased), (1, 0));

    // One holder leaves: the next doorbell drains.
    let mut held = held.into_iter();
    drainers.leave(held.next().unwrap()).unwrap();
    harness.validator.then(valid());
    let report = harness.ring(&order);
    assert_eq!((report.calls, report.decided), (1, 1));
    assert_eq!(harness.status(&order), OrderStatus::Validated);
    // The worker gave its slot back: only the remaining holder's is live.
    assert_eq!(drainers.occupied().unwrap(), 1);
}

#[test]
fn a_doorbell_is_needed_only_when_nobody_drains_and_the_circuit_lets_calls_through() {
    let harness = Harness::new();
    let policy = harness.settings.breaker.clone();
    let needed = || doorbell_needed(&*harness.store, &*harness.clock, &policy).unwrap();
    assert!(needed());
    let circuit = harness.breaker();
    circuit.force(ForcedState::Open).unwrap();
    assert!(!needed(), "an open circuit: the sweep defers and probes");
    circuit.force(ForcedState::Closed).unwrap();
    assert!(needed());
    let drainers = harness.drainers();
    let permit = drainers.try_enter().unwrap().unwrap();
    assert!(!needed(), "a drainer will find the order");
    drainers.leave(permit).unwrap();
    assert!(needed());
}

#[test]
fn a_full_wave_rings_one_backlog_doorbell() {
    let harness = Harness::with(|settings| settings.wave_size = 2);
    let orders: Vec<OrderId> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| harness.order(id))
        .collect();
    harness.validator.then_valid(5);
    let report = harness.ring(&orders[0]);
    assert_eq!(
        (report.waves, report.claimed, report.calls, report.decided),
        (3, 5, 5, 5)
    );
    assert_eq!(harness.publisher.rang(JOBS_CHANNEL), [Doorbell::backlog()]);
    assert_eq!(harness.orders_with(OrderStatus::Validated), 5);
    assert_eq!(harness.totals().validation_latency.count, 5);
}

#[test]
fn a_job_claimed_by_a_worker_that_died_is_taken_over_after_its_lease() {
    let harness = Harness::new();
    let order = harness.order("a");
    harness.validator.then(Reply::Hang);
    // The first worker claims the job and dies waiting for the validator.
    let mut dead = harness.worker();
    let doorbell = Doorbell::for_order(&order).to_bytes();
    assert!(
        dead.on_message(JOBS_CHANNEL, &doorbell)
            .now_or_never()
            .is_none()
    );
    drop(dead);
    let job = harness.job(&order);
    assert_eq!(
        job.leased_until,
        Some(Timestamp(
            harness.clock.now_ms() + harness.settings.lease_ms
        ))
    );
    // Its lease holds the job meanwhile.
    assert_eq!(harness.ring(&order), DrainReport::default());

    harness.advance(harness.settings.lease_ms);
    harness.validator.then(valid());
    let report = harness.ring(&order);
    assert_eq!((report.claimed, report.calls, report.decided), (1, 1, 1));
    assert_eq!(harness.status(&order), OrderStatus::Validated);
    let events = harness.ledger.events(&order).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Accepted,
            EventKind::LeaseExpired,
            EventKind::Attempt,
            EventKind::Validated
        ]
    );
    assert!(
        events[1]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("w-1"),
        "{:?}",
        events[1]
    );
    // The dead worker's call never counted: this was the first attempt.
    assert_eq!(events[2].attempt, Some(1));
    assert_eq!(harness.validator.called_about(), ["a", "a"]);
}

#[test]
fn a_dead_lettered_order_stays_processing_until_its_deadline_then_fails() {
    let harness = Harness::new();
    let order = harness.order_due_within("a", 60_000);
    for _ in 0..3 {
        harness.validator.then(unreadable());
        assert_eq!(harness.sweep().calls, 1);
        harness.advance(until_due(&harness, &order));
    }
    assert!(harness.job(&order).dead_lettered);
    // Before its deadline: processing, visibly dead-lettered, waiting for an operator.
    harness.advance(10_000);
    assert_eq!(harness.sweep(), DrainReport::default());
    assert_eq!(harness.status(&order), OrderStatus::Processing);

    // At its deadline the sweep fails it, saying why.
    let deadline = harness.job(&order).deadline_at;
    harness.clock.set(deadline.millis());
    let report = harness.sweep();
    assert_eq!((report.claimed, report.calls, report.decided), (1, 0, 1));
    let view = harness.view(&order);
    assert_eq!(view.order.status, OrderStatus::Failed);
    assert_eq!(view.order.reason.as_deref(), Some(DEADLINE_PASSED));
    let detail = view.order.detail.unwrap();
    assert!(
        detail.contains("dead-lettered after 3 attempt(s)")
            && detail.contains("unreadable 3 times"),
        "{detail}"
    );
    assert_eq!(view.job, None);
    assert_eq!(harness.kinds(&order).last(), Some(&EventKind::Failed));
    assert_eq!(harness.validator.calls(), 3);
    // Its dead letter can no longer requeue anything.
    let letter = harness.ledger.dead_letters(false, 10).unwrap().remove(0);
    assert_eq!(
        harness.ledger.replay(letter.id, harness.now()).unwrap(),
        ledger::ReplayOutcome::OrderSettled {
            order_id: "a".into()
        }
    );
}

#[test]
fn a_sweep_drains_even_when_dead_workers_hold_every_drainer_slot() {
    let harness = Harness::new();
    // Every slot taken by workers that were then killed: their leases outlive them.
    let drainers = harness.drainers();
    for _ in 0..harness.settings.drainers.slots {
        let _forgotten = drainers.try_enter().unwrap().unwrap();
    }
    let order = harness.order("a");
    // The order rings no doorbell (slots look taken), and a doorbell would drain nothing.
    assert!(!doorbell_needed(&*harness.store, &*harness.clock, &harness.settings.breaker).unwrap());
    assert_eq!(harness.ring(&order), DrainReport::default());
    // The sweep drains it anyway, well before the dead workers' leases expire.
    harness.advance(1_000);
    harness.validator.then(valid());
    let report = harness.sweep();
    assert_eq!((report.claimed, report.calls, report.decided), (1, 1, 1));
    assert_eq!(harness.status(&order), OrderStatus::Validated);
    // It took no slot, and freed none.
    assert_eq!(
        drainers.occupied().unwrap(),
        harness.settings.drainers.slots
    );
    // Doorbell-woken workers still respect the bulkhead.
    let next = harness.order("b");
    assert_eq!(harness.ring(&next), DrainReport::default());
    assert_eq!(harness.status(&next), OrderStatus::Processing);
}

#[test]
fn housekeeping_prunes_every_expired_key_however_many_there_are() {
    let harness = Harness::new();
    let keys_left = || -> i64 {
        RusqliteSql::open(&harness.path)
            .unwrap()
            .into_connection()
            .query_row(
                "SELECT count(*) FROM orders WHERE idempotency_key IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .unwrap()
    };
    // A day of intake at a sustained 10,600 orders a minute, decided long ago.
    harness.stats();
    harness.tamper(&format!(
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10600)
        INSERT INTO orders (id, items, status, created_at, updated_at, idempotency_key,
            key_fingerprint, key_completed, key_locked_until)
        SELECT 'old-' || i, '[]', 'validated', {START_MS}, {START_MS}, 'key-old-' || i, 'f', 1,
            {START_MS}
        FROM n"
    ));
    assert_eq!(keys_left(), 10_600);
    harness.advance(harness.settings.key_ttl_ms + 1);
    // One pass clears up to 20 chunks of 500 ...
    harness.sweep();
    assert_eq!(keys_left(), 600);
    // ... and, with keys left, the next sweep goes on at once instead of a minute later.
    harness.advance(1_000);
    harness.sweep();
    assert_eq!(keys_left(), 0);
    // Done: the next pass waits its minute.
    let pass_at = harness.store.get(super::HOUSEKEEPING_KEY).unwrap().unwrap();
    harness.advance(1_000);
    harness.sweep();
    assert_eq!(
        harness.store.get(super::HOUSEKEEPING_KEY).unwrap().unwrap(),
        pass_at
    );
}

#[test]
fn an_order_arriving_while_a_drainer_holds_the_only_slot_is_drained_by_it_after_it_leaves() {
    let harness = Harness::with(|settings| settings.drainers.slots = 1);
    let first = harness.order("a");
    let rang_late = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // During the drainer's last call: its wave's results are written, the drainer renews its
    // slot (the wave found work), looks once more (nothing: its drain ends) and gives the slot
    // back. Just before it does (its last compare-and-swap), order b is committed and its
    // doorbell, rung at once, finds the only slot taken and returns.
    let (store, path, settings, intake) = (
        Rc::clone(&harness.store),
        harness.path.clone(),
        harness.settings.clone(),
        harness.intake,
    );
    let now = harness.clock.now_ms();
    let rang = std::sync::Arc::clone(&rang_late);
    harness.validator.during_next_call(move || {
        store.before_next_compare_and_swap(|_| {}); // the renewal
        store.before_next_compare_and_swap(move |store| {
            let ledger = Ledger::new(RusqliteSql::open(&path).unwrap());
            let clock = Rc::new(ManualClock::new(now));
            let body = r#"{"order_id": "b", "product": "Medicine A", "quantity": 2}"#;
            let created = accept(
                &ledger,
                &IdempotencyKey::parse("key-b").unwrap(),
                NewOrder::parse(body.as_bytes()).unwrap(),
                Timestamp(now),
                [0; 10],
                &intake,
                None,
                |order| order.id.to_string(),
            )
            .unwrap();
            let IntakeResult::Created { order, .. } = created else {
                panic!("b was not created: {created:?}");
            };
            assert!(!doorbell_needed(store, &*clock, &settings.breaker).unwrap());
            let (validator, publisher) = (
                FakeValidator::new(Rc::clone(&clock)),
                FakePublisher::default(),
            );
            let parts = WorkerParts {
                ledger: &ledger,
                store,
                clock: &*clock,
                validator: &validator,
                publisher: &publisher,
                settings: &settings,
            };
            let mut late = ValidationWorker::new(parts, SplitMix64::new(99), "w-late".into());
            let doorbell = Doorbell::for_order(&order.id).to_bytes();
            let report = late.on_message(JOBS_CHANNEL, &doorbell).now_or_never();
            assert_eq!(report.unwrap().unwrap(), DrainReport::default());
            assert_eq!(validator.calls(), 0);
            rang.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    });
    harness.validator.then_valid(2);
    let report = harness.ring(&first);
    assert!(rang_late.load(std::sync::atomic::Ordering::SeqCst));
    // The same invocation drained b after giving its slot back: no sweep, no other doorbell.
    assert_eq!((report.waves, report.calls, report.decided), (2, 2, 2));
    assert_eq!(harness.validator.called_about(), ["a", "b"]);
    let b = OrderId::parse("b").unwrap();
    assert_eq!(harness.status(&b), OrderStatus::Validated);
    assert_eq!(harness.drainers().occupied().unwrap(), 0);
    assert!(harness.publisher.rang(JOBS_CHANNEL).is_empty());
}
