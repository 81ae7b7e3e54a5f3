//! Random sequences of reserves, releases, commits and restocks on two connections to one
//! file, with duplicates, conflicting lines and compensations that overtake what they
//! compensate, checked against a model after every step: each call answers as the model
//! says, every SKU keeps `available + reserved + shipped = received = initial + restocks`,
//! and the units reserved and shipped are exactly those of the orders reserved and committed
//! (so each order's effect happened at most once).

use super::{Fixture, catalog, lines, order, sku};
use crate::{
    Inventory, InventoryError, Reservation, ReservationState, ReserveOutcome, ReservedLine,
    Shortage, Units,
};
use orderly_sql::RusqliteSql;
use orders_core::LineItem;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The test catalogue's products (in the stock's order) and initial stock.
const SKUS: [(&str, u64); 3] = [("Gadget", 5), ("Sold Out", 0), ("Widget", 10)];
const ORDERS: usize = 5;

#[derive(Debug, Clone)]
enum Action {
    /// Reserve an order's lines: `variant` 0 as planned, 1 the same lines respelt and
    /// reordered (the same reservation), 2 with one more unit on its first line (a conflict
    /// once the order holds its lines).
    Reserve {
        connection: usize,
        order: usize,
        variant: u8,
    },
    Release {
        connection: usize,
        order: usize,
    },
    Commit {
        connection: usize,
        order: usize,
    },
    Restock {
        sku: usize,
        units: u32,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..2usize, 0..ORDERS, 0..3u8)
            .prop_map(|(connection, order, variant)| Action::Reserve { connection, order, variant }),
        2 => (0..2usize, 0..ORDERS).prop_map(|(connection, order)| Action::Release { connection, order }),
        2 => (0..2usize, 0..ORDERS).prop_map(|(connection, order)| Action::Commit { connection, order }),
        1 => (0..SKUS.len(), 1..4u32).prop_map(|(sku, units)| Action::Restock { sku, units }),
    ]
}

/// Each order's planned lines: 1 to 3 distinct SKUs (by index), 1 to 6 units each.
fn plans() -> impl Strategy<Value = Vec<BTreeMap<usize, u32>>> {
    proptest::collection::vec(
        proptest::collection::btree_map(0..SKUS.len(), 1..=6u32, 1..=3),
        ORDERS,
    )
}

/// What the model knows of an order.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    Reserved(BTreeMap<usize, u32>),
    /// Released: the lines it had held (empty for a tombstone).
    Released(BTreeMap<usize, u32>),
    Committed(BTreeMap<usize, u32>),
}

struct World {
    fixture: Fixture,
    connections: [Inventory<RusqliteSql>; 2],
    plans: Vec<BTreeMap<usize, u32>>,
    /// Per SKU index: (available, reserved, shipped, received).
    stock: [(u64, u64, u64, u64); 3],
    restocked: [u64; 3],
    orders: BTreeMap<usize, Held>,
}

impl World {
    fn new(plans: Vec<BTreeMap<usize, u32>>) -> Self {
        let fixture = Fixture::new();
        let connections = [fixture.another(catalog()), fixture.another(catalog())];
        Self {
            fixture,
            connections,
            plans,
            stock: SKUS.map(|(_, initial)| (initial, 0, 0, initial)),
            restocked: [0; 3],
            orders: BTreeMap::new(),
        }
    }

    fn reservation(&self, order_index: usize, state: ReservationState) -> Reservation {
        let lines = match &self.orders[&order_index] {
            Held::Reserved(lines) | Held::Released(lines) | Held::Committed(lines) => lines,
        };
        Reservation {
            order_id: order(&format!("o{order_index}")),
            state,
            lines: lines
                .iter()
                .map(|(index, units)| ReservedLine {
                    sku: sku(SKUS[*index].0),
                    units: Units::new(*units).unwrap(),
                })
                .collect(),
        }
    }

