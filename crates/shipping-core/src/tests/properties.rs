//! Random sequences of creations (some with other lines), status updates and cancellations on
//! two connections to one file, as time passes, duplicates and cancellations that overtake
//! their creation included, checked against a model after every step: each call answers as
//! the model says; a shipment's status only moves along label_created → in_transit →
//! delivered or label_created → cancelled; a cancelled order never gets a shipment; and a
//! shipment's tracking number, label and creation time never change.

use super::{Fixture, SEED, lines, order};
use crate::{
    CancelOutcome, ShipTo, Shipment, ShipmentStatus, Shipping, ShippingError, StatusUpdate,
};
use orderly_sql::RusqliteSql;
use orders_core::{LineItem, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeMap;

const ORDERS: usize = 4;

#[derive(Debug, Clone, Copy)]
enum Call {
    /// Create the order's shipment: its own lines, or (`other`) different ones.
    Create {
        other: bool,
    },
    Update(StatusUpdate),
    Cancel,
}

#[derive(Debug, Clone, Copy)]
struct Action {
    connection: usize,
    order: usize,
    call: Call,
    /// Milliseconds that pass before the call.
    wait: u64,
}

fn action() -> impl Strategy<Value = Action> {
    let call = prop_oneof![
        3 => proptest::bool::weighted(0.2).prop_map(|other| Call::Create { other }),
        2 => Just(Call::Update(StatusUpdate::InTransit)),
        2 => Just(Call::Update(StatusUpdate::Delivered)),
        2 => Just(Call::Cancel),
    ];
    (0..2usize, 0..ORDERS, call, 0..1_000u64).prop_map(|(connection, order, call, wait)| Action {
        connection,
        order,
        call,
        wait,
    })
}

/// What the model knows of an order.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    Tombstone,
    Shipped {
        status: ShipmentStatus,
        other_lines: bool,
        created_at: Timestamp,
        updated_at: Timestamp,
    },
}

struct World {
    fixture: Fixture,
    connections: [Shipping<RusqliteSql>; 2],
    now: u64,
    orders: BTreeMap<usize, Known>,
    /// Each shipment as first created, to check what must never change.
    first: BTreeMap<usize, Shipment>,
}

fn order_lines(index: usize, other: bool) -> Vec<LineItem> {
    let quantity = i64::try_from(index).unwrap() + 1;
    if other {
        lines(&[("Pizza", quantity), ("Taco", 1)])
    } else {
        lines(&[("Pizza", quantity)])
    }
}

impl World {
    fn new() -> Self {
        let fixture = Fixture::new();
        let connections = [fixture.another(SEED), fixture.another(SEED)];
        Self {
            fixture,
            connections,
            now: 1_000,
            orders: BTreeMap::new(),
            first: BTreeMap::new(),
        }
    }

    /// Checks a shipment an operation returned against the model.
    fn expect_shipment(&mut self, index: usize, got: Result<Shipment, ShippingError>) {
        let shipment = got.unwrap();
        let Some(Known::Shipped {
            status,
            other_lines,
            created_at,
            updated_at,
        }) = self.orders.get(&index).cloned()
        else {
            panic!("o{index} has no shipment in the model, yet got {shipment:?}");
        };
        assert_eq!(shipment.status, status);
        assert_eq!(shipment.lines, order_lines(index, other_lines));
        assert_eq!(
            (shipment.created_at, shipment.updated_at),
            (created_at, updated_at)
        );
        let first = self.first.entry(index).or_insert_with(|| shipment.clone());
        assert_eq!(
            (
                &shipment.tracking_number,
                &shipment.label,
                shipment.created_at
            ),
            (&first.tracking_number, &first.label, first.created_at)
        );
    }

    fn set_status(&mut self, index: usize, to: ShipmentStatus, at: Timestamp) {
        if let Some(Known::Shipped {
            status, updated_at, ..
        }) = self.orders.get_mut(&index)
        {
            *status = to;
            *updated_at = at;
        }
    }

