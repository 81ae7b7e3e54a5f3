use super::Fixture;
use crate::{EventKind, IntakeOutcome, Ledger, NO_DEADLINE, RusqliteSql};
use orders_core::{OrderId, OrderStatus, Timestamp};

/// The previous release's table, as it created it, with three orders.
const LEGACY: &str = "
    CREATE TABLE orders (
        id         TEXT PRIMARY KEY,
        product    TEXT NOT NULL,
        quantity   INTEGER NOT NULL,
        status     TEXT NOT NULL,
        reason     TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX orders_by_status ON orders (status, created_at);
    INSERT INTO orders VALUES
        ('old-pending', 'Medicine A', 10, 'pending', NULL, 1000, 1000),
        ('old-valid', 'Vaccine X', 2, 'validated', NULL, 2000, 2500),
        ('old-rejected', 'Unknown', 1, 'rejected', 'unknown_product', 3000, 3500);
";

fn id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap()
}

#[test]
fn the_previous_releases_orders_are_upgraded_without_loss() {
    let fixture = Fixture::new();
    fixture.run(LEGACY);

    // The first read finds the old table's shape and upgrades it on the way.
    let page = fixture.ledger.orders(None, None, 10).unwrap();
    let ids: Vec<&str> = page.orders.iter().map(|order| order.id.as_str()).collect();
    assert_eq!(ids, ["old-pending", "old-valid", "old-rejected"]);

    let pending = fixture.ledger.order(&id("old-pending")).unwrap().unwrap();
    assert_eq!(pending.order.status, OrderStatus::Processing);
    assert_eq!(pending.order.items.len(), 1);
    assert_eq!(pending.order.items[0].product.as_str(), "Medicine A");
    assert_eq!(pending.order.items[0].quantity.get(), 10);
    assert_eq!(pending.order.created_at, Timestamp(1_000));
    let job = pending.job.unwrap();
    assert_eq!(job.next_attempt_at, Timestamp(1_000));
    assert_eq!(job.deadline_at, NO_DEADLINE);
    assert_eq!(job.attempts, 0);

    let valid = fixture.ledger.order(&id("old-valid")).unwrap().unwrap();
    assert_eq!(valid.order.status, OrderStatus::Validated);
    assert_eq!(valid.order.updated_at, Timestamp(2_500));
    assert_eq!(valid.job, None);
    let rejected = fixture.ledger.order(&id("old-rejected")).unwrap().unwrap();
    assert_eq!(rejected.order.status, OrderStatus::Rejected);
    assert_eq!(rejected.order.reason.as_deref(), Some("unknown_product"));
    assert_eq!(
        fixture.value::<i64>(
            "SELECT decided_at FROM orders WHERE id = 'old-rejected'",
            []
        ),
        3_500
    );
    let events = fixture.ledger.events(&id("old-valid")).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Accepted);
    assert_eq!(events[0].at, Timestamp(2_000));
    assert_eq!(
        events[0].detail.as_deref(),
        Some("carried over from the previous release")
    );
    // They have no idempotency keys, and key pruning starts after them.
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(*) FROM orders WHERE idempotency_key IS NOT NULL",
            []
        ),
        0
    );
    assert_eq!(
        fixture.value::<i64>(
            "SELECT value FROM ledger_marks WHERE name = 'keys_pruned_through'",
            []
        ),
        3
    );

    // The old table and its index are gone; the schema is at version 1.
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('legacy_orders', 'orders_by_status')",
            []
        ),
        0
    );
    assert_eq!(
        fixture.value::<i64>("SELECT max(version) FROM ledger_schema", []),
        crate::schema::SCHEMA_VERSION
    );

    // The carried-over job is due at once, and the ledger works as usual.
    let claimed = fixture
        .ledger
        .claim("validate", "w", Timestamp(5_000), Timestamp(6_000), 10)
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].order_id, "old-pending");
    fixture.accept("new", 6_000);
    let page = fixture.ledger.orders(None, None, 10).unwrap();
    assert_eq!(page.orders.len(), 4);
    assert_eq!(page.orders[3].id.as_str(), "new");
    let events = fixture.ledger.events(&id("new")).unwrap();
    assert_eq!(events[0].kind, EventKind::Accepted);
    assert_eq!(events[0].detail, None);
    assert_eq!(fixture.ledger.prune_keys(Timestamp(7_000), 1).unwrap(), 1);
}

#[test]
fn migrating_is_idempotent() {
    let fixture = Fixture::new();
    fixture.ledger.migrate().unwrap();
    fixture.accept("a", 1);
    fixture.ledger.migrate().unwrap();
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM ledger_schema", []),
        crate::schema::SCHEMA_VERSION
    );
    assert_eq!(
        fixture.ledger.orders(None, None, 10).unwrap().orders.len(),
        1
    );
    // No transaction is left open.
    assert!(fixture.inspect.is_autocommit());
}

#[test]
fn racing_migrations_upgrade_once() {
    let fixture = Fixture::new();
    fixture.run(LEGACY);
    let path = fixture.path.clone();
    let racers: Vec<_> = (0..3)
        .map(|racer| {
            let path = path.clone();
            std::thread::spawn(move || {
                let ledger = Ledger::new(RusqliteSql::open(&path).unwrap());
                if racer == 0 {
                    ledger.migrate().unwrap();
                } else {
                    // Operations that find the schema missing migrate themselves.
                    let order = super::order(&format!("racer-{racer}"), 10);
                    let outcome = ledger
                        .accept(&super::intake(&order, &format!("key-{racer}")))
                        .unwrap();
                    assert_eq!(outcome, IntakeOutcome::Created);
                }
            })
        })
        .collect();
    for racer in racers {
        racer.join().unwrap();
    }
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM ledger_schema", []),
        crate::schema::SCHEMA_VERSION
    );
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM orders", []), 5);
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM jobs", []),
        3,
        "the pending order's job and the racers' jobs"
    );
}

#[test]
fn a_failed_migration_leaves_nothing_behind() {
    let fixture = Fixture::new();
    // A table in the way of version 1.
    fixture.run("CREATE TABLE jobs (x)");
    let error = fixture.ledger.migrate().unwrap_err();
    assert_eq!(error.to_string(), "the ledger could not migrate its schema");
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'ledger_schema'",
            []
        ),
        0
    );
    fixture.run("DROP TABLE jobs");
    fixture.ledger.migrate().unwrap();
    fixture.accept("a", 1);
}
