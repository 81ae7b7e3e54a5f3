use super::{Fixture, intake, order};
use crate::{EventKind, IntakeOutcome, JobResult, NextStep, StoredKey};
use orders_core::{OrderId, OrderStatus, Timestamp};

#[test]
fn accepting_stores_the_order_with_its_key_and_its_job() {
    let fixture = Fixture::new();
    let order = fixture.accept("o1", 1_000);
    assert_eq!(
        fixture.ledger.stored_key("key-o1").unwrap(),
        Some(StoredKey {
            key: "key-o1".into(),
            fingerprint: "fingerprint".into(),
            order: order.clone(),
            completed: false,
            locked_until: Timestamp(11_000),
            created_at: Timestamp(1_000),
        })
    );
    let view = fixture.ledger.order(&order.id).unwrap().unwrap();
    assert_eq!(view.order, order);
    let job = view.job.unwrap();
    assert_eq!(job.attempts, 0);
    assert_eq!(job.next_attempt_at, Timestamp(1_000));
    assert_eq!(job.deadline_at, Timestamp(61_000));
    assert!(!job.dead_lettered);
    assert_eq!(job.leased_until, None);
    // The `accepted` event is derived from the order, not stored.
    let events = fixture.ledger.events(&order.id).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 0);
    assert_eq!(events[0].kind, EventKind::Accepted);
    assert_eq!(events[0].at, Timestamp(1_000));
    assert_eq!(events[0].detail, None);
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM order_events", []),
        0
    );
}

/// The pages an intake writes, by the B-tree (table or index) each belongs to: in a small
/// database each B-tree is one page, and the WAL holds one frame per page written.
#[test]
fn an_intake_writes_one_page_in_each_of_seven_b_trees() {
    let fixture = Fixture::new();
    for n in 0..5 {
        fixture.accept(&format!("warm-{n}"), n);
    }
    fixture.run("PRAGMA wal_checkpoint(TRUNCATE)");
    let wal = fixture.path.with_extension("db-wal");
    fixture.accept("measured", 10);
    let page_size: u64 = fixture.value("PRAGMA page_size", []);
    let frames = std::fs::read(&wal).unwrap();
    let mut written: Vec<String> = frames[32..]
        .chunks(24 + page_size as usize)
        .map(|frame| {
            let page = u32::from_be_bytes(frame[..4].try_into().unwrap());
            fixture.value(
                "SELECT coalesce(
                    (SELECT name FROM sqlite_schema WHERE rootpage = ?1), 'page ' || ?1)",
                [page],
            )
        })
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "jobs",
            "jobs_due",
            "orders",
            "orders_by_idempotency_key",
            "orders_by_status_and_seq",
            "sqlite_autoindex_jobs_1",
            "sqlite_autoindex_orders_1",
        ]
    );
}

#[test]
fn a_used_key_returns_what_it_holds_and_stores_nothing() {
    let fixture = Fixture::new();
    fixture.accept("o1", 1_000);
    let other = order("o2", 2_000);
    let mut retry = intake(&other, "key-o1");
    retry.fingerprint = "different";
    let IntakeOutcome::KeyTaken(stored) = fixture.ledger.accept(&retry).unwrap() else {
        panic!("the key should be taken");
    };
    assert_eq!(stored.order.id.as_str(), "o1");
    assert_eq!(stored.fingerprint, "fingerprint");
    assert_eq!(fixture.ledger.order(&other.id).unwrap(), None);
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM orders", []), 1);
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM jobs", []), 1);
}

#[test]
fn a_retry_with_its_order_id_finds_the_key_and_the_order_as_accepted() {
    let fixture = Fixture::new();
    let first = fixture.accept("o1", 1_000);
    // The order is decided meanwhile; the key still gives it as it was accepted.
    let job = fixture
        .ledger
        .claim("validate", "w", Timestamp(1_500), Timestamp(9_000), 1)
        .unwrap()
        .remove(0);
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(2_000),
            &[JobResult {
                job_id: job.job_id,
                order_id: "o1".into(),
                attempt: Some(1),
                outcome: Some("rejected".into()),
                latency_ms: Some(5),
                recovered_from: None,
                next: NextStep::Decide {
                    status: OrderStatus::Rejected,
                    reason: Some("unknown_product".into()),
                    detail: Some("no such product".into()),
                },
            }],
        )
        .unwrap();
    let retry = order("o1", 3_000);
    let IntakeOutcome::KeyTaken(stored) = fixture.ledger.accept(&intake(&retry, "key-o1")).unwrap()
    else {
        panic!("the key should be taken");
    };
    assert_eq!(stored.order, first);
    assert_eq!(stored.order.status, OrderStatus::Processing);
    assert_eq!(stored.order.updated_at, stored.order.created_at);
    assert_eq!(stored.created_at, Timestamp(1_000));
}

