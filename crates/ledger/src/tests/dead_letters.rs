use super::Fixture;
use crate::{DeadLetterSource, EventKind, JobResult, NextStep, ReplayOutcome};
use orders_core::{OrderId, OrderStatus, Timestamp};

/// Accepts order `a` at 0 with a 60 s deadline, and dead-letters its job at 1000 after one
/// attempt.
fn dead_job(fixture: &Fixture) -> i64 {
    fixture.accept("a", 0);
    let job = fixture
        .ledger
        .claim("validate", "w", Timestamp(10), Timestamp(110), 1)
        .unwrap()
        .remove(0);
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(1_000),
            &[JobResult {
                job_id: job.job_id,
                order_id: job.order_id,
                attempt: Some(1),
                outcome: Some("http 400".into()),
                latency_ms: Some(5),
                recovered_from: None,
                next: NextStep::DeadLetter {
                    reason: "the validator refuses it".into(),
                },
            }],
        )
        .unwrap();
    fixture.run("UPDATE jobs SET poison_count = 3");
    let letters = fixture.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 1);
    letters[0].id
}

#[test]
fn messages_are_dead_lettered_listed_and_replayed_once() {
    let fixture = Fixture::new();
    let first = fixture
        .ledger
        .dead_letter_message(Timestamp(5), "orders.created", b"\x00payload", "no handler")
        .unwrap();
    let second = fixture
        .ledger
        .dead_letter_message(Timestamp(6), "orders.created", b"other", "no handler")
        .unwrap();
    let letters = fixture.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(
        letters.iter().map(|letter| letter.id).collect::<Vec<_>>(),
        [second, first]
    );
    assert_eq!(letters[1].source, DeadLetterSource::Message);
    assert_eq!(letters[1].payload.as_deref(), Some(&b"\x00payload"[..]));
    assert_eq!(letters[1].channel.as_deref(), Some("orders.created"));
    assert_eq!(letters[1].job_id, None);
    assert_eq!(letters[1].created_at, Timestamp(5));
    assert_eq!(fixture.ledger.dead_letters(false, 1).unwrap().len(), 1);

    assert_eq!(
        fixture.ledger.replay(first, Timestamp(50)).unwrap(),
        ReplayOutcome::Message {
            channel: "orders.created".into(),
            payload: b"\x00payload".to_vec()
        }
    );
    assert_eq!(
        fixture.ledger.replay(first, Timestamp(60)).unwrap(),
        ReplayOutcome::AlreadyReplayed { at: Timestamp(50) }
    );
    assert_eq!(
        fixture.ledger.replay(999, Timestamp(60)).unwrap(),
        ReplayOutcome::NotFound
    );
    let waiting = fixture.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].id, second);
    let all = fixture.ledger.dead_letters(true, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].replayed_at, Some(Timestamp(50)));
    assert_eq!(fixture.ledger.stats(Timestamp(60)).unwrap().dead_letters, 1);
}

#[test]
fn replaying_a_job_requeues_it_once() {
    let fixture = Fixture::new();
    let letter = dead_job(&fixture);
    assert_eq!(
        fixture.ledger.replay(letter, Timestamp(100_000)).unwrap(),
        ReplayOutcome::Job {
            order_id: "a".into()
        }
    );
    let job = fixture
        .ledger
        .order(&OrderId::parse("a").unwrap())
        .unwrap()
        .unwrap()
        .job
        .unwrap();
    assert!(!job.dead_lettered);
    assert_eq!(job.next_attempt_at, Timestamp(100_000));
    assert_eq!(job.attempts, 1);
    // It gets its 60 s window again, from the replay.
    assert_eq!(job.deadline_at, Timestamp(160_000));
    assert_eq!(fixture.value::<i64>("SELECT poison_count FROM jobs", []), 0);
    let events = fixture
        .ledger
        .events(&OrderId::parse("a").unwrap())
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::Replayed);
    assert_eq!(last.at, Timestamp(100_000));

    // A second replay does nothing.
    assert_eq!(
        fixture.ledger.replay(letter, Timestamp(100_001)).unwrap(),
        ReplayOutcome::AlreadyReplayed {
            at: Timestamp(100_000)
        }
    );
    assert_eq!(
        fixture
            .ledger
            .events(&OrderId::parse("a").unwrap())
            .unwrap()
            .len(),
        events.len()
    );

    // The job can be claimed and decided as any other.
    let claimed = fixture
        .ledger
        .claim("validate", "w2", Timestamp(100_000), Timestamp(100_100), 5)
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].poison_count, 0);
    let applied = fixture
        .ledger
        .apply(
            "w2",
            Timestamp(100_050),
            &[JobResult {
                job_id: claimed[0].job_id,
                order_id: "a".into(),
                attempt: Some(2),
                outcome: Some("valid".into()),
                latency_ms: Some(5),
                recovered_from: None,
                next: NextStep::Decide {
                    status: OrderStatus::Validated,
                    reason: None,
                    detail: None,
                },
            }],
        )
        .unwrap();
    assert_eq!(applied.decided, [("a".into(), OrderStatus::Validated)]);
}

#[test]
fn racing_replays_requeue_once() {
    let fixture = Fixture::new();
    let letter = dead_job(&fixture);
    let other = fixture.another_ledger();
    let outcomes = [
        fixture.ledger.replay(letter, Timestamp(2_000)).unwrap(),
        other.replay(letter, Timestamp(2_000)).unwrap(),
    ];
    assert_eq!(
        outcomes,
        [
            ReplayOutcome::Job {
                order_id: "a".into()
            },
            ReplayOutcome::AlreadyReplayed {
                at: Timestamp(2_000)
            }
        ]
    );
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(*) FROM order_events WHERE kind = 'replayed'",
            []
        ),
        1
    );
}

