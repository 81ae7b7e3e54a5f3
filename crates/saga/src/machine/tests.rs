use super::*;
use proptest::prelude::*;

fn done(saga: &Saga) -> Saga {
    saga.record(Outcome::Done).unwrap()
}

fn refused(saga: &Saga, detail: &str) -> Saga {
    saga.record(Outcome::Refused {
        detail: detail.into(),
    })
    .unwrap()
}

/// Every action a saga takes from `saga` until it ends, answering each with `Done`.
fn actions_until_the_end(mut saga: Saga) -> Vec<Action> {
    let mut actions = Vec::new();
    loop {
        let action = saga.next_action();
        actions.push(action);
        if let Action::Finished(_) = action {
            return actions;
        }
        saga = done(&saga);
    }
}

#[test]
fn a_saga_whose_steps_all_succeed_runs_them_in_order_and_confirms() {
    let saga = Saga::new();
    assert_eq!(saga.status(), OrderStatus::Validated);
    assert_eq!(
        actions_until_the_end(saga),
        [
            Action::Call(Step::Reserve),
            Action::Call(Step::Authorize),
            Action::Call(Step::Ship),
            Action::Call(Step::Capture),
            Action::Call(Step::Commit),
            Action::Finished(Ending::Confirmed),
        ]
    );
}

#[test]
fn statuses_follow_the_steps_done() {
    let mut saga = Saga::new();
    let mut statuses = vec![saga.status()];
    while !matches!(saga.next_action(), Action::Finished(_)) {
        saga = done(&saga);
        statuses.push(saga.status());
    }
    assert_eq!(
        statuses,
        [
            OrderStatus::Validated,
            OrderStatus::Reserved,
            OrderStatus::Paid,
            OrderStatus::Shipped,
            OrderStatus::Shipped,
            OrderStatus::Confirmed,
        ]
    );
}

#[test]
fn a_refused_step_undoes_every_step_up_to_it_in_reverse() {
    let cases = [
        (Step::Reserve, vec![Compensation::ReleaseStock]),
        (
            Step::Authorize,
            vec![Compensation::RefundPayment, Compensation::ReleaseStock],
        ),
        (
            Step::Ship,
            vec![
                Compensation::CancelShipment,
                Compensation::RefundPayment,
                Compensation::ReleaseStock,
            ],
        ),
        (
            Step::Capture,
            vec![
                Compensation::CancelShipment,
                Compensation::RefundPayment,
                Compensation::ReleaseStock,
            ],
        ),
    ];
    for (refused_step, compensations) in cases {
        let mut saga = Saga::new();
        while saga.next_action() != Action::Call(refused_step) {
            saga = done(&saga);
        }
        let saga = refused(&saga, "no");
        assert_eq!(saga.status(), OrderStatus::Cancelling);
        assert_eq!(
            saga.cancellation(),
            Some(&Cancellation {
                cause: CancellationCause::Refused { step: refused_step },
                detail: "no".into()
            })
        );
        let mut expected: Vec<Action> = compensations.into_iter().map(Action::Compensate).collect();
        expected.push(Action::Finished(Ending::Cancelled));
        assert_eq!(
            actions_until_the_end(saga),
            expected,
            "refused at {refused_step}"
        );
    }
}

#[test]
fn the_reason_says_which_step_ended_the_saga() {
    let saga = refused(&Saga::new(), "out of stock");
    assert_eq!(saga.cancellation().unwrap().reason(), "reserve_refused");
    let saga = Saga::new().cancel("changed my mind").unwrap();
    assert_eq!(
        saga.cancellation().unwrap().reason(),
        "cancelled_by_customer"
    );
    let saga = done(&Saga::new())
        .give_up(GiveUp::DeadlinePassed, "deadline")
        .unwrap();
    assert_eq!(
        saga.cancellation().unwrap().reason(),
        "authorize_deadline_passed"
    );
    let saga = Saga::new()
        .give_up(GiveUp::Unavailable, "inventory failed")
        .unwrap();
    assert_eq!(saga.cancellation().unwrap().reason(), "reserve_unavailable");
}

#[test]
fn the_cancelled_saga_keeps_its_reason_to_the_end() {
    let mut saga = done(&done(&Saga::new())).cancel("please").unwrap();
    while !matches!(saga.next_action(), Action::Finished(_)) {
        saga = done(&saga);
    }
    assert_eq!(saga.status(), OrderStatus::Cancelled);
    assert_eq!(saga.cancellation().unwrap().detail, "please");
}

