//! Each operation, its repeats, and the transitions it refuses.

use super::{DECLINED_CARD, Fixture, GOOD_CARD, card, cents, order};
use crate::{Authorization, DeclineReason, Operation, PaymentError, PaymentPolicy, PaymentState};

/// Authorizes `cents` on the good card for order `id`; returns the payment id.
fn authorized(fixture: &Fixture, id: &str, amount: u64) -> String {
    match fixture
        .payments
        .authorize(&order(id), cents(amount), &card(GOOD_CARD))
        .unwrap()
    {
        Authorization::Authorized { payment_id } => payment_id.to_string(),
        declined => panic!("{declined:?}"),
    }
}

#[test]
fn an_authorization_is_answered_the_same_way_every_time() {
    let fixture = Fixture::new();
    let first = authorized(&fixture, "o1", 2_500);
    assert!(first.starts_with("pay_") && first.len() == 14, "{first}");
    assert_eq!(authorized(&fixture, "o1", 2_500), first);
    assert_ne!(authorized(&fixture, "o2", 2_500), first);
    let payment = fixture.payments.payment(&order("o1")).unwrap().unwrap();
    assert_eq!(payment.id.as_str(), first);
    assert_eq!(payment.state, PaymentState::Authorized);
    assert_eq!(payment.amount, Some(cents(2_500)));
    assert_eq!(payment.card_last4.as_deref(), Some("4242"));
    assert_eq!(payment.charged_cents(), 0);
    assert_eq!(fixture.payments.payment(&order("o3")).unwrap(), None);
}

#[test]
fn test_cards_and_amounts_over_the_limit_are_declined_for_good() {
    let fixture = Fixture::new();
    let declined = fixture
        .payments
        .authorize(&order("o1"), cents(100), &card(DECLINED_CARD))
        .unwrap();
    assert_eq!(
        declined,
        Authorization::Declined {
            reason: DeclineReason::CardDeclined
        }
    );
    let over = fixture
        .payments
        .authorize(&order("o2"), cents(1_000_001), &card(GOOD_CARD))
        .unwrap();
    assert_eq!(
        over,
        Authorization::Declined {
            reason: DeclineReason::AmountOverLimit
        }
    );
    // The stored answer stands, even under a policy that would now accept it.
    let lenient = fixture.another(PaymentPolicy {
        limit: cents(5_000_000),
    });
    assert_eq!(
        lenient
            .authorize(&order("o2"), cents(1_000_001), &card(GOOD_CARD))
            .unwrap(),
        over
    );
    // A declined payment cannot be captured; compensating it leaves it as it is.
    assert!(matches!(
        fixture.payments.capture(&order("o1")),
        Err(PaymentError::IllegalTransition {
            operation: Operation::Capture,
            state: PaymentState::Declined,
            ..
        })
    ));
    let compensated = fixture.payments.compensate(&order("o1")).unwrap();
    assert_eq!(compensated.state, PaymentState::Declined);
    assert_eq!(compensated.decline, Some(DeclineReason::CardDeclined));
}

#[test]
fn another_amount_or_card_for_the_same_order_conflicts() {
    let fixture = Fixture::new();
    authorized(&fixture, "o1", 2_500);
    for (amount, number) in [(2_501, GOOD_CARD), (2_500, "5555 5555 5555 4444")] {
        assert!(matches!(
            fixture.payments.authorize(&order("o1"), cents(amount), &card(number)),
            Err(PaymentError::Conflict(id)) if id == order("o1")
        ));
    }
}

#[test]
fn a_capture_charges_once_in_full() {
    let fixture = Fixture::new();
    let id = authorized(&fixture, "o1", 2_500);
    let captured = fixture.payments.capture(&order("o1")).unwrap();
    assert_eq!(captured.state, PaymentState::Captured);
    assert_eq!(captured.id.as_str(), id);
    assert_eq!(
        (captured.captured_cents, captured.charged_cents()),
        (2_500, 2_500)
    );
    assert_eq!(fixture.payments.capture(&order("o1")).unwrap(), captured);
    // A redelivered authorization still answers as the first did.
    assert_eq!(authorized(&fixture, "o1", 2_500), id);
    assert!(matches!(
        fixture.payments.void(&order("o1")),
        Err(PaymentError::IllegalTransition {
            operation: Operation::Void,
            state: PaymentState::Captured,
            ..
        })
    ));
    assert!(matches!(
        fixture.payments.capture(&order("nobody")),
        Err(PaymentError::UnknownOrder(_))
    ));
}