    fn act(&mut self, action: Action) {
        self.now += action.wait;
        let now = Timestamp(self.now);
        let index = action.order;
        let id = order(&format!("o{index}"));
        let shipping = &self.connections[action.connection];
        let known = self.orders.get(&index).cloned();
        match action.call {
            Call::Create { other } => {
                let got = shipping.create_shipment(
                    &id,
                    &order_lines(index, other),
                    &ShipTo::default(),
                    now,
                );
                match known {
                    None => {
                        self.orders.insert(
                            index,
                            Known::Shipped {
                                status: ShipmentStatus::LabelCreated,
                                other_lines: other,
                                created_at: now,
                                updated_at: now,
                            },
                        );
                        self.expect_shipment(index, got);
                    }
                    Some(
                        Known::Tombstone
                        | Known::Shipped {
                            status: ShipmentStatus::Cancelled,
                            ..
                        },
                    ) => assert!(matches!(got, Err(ShippingError::Cancelled(_))), "{got:?}"),
                    Some(Known::Shipped { other_lines, .. }) if other_lines != other => {
                        assert!(matches!(got, Err(ShippingError::Conflict(_))), "{got:?}");
                    }
                    Some(Known::Shipped { .. }) => self.expect_shipment(index, got),
                }
            }
            Call::Update(update) => {
                let got = shipping.update_status(&id, update, now);
                let to = update.status();
                let from = match update {
                    StatusUpdate::InTransit => ShipmentStatus::LabelCreated,
                    StatusUpdate::Delivered => ShipmentStatus::InTransit,
                };
                match known {
                    None | Some(Known::Tombstone) => {
                        assert!(
                            matches!(got, Err(ShippingError::UnknownOrder(_))),
                            "{got:?}"
                        );
                    }
                    Some(Known::Shipped { status, .. }) if status == to => {
                        self.expect_shipment(index, got);
                    }
                    Some(Known::Shipped { status, .. }) if status == from => {
                        self.set_status(index, to, now);
                        self.expect_shipment(index, got);
                    }
                    Some(Known::Shipped { status, .. }) => assert!(
                        matches!(
                            got,
                            Err(ShippingError::IllegalTransition { from: at, to: asked, .. })
                                if at == status && asked == to
                        ),
                        "{got:?}"
                    ),
                }
            }
            Call::Cancel => {
                let got = shipping.cancel(&id, now);
                match known {
                    None | Some(Known::Tombstone) => {
                        self.orders.insert(index, Known::Tombstone);
                        assert_eq!(got.unwrap(), CancelOutcome::NothingShipped);
                    }
                    Some(Known::Shipped {
                        status: status @ (ShipmentStatus::InTransit | ShipmentStatus::Delivered),
                        ..
                    }) => assert!(
                        matches!(
                            got,
                            Err(ShippingError::TooLateToCancel { status: at, .. }) if at == status
                        ),
                        "{got:?}"
                    ),
                    Some(Known::Shipped { status, .. }) => {
                        if status == ShipmentStatus::LabelCreated {
                            self.set_status(index, ShipmentStatus::Cancelled, now);
                        }
                        match got.unwrap() {
                            CancelOutcome::Cancelled(shipment) => {
                                self.expect_shipment(index, Ok(shipment));
                            }
                            CancelOutcome::NothingShipped => panic!("o{index} had a shipment"),
                        }
                    }
                }
            }
        }
    }

    /// The database agrees with the model, and every stored status is one its previous status
    /// may move to.
    fn check(&self, previous: &mut BTreeMap<usize, ShipmentStatus>) {
        let mut tracking_numbers = Vec::new();
        for index in 0..ORDERS {
            let stored = self
                .fixture
                .shipping
                .get(&order(&format!("o{index}")))
                .unwrap();
            match (self.orders.get(&index), stored) {
                (None | Some(Known::Tombstone), None) => {}
                (Some(Known::Shipped { status, .. }), Some(shipment)) => {
                    assert_eq!(shipment.status, *status, "o{index}");
                    assert_eq!(
                        &shipment.tracking_number,
                        &self.first[&index].tracking_number
                    );
                    tracking_numbers.push(shipment.tracking_number);
                    if let Some(before) = previous.insert(index, *status) {
                        let allowed = before == *status
                            || matches!(
                                (before, *status),
                                (ShipmentStatus::LabelCreated, ShipmentStatus::InTransit)
                                    | (ShipmentStatus::InTransit, ShipmentStatus::Delivered)
                                    | (ShipmentStatus::LabelCreated, ShipmentStatus::Cancelled)
                            );
                        assert!(allowed, "o{index} went from {before} to {status}");
                    }
                }
                (known, stored) => {
                    panic!("o{index}: the model has {known:?}, the database {stored:?}")
                }
            }
        }
        let count = tracking_numbers.len();
        tracking_numbers.sort();
        tracking_numbers.dedup();
        assert_eq!(
            tracking_numbers.len(),
            count,
            "tracking numbers are not unique"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn shipments_move_forward_and_cancelled_orders_never_ship(
        actions in proptest::collection::vec(action(), 1..50),
    ) {
        let mut world = World::new();
        let mut previous = BTreeMap::new();
        for action in actions {
            world.act(action);
            world.check(&mut previous);
        }
    }
}