#[test]
fn cancelling_works_until_the_charge_is_captured() {
    let mut saga = Saga::new();
    for _ in 0..4 {
        assert!(saga.cancel("x").is_ok(), "{:?}", saga.phase());
        saga = done(&saga);
    }
    assert_eq!(saga.next_action(), Action::Call(Step::Commit));
    assert_eq!(saga.cancel("x"), Err(CancelError::Captured));
    assert_eq!(
        saga.give_up(GiveUp::DeadlinePassed, "x"),
        Err(CancelError::Captured)
    );
    let confirmed = done(&saga);
    assert_eq!(confirmed.cancel("x"), Err(CancelError::Confirmed));
}

#[test]
fn cancelling_twice_keeps_the_first_cause() {
    let first = refused(&done(&Saga::new()), "declined");
    assert_eq!(first.cancel("too late"), Ok(first.clone()));
    let compensated = done(&first);
    assert_eq!(
        compensated.cancellation().unwrap().cause,
        CancellationCause::Refused {
            step: Step::Authorize
        }
    );
    assert_eq!(compensated.cancel("again"), Ok(compensated.clone()));
}

#[test]
fn refusals_that_cannot_be_undone_need_an_operator() {
    let mut saga = Saga::new();
    while saga.next_action() != Action::Call(Step::Commit) {
        saga = done(&saga);
    }
    let stuck = saga
        .record(Outcome::Refused {
            detail: "no reservation".into(),
        })
        .unwrap_err();
    assert_eq!(stuck.action, "commit");
    assert_eq!(stuck.service, Service::Inventory);

    let cancelling = Saga::new().cancel("x").unwrap();
    let stuck = cancelling
        .record(Outcome::Refused {
            detail: "db gone".into(),
        })
        .unwrap_err();
    assert_eq!(stuck.action, "release_stock");
}

#[test]
fn a_finished_saga_ignores_answers() {
    let mut saga = Saga::new();
    while !matches!(saga.next_action(), Action::Finished(_)) {
        saga = done(&saga);
    }
    assert_eq!(done(&saga), saga);
    assert_eq!(refused(&saga, "late"), saga);
}

#[test]
fn a_saga_round_trips_through_json() {
    let saga = refused(&done(&done(&Saga::new())), "label printer on fire");
    let json = serde_json::to_value(&saga).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "phase": "compensating",
            "reached": "ship",
            "next": "cancel_shipment",
            "cancellation": {"cause": "refused", "step": "ship", "detail": "label printer on fire"}
        })
    );
    assert_eq!(serde_json::from_value::<Saga>(json).unwrap(), saga);
    let fresh = serde_json::to_value(Saga::new()).unwrap();
    assert_eq!(
        fresh,
        serde_json::json!({"phase": "running", "step": "reserve"})
    );
}

#[test]
fn actions_name_the_service_they_call() {
    assert_eq!(
        Action::Call(Step::Capture).service(),
        Some(Service::Payment)
    );
    assert_eq!(
        Action::Compensate(Compensation::CancelShipment).service(),
        Some(Service::Shipping)
    );
    assert_eq!(Action::Finished(Ending::Confirmed).service(), None);
}