#[test]
fn a_taken_order_id_stores_nothing() {
    let fixture = Fixture::new();
    fixture.accept("o1", 1_000);
    let again = order("o1", 2_000);
    assert_eq!(
        fixture
            .ledger
            .accept(&intake(&again, "another key"))
            .unwrap(),
        IntakeOutcome::OrderIdTaken
    );
    assert_eq!(fixture.ledger.stored_key("another key").unwrap(), None);
    let view = fixture.ledger.order(&again.id).unwrap().unwrap();
    assert_eq!(view.order.created_at, Timestamp(1_000));
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM jobs", []), 1);
}

#[test]
fn keys_are_completed_forgotten_when_expired_and_pruned() {
    let fixture = Fixture::new();
    for (id, at) in [("a", 1_000), ("b", 2_000), ("c", 3_000), ("d", 4_000)] {
        fixture.accept(id, at);
    }
    fixture.ledger.complete_key("key-a").unwrap();
    assert!(
        fixture
            .ledger
            .stored_key("key-a")
            .unwrap()
            .unwrap()
            .completed
    );
    assert!(
        !fixture
            .ledger
            .stored_key("key-b")
            .unwrap()
            .unwrap()
            .completed
    );

    assert!(
        !fixture
            .ledger
            .forget_key_if_expired("key-a", Timestamp(1_000))
            .unwrap()
    );
    assert!(
        fixture
            .ledger
            .forget_key_if_expired("key-a", Timestamp(1_001))
            .unwrap()
    );
    assert!(
        !fixture
            .ledger
            .forget_key_if_expired("key-a", Timestamp(1_001))
            .unwrap()
    );
    assert_eq!(fixture.ledger.stored_key("key-a").unwrap(), None);
    assert!(
        fixture
            .ledger
            .order(&OrderId::parse("a").unwrap())
            .unwrap()
            .is_some()
    );

    // The oldest expired keys go first, looking at `limit` orders at most: the first call
    // passes `a`, whose key is gone already.
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 1).unwrap(), 0);
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 1).unwrap(), 1);
    assert_eq!(fixture.ledger.stored_key("key-b").unwrap(), None);
    assert!(fixture.ledger.stored_key("key-c").unwrap().is_some());
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 10).unwrap(), 1);
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 10).unwrap(), 0);
    assert!(fixture.ledger.stored_key("key-d").unwrap().is_some());
    assert_eq!(
        fixture.value::<i64>(
            "SELECT value FROM ledger_marks WHERE name = 'keys_pruned_through'",
            []
        ),
        3
    );

    // A forgotten key can be used again; the orders stay.
    let again = order("e", 5_000);
    assert_eq!(
        fixture.ledger.accept(&intake(&again, "key-a")).unwrap(),
        IntakeOutcome::Created
    );
    let listed = fixture.ledger.orders(None, None, 10).unwrap().orders;
    assert_eq!(listed.len(), 5);
}

#[test]
fn intake_keeps_the_customer_and_every_line() {
    let fixture = Fixture::new();
    let order = orders_core::NewOrder::parse(
        br#"{"order_id": "o9", "customer": "ward 7", "items": [{"product": "a", "quantity": 1}, {"product": "b", "quantity": 2}]}"#,
    )
    .unwrap()
    .accept(Timestamp(7), [0; 10]);
    fixture.ledger.accept(&intake(&order, "k")).unwrap();
    let stored = fixture
        .ledger
        .order(&OrderId::parse("o9").unwrap())
        .unwrap()
        .unwrap()
        .order;
    assert_eq!(stored, order);
    assert_eq!(stored.status, OrderStatus::Processing);
}

#[test]
fn pruning_follows_acceptance_order_and_never_prunes_early() {
    let fixture = Fixture::new();
    // `late` was accepted before `early` (instances' clocks disagree).
    for (id, at) in [("first", 1_000), ("late", 5_000), ("early", 2_000)] {
        fixture.accept(id, at);
    }
    assert_eq!(fixture.ledger.prune_keys(Timestamp(3_000), 10).unwrap(), 1);
    assert_eq!(fixture.ledger.stored_key("key-first").unwrap(), None);
    // `early` has expired but waits behind `late`, which has not.
    assert!(fixture.ledger.stored_key("key-late").unwrap().is_some());
    assert!(fixture.ledger.stored_key("key-early").unwrap().is_some());
    assert_eq!(fixture.ledger.prune_keys(Timestamp(3_000), 10).unwrap(), 0);
    assert_eq!(fixture.ledger.prune_keys(Timestamp(6_000), 10).unwrap(), 2);
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(*) FROM orders WHERE idempotency_key IS NOT NULL",
            []
        ),
        0
    );
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM orders", []), 3);
}
