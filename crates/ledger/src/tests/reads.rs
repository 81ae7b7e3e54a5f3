use super::Fixture;
use crate::{JobResult, LedgerError, NextStep, PageCursor};
use orders_core::{OrderId, OrderStatus, Timestamp};

fn ids(orders: &[orders_core::Order]) -> Vec<&str> {
    orders.iter().map(|order| order.id.as_str()).collect()
}

fn id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap()
}

#[test]
fn unknown_orders_have_no_view_and_no_events() {
    let fixture = Fixture::new();
    assert_eq!(fixture.ledger.order(&id("nope")).unwrap(), None);
    assert_eq!(fixture.ledger.events(&id("nope")).unwrap(), vec![]);
    let page = fixture.ledger.orders(None, None, 10).unwrap();
    assert!(page.orders.is_empty());
    assert_eq!(page.next, None);
}

#[test]
fn pages_follow_acceptance_order() {
    let fixture = Fixture::new();
    for (name, at) in [("e", 5), ("b", 5), ("d", 5), ("a", 9), ("c", 5), ("z", 1)] {
        fixture.accept(name, at);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = fixture.ledger.orders(None, cursor.as_ref(), 2).unwrap();
        assert!(page.orders.len() <= 2);
        seen.extend(ids(&page.orders).into_iter().map(str::to_owned));
        match page.next {
            // The text form is what clients carry between requests.
            Some(next) => cursor = Some(PageCursor::parse(&next.to_string()).unwrap()),
            None => break,
        }
    }
    // As accepted, whatever their times and ids.
    assert_eq!(seen, ["e", "b", "d", "a", "c", "z"]);

    // An exact fit has no next page.
    let all = fixture.ledger.orders(None, None, 6).unwrap();
    assert_eq!(all.orders.len(), 6);
    assert_eq!(all.next, None);
}

#[test]
fn pages_filter_by_status() {
    let fixture = Fixture::new();
    for (name, at) in [("a", 1), ("b", 1), ("c", 1), ("d", 2)] {
        fixture.accept(name, at);
    }
    let claimed = fixture
        .ledger
        .claim("validate", "w", Timestamp(10), Timestamp(100), 10)
        .unwrap();
    let decide = |order_id: &str| JobResult {
        job_id: claimed
            .iter()
            .find(|job| job.order_id == order_id)
            .unwrap()
            .job_id,
        order_id: order_id.into(),
        attempt: Some(1),
        outcome: Some("valid".into()),
        latency_ms: Some(5),
        recovered_from: None,
        next: NextStep::Decide {
            status: OrderStatus::Validated,
            reason: None,
            detail: None,
        },
    };
    fixture
        .ledger
        .apply("w", Timestamp(20), &[decide("a"), decide("c")])
        .unwrap();

    let first = fixture
        .ledger
        .orders(Some(OrderStatus::Validated), None, 1)
        .unwrap();
    assert_eq!(ids(&first.orders), ["a"]);
    let second = fixture
        .ledger
        .orders(Some(OrderStatus::Validated), first.next.as_ref(), 1)
        .unwrap();
    assert_eq!(ids(&second.orders), ["c"]);
    assert_eq!(second.next, None);
    let processing = fixture
        .ledger
        .orders(Some(OrderStatus::Processing), None, 10)
        .unwrap();
    assert_eq!(ids(&processing.orders), ["b", "d"]);
    assert!(
        fixture
            .ledger
            .orders(Some(OrderStatus::Failed), None, 10)
            .unwrap()
            .orders
            .is_empty()
    );
}

