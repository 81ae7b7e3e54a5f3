use super::{Fixture, intake, order};
use crate::{EventKind, IntakeOutcome, StoredKey};
use orders_core::{OrderId, OrderStatus, Timestamp};

#[test]
fn accepting_stores_the_key_the_order_its_job_and_an_event() {
    let fixture = Fixture::new();
    let order = fixture.accept("o1", 1_000);
    assert_eq!(
        fixture.ledger.stored_key("key-o1").unwrap(),
        Some(StoredKey {
            key: "key-o1".into(),
            fingerprint: "fingerprint".into(),
            order_id: "o1".into(),
            response: r#"{"status":"processing"}"#.into(),
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
    let events = fixture.ledger.events(&order.id).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Accepted);
    assert_eq!(events[0].at, Timestamp(1_000));
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
    assert_eq!(stored.order_id, "o1");
    assert_eq!(stored.fingerprint, "fingerprint");
    assert_eq!(fixture.ledger.order(&other.id).unwrap(), None);
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM jobs", []), 1);
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM order_events", []),
        1
    );
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
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM order_events", []),
        1
    );
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

    // The oldest expired keys go first, at most `limit` of them.
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 1).unwrap(), 1);
    assert_eq!(fixture.ledger.stored_key("key-b").unwrap(), None);
    assert!(fixture.ledger.stored_key("key-c").unwrap().is_some());
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 10).unwrap(), 1);
    assert_eq!(fixture.ledger.prune_keys(Timestamp(4_000), 10).unwrap(), 0);
    assert!(fixture.ledger.stored_key("key-d").unwrap().is_some());

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