#[test]
fn clearing_deletes_everything() {
    let fixture = Fixture::new();
    dead_job(&fixture);
    fixture.accept("b", 5);
    fixture
        .ledger
        .dead_letter_message(Timestamp(5), "c", b"p", "r")
        .unwrap();
    fixture.ledger.prune_keys(Timestamp(100), 10).unwrap();
    fixture.ledger.clear_all().unwrap();
    for table in [
        "orders",
        "jobs",
        "order_events",
        "dead_letters",
        "apply_outcomes",
    ] {
        assert_eq!(
            fixture.value::<i64>(&format!("SELECT count(*) FROM {table}"), []),
            0,
            "{table}"
        );
    }
    assert_eq!(
        fixture.value::<i64>("SELECT sum(value) FROM ledger_marks", []),
        0
    );
    // The ledger works as before.
    fixture.accept("a", 10);
    assert_eq!(
        fixture.ledger.orders(None, None, 10).unwrap().orders.len(),
        1
    );
    assert_eq!(fixture.ledger.prune_keys(Timestamp(100), 10).unwrap(), 1);
}

#[test]
fn clearing_a_new_database_creates_the_schema() {
    let fixture = Fixture::new();
    fixture.ledger.clear_all().unwrap();
    assert_eq!(
        fixture.value::<i64>("SELECT max(version) FROM ledger_schema", []),
        crate::schema::SCHEMA_VERSION
    );
}

#[test]
fn a_dead_lettered_order_is_failed_at_its_deadline_and_then_cannot_be_replayed() {
    let fixture = Fixture::new();
    let letter = dead_job(&fixture);
    let a = OrderId::parse("a").unwrap();
    // Until its deadline (60 s) the order stays processing, visibly dead-lettered.
    assert!(
        fixture
            .ledger
            .claim_expired(
                "validate",
                "sweep",
                Timestamp(59_999),
                Timestamp(60_100),
                10
            )
            .unwrap()
            .is_empty()
    );
    let view = fixture.ledger.order(&a).unwrap().unwrap();
    assert_eq!(view.order.status, OrderStatus::Processing);
    assert!(view.job.unwrap().dead_lettered);

    // Then the sweep claims it, with why it was dead-lettered ...
    let expired = fixture
        .ledger
        .claim_expired(
            "validate",
            "sweep",
            Timestamp(60_000),
            Timestamp(60_100),
            10,
        )
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        expired[0].dead_lettered.as_deref(),
        Some("the validator refuses it")
    );
    // ... and while it holds the job, a replay leaves it alone.
    assert_eq!(
        fixture.ledger.replay(letter, Timestamp(60_010)).unwrap(),
        ReplayOutcome::OrderSettled {
            order_id: "a".into()
        }
    );
    let failed = JobResult {
        job_id: expired[0].job_id,
        order_id: "a".into(),
        attempt: None,
        outcome: None,
        latency_ms: None,
        recovered_from: None,
        next: NextStep::Decide {
            status: OrderStatus::Failed,
            reason: Some("deadline_passed".into()),
            detail: Some("dead-lettered".into()),
        },
    };
    let applied = fixture
        .ledger
        .apply("sweep", Timestamp(60_020), &[failed])
        .unwrap();
    assert_eq!(applied.decided, [("a".into(), OrderStatus::Failed)]);
    let view = fixture.ledger.order(&a).unwrap().unwrap();
    assert_eq!(view.order.status, OrderStatus::Failed);
    assert_eq!(view.job, None);

    // The job is gone: a replay says so, requeues nothing and marks nothing, however often.
    for at in [70_000, 80_000] {
        assert_eq!(
            fixture.ledger.replay(letter, Timestamp(at)).unwrap(),
            ReplayOutcome::OrderSettled {
                order_id: "a".into()
            }
        );
    }
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM jobs", []), 0);
    let waiting = fixture.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].replayed_at, None);
    let events = fixture.ledger.events(&a).unwrap();
    assert!(events.iter().all(|event| event.kind != EventKind::Replayed));
    assert_eq!(events.last().unwrap().kind, EventKind::Failed);
}

#[test]
fn a_message_can_be_read_and_published_before_it_is_marked_replayed() {
    let fixture = Fixture::new();
    let id = fixture
        .ledger
        .dead_letter_message(Timestamp(5), "orderly-jobs", b"ring", "no such order")
        .unwrap();
    let letter = fixture.ledger.dead_letter(id).unwrap().unwrap();
    assert_eq!(letter.id, id);
    assert_eq!(letter.source, DeadLetterSource::Message);
    assert_eq!(letter.channel.as_deref(), Some("orderly-jobs"));
    assert_eq!(letter.payload.as_deref(), Some(&b"ring"[..]));
    assert_eq!(letter.reason, "no such order");
    assert_eq!(letter.created_at, Timestamp(5));
    assert_eq!(letter.replayed_at, None);
    // Reading marks nothing: publishing failed, the entry still waits.
    assert_eq!(fixture.ledger.dead_letter(id).unwrap(), Some(letter));
    assert_eq!(fixture.ledger.stats(Timestamp(6)).unwrap().dead_letters, 1);
    // Published: now it is marked.
    assert_eq!(
        fixture.ledger.replay(id, Timestamp(7)).unwrap(),
        ReplayOutcome::Message {
            channel: "orderly-jobs".into(),
            payload: b"ring".to_vec()
        }
    );
    assert_eq!(
        fixture.ledger.dead_letter(id).unwrap().unwrap().replayed_at,
        Some(Timestamp(7))
    );
    assert_eq!(fixture.ledger.dead_letter(id + 1).unwrap(), None);
}