/// The services as the saga requires them to behave: every call idempotent by order, each
/// compensation works on a step that never happened and leaves a mark that refuses it later.
/// One order of `QUANTITY` units; the test decides what the services refuse.
#[derive(Debug, Default)]
struct Services {
    available: u32,
    reserved: u32,
    shipped: u32,
    received: u32,
    reservation: Held,
    payment: Charge,
    captures: u32,
    refunds: u32,
    shipment: Held,
    decline_payment: bool,
    refuse_shipment: bool,
    refuse_capture: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Held {
    #[default]
    None,
    Taken,
    Undone,
    Committed,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Charge {
    #[default]
    None,
    Authorized,
    Captured,
    Voided,
    Refunded,
}

const QUANTITY: u32 = 3;

impl Services {
    fn with_stock(stock: u32) -> Self {
        Self {
            available: stock,
            received: stock,
            ..Self::default()
        }
    }

    fn refuse(detail: &str) -> Outcome {
        Outcome::Refused {
            detail: detail.into(),
        }
    }

    fn apply(&mut self, action: Action) -> Outcome {
        let outcome = match action {
            Action::Call(step) => self.call(step),
            Action::Compensate(compensation) => self.compensate(compensation),
            Action::Finished(_) => Outcome::Done,
        };
        assert_eq!(
            self.available + self.reserved + self.shipped,
            self.received,
            "stock is conserved"
        );
        outcome
    }

    fn call(&mut self, step: Step) -> Outcome {
        match (step, self.reservation, self.payment, self.shipment) {
            (Step::Reserve, Held::None, ..) if self.available >= QUANTITY => {
                self.available -= QUANTITY;
                self.reserved += QUANTITY;
                self.reservation = Held::Taken;
                Outcome::Done
            }
            (Step::Reserve, Held::None, ..) => Self::refuse("out of stock"),
            (Step::Reserve, Held::Taken | Held::Committed, ..) => Outcome::Done,
            (Step::Reserve, Held::Undone, ..) => Self::refuse("released"),
            (Step::Commit, Held::Taken, ..) => {
                self.reserved -= QUANTITY;
                self.shipped += QUANTITY;
                self.reservation = Held::Committed;
                Outcome::Done
            }
            (Step::Commit, Held::Committed, ..) => Outcome::Done,
            (Step::Commit, ..) => Self::refuse("no reservation"),
            (Step::Authorize, _, Charge::None, _) if self.decline_payment => {
                Self::refuse("declined")
            }
            (Step::Authorize, _, Charge::None, _) => {
                self.payment = Charge::Authorized;
                Outcome::Done
            }
            (Step::Authorize, _, Charge::Authorized | Charge::Captured, _) => Outcome::Done,
            (Step::Authorize, ..) => Self::refuse("voided"),
            (Step::Capture, _, Charge::Authorized, _) if self.refuse_capture => {
                Self::refuse("authorization expired")
            }
            (Step::Capture, _, Charge::Authorized, _) => {
                self.payment = Charge::Captured;
                self.captures += 1;
                Outcome::Done
            }
            (Step::Capture, _, Charge::Captured, _) => Outcome::Done,
            (Step::Capture, ..) => Self::refuse("nothing to capture"),
            (Step::Ship, .., Held::None) if self.refuse_shipment => Self::refuse("no carrier"),
            (Step::Ship, .., Held::None) => {
                self.shipment = Held::Taken;
                Outcome::Done
            }
            (Step::Ship, .., Held::Taken) => Outcome::Done,
            (Step::Ship, ..) => Self::refuse("cancelled"),
        }
    }

    fn compensate(&mut self, compensation: Compensation) -> Outcome {
        match compensation {
            Compensation::ReleaseStock => {
                match self.reservation {
                    Held::Taken => {
                        self.reserved -= QUANTITY;
                        self.available += QUANTITY;
                    }
                    Held::Committed => return Self::refuse("already shipped"),
                    Held::None | Held::Undone => {}
                }
                self.reservation = Held::Undone;
            }
            Compensation::RefundPayment => {
                self.payment = match self.payment {
                    Charge::None | Charge::Voided | Charge::Authorized => Charge::Voided,
                    Charge::Captured => {
                        self.refunds += 1;
                        Charge::Refunded
                    }
                    Charge::Refunded => Charge::Refunded,
                };
            }
            Compensation::CancelShipment => self.shipment = Held::Undone,
        }
        Outcome::Done
    }
}

/// How one call goes, from the saga's side.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// The service did it and the answer arrived.
    Answered,
    /// The request was lost: nothing happened, no answer.
    LostOnTheWay,
    /// The service did it but the answer was lost.
    AnswerLost,
    /// The customer cancels before this call.
    CancelFirst,
}

fn deliveries() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        4 => Just(Delivery::Answered),
        1 => Just(Delivery::LostOnTheWay),
        1 => Just(Delivery::AnswerLost),
        1 => Just(Delivery::CancelFirst),
    ]
}