#[test]
fn a_void_releases_an_authorization_uncharged() {
    let fixture = Fixture::new();
    authorized(&fixture, "o1", 2_500);
    let voided = fixture.payments.void(&order("o1")).unwrap();
    assert_eq!(
        (voided.state, voided.charged_cents()),
        (PaymentState::Voided, 0)
    );
    assert_eq!(fixture.payments.void(&order("o1")).unwrap(), voided);
    for (operation, result) in [
        (Operation::Capture, fixture.payments.capture(&order("o1"))),
        (Operation::Refund, fixture.payments.refund(&order("o1"))),
    ] {
        assert!(
            matches!(
                &result,
                Err(PaymentError::IllegalTransition { operation: op, state: PaymentState::Voided, .. })
                    if *op == operation
            ),
            "{result:?}"
        );
    }
    // A late authorization is refused: the void stands.
    assert!(matches!(
        fixture
            .payments
            .authorize(&order("o1"), cents(2_500), &card(GOOD_CARD)),
        Err(PaymentError::Closed {
            state: PaymentState::Voided,
            ..
        })
    ));
}

#[test]
fn a_refund_gives_a_charge_back_once_and_needs_a_capture() {
    let fixture = Fixture::new();
    authorized(&fixture, "o1", 2_500);
    assert!(matches!(
        fixture.payments.refund(&order("o1")),
        Err(PaymentError::IllegalTransition {
            operation: Operation::Refund,
            state: PaymentState::Authorized,
            ..
        })
    ));
    fixture.payments.capture(&order("o1")).unwrap();
    let refunded = fixture.payments.refund(&order("o1")).unwrap();
    assert_eq!(
        (
            refunded.state,
            refunded.captured_cents,
            refunded.refunded_cents,
            refunded.charged_cents()
        ),
        (PaymentState::Refunded, 2_500, 2_500, 0)
    );
    assert_eq!(fixture.payments.refund(&order("o1")).unwrap(), refunded);
    assert!(matches!(
        fixture.payments.capture(&order("o1")),
        Err(PaymentError::IllegalTransition {
            state: PaymentState::Refunded,
            ..
        })
    ));
}

#[test]
fn compensating_leaves_every_order_uncharged() {
    let fixture = Fixture::new();
    authorized(&fixture, "held", 1_000);
    authorized(&fixture, "charged", 2_000);
    fixture.payments.capture(&order("charged")).unwrap();
    for (id, state) in [
        ("held", PaymentState::Voided),
        ("charged", PaymentState::Refunded),
        ("never", PaymentState::Cancelled),
    ] {
        let first = fixture.payments.compensate(&order(id)).unwrap();
        assert_eq!((first.state, first.charged_cents()), (state, 0), "{id}");
        assert_eq!(fixture.payments.compensate(&order(id)).unwrap(), first);
    }
    let tombstone = fixture.payments.payment(&order("never")).unwrap().unwrap();
    assert_eq!((tombstone.amount, tombstone.card_last4), (None, None));
    // The authorization the compensation overtook is refused.
    assert!(matches!(
        fixture
            .payments
            .authorize(&order("never"), cents(500), &card(GOOD_CARD)),
        Err(PaymentError::Closed {
            state: PaymentState::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        fixture.payments.capture(&order("never")),
        Err(PaymentError::IllegalTransition {
            state: PaymentState::Cancelled,
            ..
        })
    ));
}

#[test]
fn the_database_refuses_double_or_partial_charges() {
    let fixture = Fixture::new();
    authorized(&fixture, "o1", 2_500);
    fixture.payments.capture(&order("o1")).unwrap();
    for broken in [
        "UPDATE payment_intents SET captured_cents = 5000",
        "UPDATE payment_intents SET state = 'refunded', refunded_cents = 3000",
        "UPDATE payment_intents SET state = 'authorized'",
        "UPDATE payment_intents SET amount_cents = NULL",
        "INSERT INTO payment_intents (order_id, state) VALUES ('x', 'authorized')",
    ] {
        let error = fixture.inspect.execute(broken, []).unwrap_err();
        assert!(
            error.to_string().contains("CHECK constraint failed"),
            "{broken}: {error}"
        );
    }
}

/// Threads on their own connections capture, and compensate, one order's payment at once:
/// whichever wins, the order is charged once or not at all, never twice.
#[test]
fn concurrent_captures_and_compensations_charge_at_most_once() {
    for round in 0..10 {
        let fixture = Fixture::new();
        let id = format!("race-{round}");
        authorized(&fixture, &id, 700);
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let payments = fixture.another(PaymentPolicy::default());
                let id = order(&id);
                std::thread::spawn(move || {
                    if thread == 3 {
                        payments.compensate(&id).map(|payment| payment.state)
                    } else {
                        payments.capture(&id).map(|payment| payment.state)
                    }
                })
            })
            .collect();
        for thread in threads {
            // A capture after the compensation is refused; anything else succeeds.
            match thread.join().unwrap() {
                Ok(_)
                | Err(PaymentError::IllegalTransition {
                    state: PaymentState::Voided | PaymentState::Refunded,
                    ..
                }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        let payment = fixture.payments.payment(&order(&id)).unwrap().unwrap();
        assert!(
            matches!(payment.state, PaymentState::Voided | PaymentState::Refunded),
            "{payment:?}"
        );
        assert_eq!(payment.charged_cents(), 0);
        assert!(payment.captured_cents == 0 || payment.captured_cents == 700);
    }
}