#[test]
fn stats_count_everything_zeros_included() {
    let fixture = Fixture::new();
    let empty = fixture.ledger.stats(Timestamp(0)).unwrap();
    assert_eq!(
        empty.orders,
        OrderStatus::ALL.map(|status| (status, 0)).to_vec()
    );
    assert_eq!(empty.oldest_due_age_ms, 0);

    for (name, at) in [("a", 1_000), ("b", 2_000), ("c", 3_000), ("d", 4_000)] {
        fixture.accept(name, at);
    }
    // a: leased; b: decided; c: deferred; d: due. One message dead-lettered.
    let claimed = fixture
        .ledger
        .claim("validate", "w", Timestamp(5_000), Timestamp(9_000), 2)
        .unwrap();
    let b = claimed.iter().find(|job| job.order_id == "b").unwrap();
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(5_000),
            &[JobResult {
                job_id: b.job_id,
                order_id: "b".into(),
                attempt: Some(1),
                outcome: Some("rejected".into()),
                latency_ms: Some(3),
                recovered_from: None,
                next: NextStep::Decide {
                    status: OrderStatus::Rejected,
                    reason: Some("unknown_product".into()),
                    detail: None,
                },
            }],
        )
        .unwrap();
    fixture.run(
        "UPDATE jobs SET due_at = 60000, deferrals = 1, deferred_since = 5000 WHERE order_id = 'c'",
    );
    fixture
        .ledger
        .dead_letter_message(Timestamp(5_000), "orders", b"x", "unreadable")
        .unwrap();

    let stats = fixture.ledger.stats(Timestamp(6_000)).unwrap();
    let counted = |status| match status {
        OrderStatus::Processing => 3,
        OrderStatus::Rejected => 1,
        _ => 0,
    };
    assert_eq!(
        stats.orders,
        OrderStatus::ALL
            .map(|status| (status, counted(status)))
            .to_vec()
    );
    assert_eq!(stats.jobs_due, 1);
    assert_eq!(stats.jobs_deferred, 1);
    assert_eq!(stats.jobs_leased, 1);
    assert_eq!(stats.oldest_due_age_ms, 2_000);
    assert_eq!(stats.dead_letters, 1);

    // Once the lease expires, a's job counts as due again, and it is the oldest.
    let later = fixture.ledger.stats(Timestamp(10_000)).unwrap();
    assert_eq!(later.jobs_leased, 0);
    assert_eq!(later.jobs_due, 2);
    assert_eq!(later.oldest_due_age_ms, 9_000);
}

#[test]
fn unreadable_rows_are_reported_as_corrupt_naming_the_row() {
    let fixture = Fixture::new();
    fixture.accept("good", 1);
    fixture.accept("bad", 2);
    fixture.run("UPDATE orders SET items = '[]' WHERE id = 'bad'");
    let corrupt = |error: LedgerError| match error {
        LedgerError::Corrupt { what, detail } => (what, detail),
        other => panic!("expected a corrupt row, got {other}"),
    };
    let (what, detail) = corrupt(fixture.ledger.order(&id("bad")).unwrap_err());
    assert_eq!(what, r#"order "bad""#);
    assert!(detail.starts_with("items:"), "{detail}");
    assert!(fixture.ledger.order(&id("good")).unwrap().is_some());
    corrupt(fixture.ledger.orders(None, None, 10).unwrap_err());
    // A key answers with its order, which must be readable too.
    let (what, _) = corrupt(fixture.ledger.stored_key("key-bad").unwrap_err());
    assert_eq!(what, r#"order "bad""#);

    fixture.run("UPDATE orders SET status = 'pending', items = '[{\"product\":\"a\",\"quantity\":1}]' WHERE id = 'bad'");
    let (_, detail) = corrupt(fixture.ledger.order(&id("bad")).unwrap_err());
    assert!(detail.starts_with("status:"), "{detail}");

    fixture.run("UPDATE orders SET status = 'processing', created_at = 'soon' WHERE id = 'bad'");
    let (_, detail) = corrupt(fixture.ledger.order(&id("bad")).unwrap_err());
    assert_eq!(detail, "created_at should be an integer, found text");

    fixture.run("INSERT INTO order_events (order_id, at, kind) VALUES ('good', 5, 'exploded')");
    let (what, detail) = corrupt(fixture.ledger.events(&id("good")).unwrap_err());
    assert_eq!(what, r#"an event of order "good""#);
    assert!(detail.contains("unknown kind \"exploded\""), "{detail}");

    // The error says what failed and keeps the row's name.
    let error = fixture.ledger.order(&id("bad")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(r#"order "bad" is unreadable"#)
    );
}

#[test]
fn failed_statements_carry_their_source() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    fixture.run("CREATE TRIGGER refuse BEFORE UPDATE ON orders BEGIN SELECT RAISE(ABORT, 'read-only today'); END");
    let error = fixture.ledger.complete_key("key-a").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the ledger could not complete an idempotency key"
    );
    let source = std::error::Error::source(&error).unwrap();
    assert_eq!(source.to_string(), "read-only today");
}