proptest! {
    /// Whatever the services refuse, whichever answers are lost and whenever the customer
    /// cancels: the saga ends; a confirmed order was charged once, never refunded, and its
    /// stock shipped; a cancelled order holds no stock, no shipment and no net charge; stock is
    /// conserved at every call; and calls that arrive late, after the end, change nothing.
    #[test]
    fn every_saga_ends_consistently(
        stock in 0u32..8,
        decline_payment in any::<bool>(),
        refuse_shipment in any::<bool>(),
        refuse_capture in any::<bool>(),
        script in proptest::collection::vec(deliveries(), 0..40),
        late_calls in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let mut services = Services {
            decline_payment,
            refuse_shipment,
            refuse_capture,
            ..Services::with_stock(stock)
        };
        let mut saga = Saga::new();
        let mut script = script.into_iter();
        let mut requested_cancel = false;
        let mut issued = Vec::new();
        let ending = loop {
            let action = saga.next_action();
            if let Action::Finished(ending) = action {
                break ending;
            }
            if let Action::Call(step) = action {
                issued.push(step);
            }
            match script.next().unwrap_or(Delivery::Answered) {
                Delivery::Answered => {
                    let outcome = services.apply(action);
                    saga = saga.record(outcome).expect("these services never refuse a compensation");
                }
                Delivery::LostOnTheWay => {}
                Delivery::AnswerLost => {
                    services.apply(action);
                }
                Delivery::CancelFirst => {
                    requested_cancel = true;
                    if let Ok(cancelled) = saga.cancel("customer") {
                        saga = cancelled;
                    }
                }
            }
        };
        let (reservation, payment, shipment) =
            (services.reservation, services.payment, services.shipment);
        match ending {
            Ending::Confirmed => {
                prop_assert_eq!(reservation, Held::Committed);
                prop_assert_eq!(payment, Charge::Captured);
                prop_assert_eq!((services.captures, services.refunds), (1, 0));
                prop_assert_eq!(shipment, Held::Taken);
                prop_assert_eq!(services.shipped, QUANTITY);
                prop_assert!(stock >= QUANTITY && !decline_payment && !refuse_shipment && !refuse_capture);
            }
            Ending::Cancelled => {
                prop_assert_eq!(reservation, Held::Undone);
                let charge_undone = matches!(payment, Charge::Voided | Charge::Refunded);
                prop_assert!(charge_undone || payment == Charge::None, "{:?}", payment);
                prop_assert_eq!(payment == Charge::None, !issued.contains(&Step::Authorize));
                prop_assert_eq!(services.captures, services.refunds);
                prop_assert!(matches!(shipment, Held::Undone | Held::None), "{:?}", shipment);
                prop_assert_eq!(shipment == Held::None, !issued.contains(&Step::Ship));
                prop_assert_eq!((services.reserved, services.shipped), (0, 0));
                prop_assert!(
                    requested_cancel || stock < QUANTITY || decline_payment || refuse_shipment || refuse_capture
                );
            }
        }
        // Requests the saga sent may still arrive, late.
        let before = format!("{services:?}");
        for index in late_calls.iter().filter(|_| !issued.is_empty()) {
            let step = *index.get(&issued);
            let outcome = services.apply(Action::Call(step));
            if ending == Ending::Cancelled {
                prop_assert!(matches!(outcome, Outcome::Refused { .. }), "late {:?} taken", step);
            }
        }
        prop_assert_eq!(format!("{services:?}"), before);
    }

    /// However far a saga got, cancelling it (when allowed) ends in `cancelled` after exactly
    /// the compensations of the steps it reached, each once, in reverse order.
    #[test]
    fn cancelling_compensates_each_reached_step_once(steps_done in 0usize..5) {
        let mut saga = Saga::new();
        for _ in 0..steps_done {
            saga = done(&saga);
        }
        let reached = Step::ALL[steps_done];
        match saga.cancel("x") {
            Ok(cancelling) => {
                let compensations: Vec<Compensation> = actions_until_the_end(cancelling)
                    .into_iter()
                    .filter_map(|action| match action {
                        Action::Compensate(compensation) => Some(compensation),
                        _ => None,
                    })
                    .collect();
                let mut expected: Vec<Compensation> = Step::ALL[..=steps_done]
                    .iter()
                    .filter_map(|step| step.compensation())
                    .collect();
                expected.sort();
                expected.dedup();
                prop_assert_eq!(compensations, expected);
            }
            Err(error) => {
                prop_assert_eq!(reached, Step::Commit);
                prop_assert_eq!(error, CancelError::Captured);
            }
        }
    }
}