    /// The order's lines as a caller sends them for `variant`.
    fn request(&self, order_index: usize, variant: u8) -> (BTreeMap<usize, u32>, Vec<LineItem>) {
        let mut plan = self.plans[order_index].clone();
        if variant == 2 {
            *plan.values_mut().next().unwrap() += 1;
        }
        let mut pairs: Vec<(String, i64)> = plan
            .iter()
            .map(|(index, units)| (SKUS[*index].0.to_owned(), i64::from(*units)))
            .collect();
        if variant == 1 {
            pairs.reverse();
            for (name, _) in &mut pairs {
                *name = name.to_uppercase();
            }
        }
        let borrowed: Vec<(&str, i64)> = pairs.iter().map(|(n, u)| (n.as_str(), *u)).collect();
        (plan, lines(&borrowed))
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::Reserve {
                connection,
                order: index,
                variant,
            } => {
                let (plan, request) = self.request(index, variant);
                let got =
                    self.connections[connection].reserve(&order(&format!("o{index}")), &request);
                match self.orders.get(&index).cloned() {
                    Some(Held::Released(_)) => {
                        assert!(matches!(got, Err(InventoryError::Released(_))), "{got:?}");
                    }
                    Some(Held::Reserved(held) | Held::Committed(held)) if held != plan => {
                        assert!(
                            matches!(got, Err(InventoryError::LinesConflict(_))),
                            "{got:?}"
                        );
                    }
                    Some(Held::Reserved(_)) => assert_eq!(
                        got.unwrap(),
                        ReserveOutcome::Reserved(
                            self.reservation(index, ReservationState::Reserved)
                        )
                    ),
                    Some(Held::Committed(_)) => assert_eq!(
                        got.unwrap(),
                        ReserveOutcome::Reserved(
                            self.reservation(index, ReservationState::Committed)
                        )
                    ),
                    None => {
                        let short = plan.iter().find(|(sku_index, units)| {
                            self.stock[**sku_index].0 < u64::from(**units)
                        });
                        if let Some((sku_index, units)) = short {
                            assert_eq!(
                                got.unwrap(),
                                ReserveOutcome::OutOfStock(Shortage {
                                    sku: sku(SKUS[*sku_index].0),
                                    requested: Units::new(*units).unwrap(),
                                    available: self.stock[*sku_index].0,
                                })
                            );
                        } else {
                            for (sku_index, units) in &plan {
                                let level = &mut self.stock[*sku_index];
                                level.0 -= u64::from(*units);
                                level.1 += u64::from(*units);
                            }
                            self.orders.insert(index, Held::Reserved(plan));
                            assert_eq!(
                                got.unwrap(),
                                ReserveOutcome::Reserved(
                                    self.reservation(index, ReservationState::Reserved)
                                )
                            );
                        }
                    }
                }
            }
            Action::Release {
                connection,
                order: index,
            } => {
                let got = self.connections[connection].release(&order(&format!("o{index}")));
                match self.orders.get(&index).cloned() {
                    Some(Held::Committed(_)) => {
                        assert!(matches!(got, Err(InventoryError::Committed(_))), "{got:?}");
                        return;
                    }
                    Some(Held::Reserved(held)) => {
                        for (sku_index, units) in &held {
                            let level = &mut self.stock[*sku_index];
                            level.0 += u64::from(*units);
                            level.1 -= u64::from(*units);
                        }
                        self.orders.insert(index, Held::Released(held));
                    }
                    Some(Held::Released(_)) => {}
                    None => {
                        self.orders.insert(index, Held::Released(BTreeMap::new()));
                    }
                }
                assert_eq!(
                    got.unwrap(),
                    self.reservation(index, ReservationState::Released)
                );
            }
            Action::Commit {
                connection,
                order: index,
            } => {
                let got = self.connections[connection].commit(&order(&format!("o{index}")));
                match self.orders.get(&index).cloned() {
                    None => {
                        assert!(
                            matches!(got, Err(InventoryError::UnknownOrder(_))),
                            "{got:?}"
                        );
                    }
                    Some(Held::Released(_)) => {
                        assert!(matches!(got, Err(InventoryError::Released(_))), "{got:?}");
                    }
                    Some(Held::Reserved(held)) => {
                        for (sku_index, units) in &held {
                            let level = &mut self.stock[*sku_index];
                            level.1 -= u64::from(*units);
                            level.2 += u64::from(*units);
                        }
                        self.orders.insert(index, Held::Committed(held));
                        assert_eq!(
                            got.unwrap(),
                            self.reservation(index, ReservationState::Committed)
                        );
                    }
                    Some(Held::Committed(_)) => {
                        assert_eq!(
                            got.unwrap(),
                            self.reservation(index, ReservationState::Committed)
                        );
                    }
                }
            }
            Action::Restock { sku: index, units } => {
                let level = self
                    .fixture
                    .inventory
                    .restock(&sku(SKUS[index].0), Units::new(units).unwrap())
                    .unwrap();
                let model = &mut self.stock[index];
                model.0 += u64::from(units);
                model.3 += u64::from(units);
                self.restocked[index] += u64::from(units);
                assert_eq!(
                    (
                        level.available,
                        level.reserved,
                        level.shipped,
                        level.received
                    ),
                    *model
                );
            }
        }
    }

    fn check(&self) {
        for (index, (name, initial)) in SKUS.iter().enumerate() {
            let Ok(counts) = self.fixture.inspect.query_row(
                "SELECT available, reserved, shipped, received FROM inventory_stock WHERE sku = ?1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            ) else {
                // Not seeded yet: nothing has touched the stock.
                assert_eq!(self.stock[index], (*initial, 0, 0, *initial));
                continue;
            };
            assert_eq!(counts, self.stock[index], "{name}");
            let (available, reserved, shipped, received): (u64, u64, u64, u64) = counts;
            assert_eq!(available + reserved + shipped, received, "{name}");
            assert_eq!(received, initial + self.restocked[index], "{name}");
            // Units held and shipped are those of the orders holding and shipped, once each.
            let (mut holding, mut sent) = (0, 0);
            for held in self.orders.values() {
                let units =
                    |lines: &BTreeMap<usize, u32>| lines.get(&index).map_or(0, |u| u64::from(*u));
                match held {
                    Held::Reserved(lines) => holding += units(lines),
                    Held::Committed(lines) => sent += units(lines),
                    Held::Released(_) => {}
                }
            }
            assert_eq!(reserved, holding, "{name}");
            assert_eq!(shipped, sent, "{name}");
        }
        for index in 0..ORDERS {
            let stored = self
                .fixture
                .inventory
                .reservation(&order(&format!("o{index}")))
                .unwrap();
            let expected = self.orders.get(&index).map(|held| {
                let state = match held {
                    Held::Reserved(_) => ReservationState::Reserved,
                    Held::Released(_) => ReservationState::Released,
                    Held::Committed(_) => ReservationState::Committed,
                };
                self.reservation(index, state)
            });
            assert_eq!(stored, expected, "o{index}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn stock_is_conserved_and_each_order_moves_it_at_most_once(
        plans in plans(),
        actions in proptest::collection::vec(action(), 1..60),
    ) {
        let mut world = World::new(plans);
        for action in &actions {
            world.act(action);
            world.check();
        }
    }
}
