//! Random sequences of authorizations (some declined, some conflicting), captures, voids,
//! refunds and compensations on two connections to one file, duplicates and compensations
//! that overtake the authorization included, checked against a model after every step: each
//! call answers as the model says, an order is charged at most once and in full, never
//! refunded more than it was charged, and an order once compensated stays uncharged
//! (`charged - refunded = 0`) whatever comes after.

use super::{DECLINED_CARD, Fixture, GOOD_CARD, card, cents, order};
use crate::{
    Authorization, DeclineReason, Operation, Payment, PaymentError, PaymentPolicy, PaymentState,
    Payments,
};
use orderly_sql::RusqliteSql;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ORDERS: usize = 4;
/// Amounts an order may be for; the last is over the default limit.
const AMOUNTS: [u64; 3] = [500, 2_000, 1_500_000];

#[derive(Debug, Clone, Copy)]
enum Call {
    /// Authorize the order's planned amount and card; with `conflicting`, one cent more.
    Authorize {
        conflicting: bool,
    },
    Capture,
    Void,
    Refund,
    Compensate,
}

#[derive(Debug, Clone, Copy)]
struct Action {
    connection: usize,
    order: usize,
    call: Call,
}

fn action() -> impl Strategy<Value = Action> {
    let call = prop_oneof![
        3 => proptest::bool::weighted(0.25).prop_map(|conflicting| Call::Authorize { conflicting }),
        2 => Just(Call::Capture),
        1 => Just(Call::Void),
        1 => Just(Call::Refund),
        2 => Just(Call::Compensate),
    ];
    (0..2usize, 0..ORDERS, call).prop_map(|(connection, order, call)| Action {
        connection,
        order,
        call,
    })
}

/// Each order's amount and whether its card is the declining test card.
fn plans() -> impl Strategy<Value = Vec<(u64, bool)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(AMOUNTS.to_vec()),
            proptest::bool::weighted(0.2),
        ),
        ORDERS,
    )
}

/// What the model knows of an order's payment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Known {
    state: PaymentState,
    amount: Option<u64>,
    decline: Option<DeclineReason>,
}

struct World {
    fixture: Fixture,
    connections: [Payments<RusqliteSql>; 2],
    plans: Vec<(u64, bool)>,
    orders: BTreeMap<usize, Known>,
    /// Each order's payment id, once it has a payment.
    ids: BTreeMap<usize, String>,
    compensated: Vec<bool>,
}

impl World {
    fn new(plans: Vec<(u64, bool)>) -> Self {
        let fixture = Fixture::new();
        let connections = [
            fixture.another(PaymentPolicy::default()),
            fixture.another(PaymentPolicy::default()),
        ];
        Self {
            fixture,
            connections,
            plans,
            orders: BTreeMap::new(),
            ids: BTreeMap::new(),
            compensated: vec![false; ORDERS],
        }
    }

    /// Checks a payment an operation returned against the model, and its id against the
    /// order's first.
    fn expect_payment(&mut self, index: usize, got: Result<Payment, PaymentError>) {
        let payment = got.unwrap();
        let known = self.orders[&index];
        assert_eq!(payment.state, known.state);
        assert_eq!(payment.amount.map(|amount| amount.cents()), known.amount);
        assert_eq!(payment.decline, known.decline);
        let id = self
            .ids
            .entry(index)
            .or_insert_with(|| payment.id.to_string());
        assert_eq!(payment.id.as_str(), id);
    }

    fn expect_illegal(
        &self,
        index: usize,
        operation: Operation,
        got: Result<Payment, PaymentError>,
    ) {
        match (self.orders.get(&index), got) {
            (None, Err(PaymentError::UnknownOrder(_))) => {}
            (
                Some(known),
                Err(PaymentError::IllegalTransition {
                    operation: op,
                    state,
                    ..
                }),
            ) => {
                assert_eq!((op, state), (operation, known.state));
            }
            (known, got) => panic!("expected {operation} to be refused in {known:?}, got {got:?}"),
        }
    }

