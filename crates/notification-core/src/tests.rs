//! Against a real SQLite file through [`RusqliteSql`] (as the Spin host's `spin:sqlite`
//! behaves), with orders made final through the ledger's own operations.

use super::*;
use ledger::{
    EventKind, FULFILMENT_JOB, Intake, JobResult, NextStep, RusqliteSql, SagaProgress,
    VALIDATION_JOB,
};
use orders_core::NewOrder;

struct Fixture {
    _directory: tempfile::TempDir,
    sql: RusqliteSql,
}

impl Fixture {
    fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let sql = RusqliteSql::open(directory.path().join("default.db")).unwrap();
        Self {
            _directory: directory,
            sql,
        }
    }

    fn ledger(&self) -> Ledger<&RusqliteSql> {
        Ledger::new(&self.sql)
    }

    fn notifier(&self) -> Notifier<'_, RusqliteSql> {
        Notifier::new(&self.sql)
    }

    /// Accepts order `id` (two lines, for customer Ada) at `at` ms.
    fn accept(&self, id: &str, at: u64) {
        let order = NewOrder::parse(
            format!(
                r#"{{"order_id": "{id}", "customer": "Ada", "items": [
                    {{"product": "Medicine A", "quantity": 3}},
                    {{"product": "Vaccine X", "quantity": 1}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .accept(Timestamp(at), [0; 10]);
        let intake = Intake {
            order: &order,
            key: id,
            fingerprint: "fingerprint",
            locked_until: Timestamp(at + 10_000),
            deadline_at: Timestamp(at + 60_000),
            hold: None,
        };
        self.ledger().accept(&intake).unwrap();
    }

    /// Order `id`, accepted at `at`, cancelled by its customer at once.
    fn cancel(&self, id: &str, at: u64) {
        self.accept(id, at);
        let id = OrderId::parse(id).unwrap();
        self.ledger()
            .request_cancel(&id, Timestamp(at + 1), "changed my mind")
            .unwrap();
    }

    /// Order `id`, accepted at `at`, validated and then fulfilled (confirmed at `at + 2`).
    fn confirm(&self, id: &str, at: u64) {
        self.accept(id, at);
        let ledger = self.ledger();
        let lease = Timestamp(at + 30_000);
        let job = ledger
            .claim(VALIDATION_JOB, "v", Timestamp(at), lease, 1)
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
        ledger.apply("v", Timestamp(at + 1), &[decision]).unwrap();
        let saga = ledger
            .claim(FULFILMENT_JOB, "f", Timestamp(at + 1), lease, 1)
            .unwrap()
            .remove(0);
        let progress = SagaProgress {
            job_id: saga.job_id,
            order_id: &saga.order_id,
            state: r#"{"phase":"confirmed"}"#,
            status: OrderStatus::Confirmed,
            reason: None,
            detail: None,
            event: EventKind::Confirmed,
            event_outcome: Some("commit"),
            event_detail: None,
            step_done: true,
            finished: true,
        };
        ledger
            .record_saga_progress("f", Timestamp(at + 2), &progress)
            .unwrap();
    }

    fn count(&self) -> i64 {
        match self
            .sql
            .execute("SELECT count(*) FROM notifications", &[])
            .unwrap()
            .rows[0][0]
        {
            SqlValue::Integer(count) => count,
            ref other => panic!("not a count: {other:?}"),
        }
    }
}

fn id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap()
}

fn ids(page: &NotificationPage) -> Vec<&str> {
    page.notifications
        .iter()
        .map(|notification| notification.order_id.as_str())
        .collect()
}

#[test]
fn every_confirmed_or_cancelled_order_gets_one_notification() {
    let fixture = Fixture::new();
    fixture.confirm("done", 1_000);
    fixture.cancel("gone", 2_000);
    fixture.accept("open", 3_000);
    let notifier = fixture.notifier();
    let report = notifier.catch_up(Timestamp(5_000)).unwrap();
    assert_eq!(
        report,
        CatchUpReport {
            read: 2,
            recorded: 2,
            dead_lettered: 0
        }
    );

    let done = notifier.notification(&id("done")).unwrap().unwrap();
    assert_eq!(done.kind, NotificationKind::Confirmed);
    assert_eq!(done.customer.as_deref(), Some("Ada"));
    assert_eq!((done.reason, done.detail), (None, None));
    assert_eq!(done.decided_at, 1_002);
    assert_eq!(done.created_at, 5_000);
    let lines: Vec<(&str, u32)> = done
        .items
        .iter()
        .map(|line| (line.product.as_str(), line.quantity.get()))
        .collect();
    assert_eq!(lines, [("Medicine A", 3), ("Vaccine X", 1)]);

    let gone = notifier.notification(&id("gone")).unwrap().unwrap();
    assert_eq!(gone.kind, NotificationKind::Cancelled);
    assert_eq!(gone.reason.as_deref(), Some("cancelled_by_customer"));
    assert_eq!(gone.detail.as_deref(), Some("changed my mind"));
    assert_eq!(gone.decided_at, 2_001);
    let json = serde_json::to_value(&gone).unwrap();
    assert_eq!(json["kind"], "cancelled", "{json}");
    assert_eq!(json["items"][1]["product"], "Vaccine X", "{json}");

    assert_eq!(notifier.notification(&id("open")).unwrap(), None);
    assert_eq!(notifier.notification(&id("nobody")).unwrap(), None);
}

#[test]
fn repeats_and_racing_catch_ups_change_nothing() {
    let fixture = Fixture::new();
    fixture.confirm("a", 1_000);
    let first = fixture.notifier().catch_up(Timestamp(2_000)).unwrap();
    assert_eq!(first.recorded, 1);
    // A redelivered doorbell, and a sweep: nothing new is read, nothing is recorded again.
    let doorbell = Doorbell::backlog().to_bytes();
    let again = fixture
        .notifier()
        .on_message(EVENTS_CHANNEL, &doorbell, Timestamp(3_000))
        .unwrap();
    assert_eq!(again, CatchUpReport::default());
    // A second instance whose cursor read happened before the first moved it (simulated by
    // moving the cursor back) reads the same orders again and records nothing.
    fixture
        .sql
        .execute("UPDATE notification_cursor SET through = 0", &[])
        .unwrap();
    let raced = fixture.notifier().catch_up(Timestamp(4_000)).unwrap();
    assert_eq!((raced.read, raced.recorded), (1, 0));
    assert_eq!(fixture.count(), 1);
    let kept = fixture.notifier().notification(&id("a")).unwrap().unwrap();
    assert_eq!(kept.created_at, 2_000, "the first notification stays");
}

#[test]
fn catching_up_goes_on_from_the_cursor_in_batches() {
    let fixture = Fixture::new();
    let total = BATCH as u64 + 5;
    for n in 0..total {
        fixture.cancel(&format!("c-{n:03}"), 1_000 + n * 10);
    }
    let notifier = fixture.notifier();
    let report = notifier.catch_up(Timestamp(9_000)).unwrap();
    assert_eq!((report.read, report.recorded), (total as u32, total as u32));
    fixture.confirm("late", 20_000);
    let report = notifier.catch_up(Timestamp(21_000)).unwrap();
    assert_eq!(
        (report.read, report.recorded),
        (1, 1),
        "only what came after"
    );

    // Listing pages through them in the order the orders became final.
    let first = notifier.notifications(None, 100).unwrap();
    assert_eq!(first.notifications.len(), 100);
    assert_eq!(ids(&first)[0], "c-000");
    let second = notifier.notifications(first.next, 100).unwrap();
    assert_eq!(second.notifications.len(), 6);
    assert_eq!(ids(&second).last(), Some(&"late"));
    assert_eq!(second.next, None);
    assert_eq!(
        notifier.notifications(None, 0).unwrap().notifications.len(),
        1
    );
}

#[test]
fn a_malformed_message_is_dead_lettered_and_a_doorbell_catches_up() {
    let fixture = Fixture::new();
    fixture.cancel("x", 1_000);
    let notifier = fixture.notifier();
    let report = notifier
        .on_message(EVENTS_CHANNEL, b"not json", Timestamp(2_000))
        .unwrap();
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.recorded, 0);
    let letters = fixture.ledger().dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].channel.as_deref(), Some(EVENTS_CHANNEL));
    let doorbell = Doorbell::for_order(&id("x")).to_bytes();
    let report = notifier
        .on_message(EVENTS_CHANNEL, &doorbell, Timestamp(3_000))
        .unwrap();
    assert_eq!(report.recorded, 1);
}

#[test]
fn orders_final_before_the_service_first_ran_are_notified() {
    let fixture = Fixture::new();
    fixture.confirm("before", 1_000);
    // The first read creates the service's tables, and finds nothing recorded yet ...
    assert_eq!(
        fixture.notifier().notifications(None, 10).unwrap().next,
        None
    );
    assert_eq!(fixture.count(), 0);
    // ... which the first catch-up records.
    assert_eq!(
        fixture
            .notifier()
            .catch_up(Timestamp(2_000))
            .unwrap()
            .recorded,
        1
    );
}