    fn act(&mut self, action: Action) {
        let index = action.order;
        let id = order(&format!("o{index}"));
        let payments = &self.connections[action.connection];
        let state = self.orders.get(&index).map(|known| known.state);
        match action.call {
            Call::Authorize { conflicting } => {
                let (planned, declining) = self.plans[index];
                let amount = planned + u64::from(conflicting);
                let number = if declining { DECLINED_CARD } else { GOOD_CARD };
                let got = payments.authorize(&id, cents(amount), &card(number));
                match self.orders.get(&index).copied() {
                    None => {
                        let decline = if declining {
                            Some(DeclineReason::CardDeclined)
                        } else if amount > 1_000_000 {
                            Some(DeclineReason::AmountOverLimit)
                        } else {
                            None
                        };
                        let state = match decline {
                            None => PaymentState::Authorized,
                            Some(_) => PaymentState::Declined,
                        };
                        self.orders.insert(
                            index,
                            Known {
                                state,
                                amount: Some(amount),
                                decline,
                            },
                        );
                        self.expect_authorization(index, got);
                    }
                    Some(Known {
                        state:
                            state @ (PaymentState::Voided
                            | PaymentState::Refunded
                            | PaymentState::Cancelled),
                        ..
                    }) => {
                        assert!(
                            matches!(got, Err(PaymentError::Closed { state: closed, .. }) if closed == state),
                            "{got:?}"
                        );
                    }
                    Some(known) if known.amount != Some(amount) => {
                        assert!(matches!(got, Err(PaymentError::Conflict(_))), "{got:?}");
                    }
                    Some(_) => self.expect_authorization(index, got),
                }
            }
            Call::Capture => {
                let got = payments.capture(&id);
                match state {
                    Some(PaymentState::Authorized | PaymentState::Captured) => {
                        self.moved(index, PaymentState::Captured);
                        self.expect_payment(index, got);
                    }
                    _ => self.expect_illegal(index, Operation::Capture, got),
                }
            }
            Call::Void => {
                let got = payments.void(&id);
                match state {
                    Some(PaymentState::Authorized | PaymentState::Voided) => {
                        self.moved(index, PaymentState::Voided);
                        self.expect_payment(index, got);
                    }
                    _ => self.expect_illegal(index, Operation::Void, got),
                }
            }
            Call::Refund => {
                let got = payments.refund(&id);
                match state {
                    Some(PaymentState::Captured | PaymentState::Refunded) => {
                        self.moved(index, PaymentState::Refunded);
                        self.expect_payment(index, got);
                    }
                    _ => self.expect_illegal(index, Operation::Refund, got),
                }
            }
            Call::Compensate => {
                let got = payments.compensate(&id);
                match state {
                    None => {
                        self.orders.insert(
                            index,
                            Known {
                                state: PaymentState::Cancelled,
                                amount: None,
                                decline: None,
                            },
                        );
                    }
                    Some(PaymentState::Authorized) => self.moved(index, PaymentState::Voided),
                    Some(PaymentState::Captured) => self.moved(index, PaymentState::Refunded),
                    Some(_) => {}
                }
                self.compensated[index] = true;
                self.expect_payment(index, got);
            }
        }
    }

    fn moved(&mut self, index: usize, state: PaymentState) {
        self.orders.get_mut(&index).unwrap().state = state;
    }

    fn expect_authorization(&mut self, index: usize, got: Result<Authorization, PaymentError>) {
        let known = self.orders[&index];
        match (known.state, got.unwrap()) {
            (
                PaymentState::Authorized | PaymentState::Captured,
                Authorization::Authorized { payment_id },
            ) => {
                let id = self
                    .ids
                    .entry(index)
                    .or_insert_with(|| payment_id.to_string());
                assert_eq!(payment_id.as_str(), id);
            }
            (PaymentState::Declined, Authorization::Declined { reason }) => {
                assert_eq!(Some(reason), known.decline);
            }
            (state, got) => panic!("o{index} is {state}, yet authorizing answered {got:?}"),
        }
    }

    fn check(&self) {
        let mut rows = self
            .fixture
            .inspect
            .prepare(
                "SELECT order_id, state, amount_cents, captured_cents, refunded_cents
                FROM payment_intents",
            )
            .unwrap();
        let stored: BTreeMap<String, (String, Option<u64>, u64, u64)> = rows
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored.len(), self.orders.len());
        for (index, known) in &self.orders {
            let (state, amount, captured, refunded) = &stored[&format!("o{index}")];
            assert_eq!(state, known.state.as_str(), "o{index}");
            assert_eq!(*amount, known.amount, "o{index}");
            // Charged once, in full, or not at all; refunded all of it or nothing.
            let charged = matches!(known.state, PaymentState::Captured | PaymentState::Refunded);
            assert_eq!(
                *captured,
                if charged { amount.unwrap() } else { 0 },
                "o{index}"
            );
            let refund = known.state == PaymentState::Refunded;
            assert_eq!(*refunded, if refund { *captured } else { 0 }, "o{index}");
            if self.compensated[*index] {
                assert_eq!(
                    captured - refunded,
                    0,
                    "o{index} was compensated yet is charged"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn orders_are_charged_at_most_once_and_compensations_leave_them_uncharged(
        plans in plans(),
        actions in proptest::collection::vec(action(), 1..50),
    ) {
        let mut world = World::new(plans);
        for action in actions {
            world.act(action);
            world.check();
        }
    }
}
