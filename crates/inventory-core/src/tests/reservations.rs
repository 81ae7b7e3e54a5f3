//! Reserving, releasing and committing, one order at a time and concurrently.

use super::{Fixture, catalog, lines, order, sku};
use crate::{
    InventoryError, Reservation, ReservationState, ReserveOutcome, ReservedLine, Shortage, Units,
};
use orders_core::LineItem;

fn held(pairs: &[(&str, u32)]) -> Vec<ReservedLine> {
    pairs
        .iter()
        .map(|(name, units)| ReservedLine {
            sku: sku(name),
            units: Units::new(*units).unwrap(),
        })
        .collect()
}

fn reservation(id: &str, state: ReservationState, pairs: &[(&str, u32)]) -> Reservation {
    Reservation {
        order_id: order(id),
        state,
        lines: held(pairs),
    }
}

#[test]
fn reserving_takes_every_line_as_the_catalogue_spells_it() {
    let fixture = Fixture::new();
    let outcome = fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("WIDGET", 3), ("gadget", 2)]))
        .unwrap();
    let expected = reservation(
        "o1",
        ReservationState::Reserved,
        &[("Gadget", 2), ("Widget", 3)],
    );
    assert_eq!(outcome, ReserveOutcome::Reserved(expected.clone()));
    assert_eq!(fixture.counts("Widget"), (7, 3, 0, 10));
    assert_eq!(fixture.counts("Gadget"), (3, 2, 0, 5));
    assert_eq!(
        fixture.inventory.reservation(&order("o1")).unwrap(),
        Some(expected)
    );
    assert_eq!(fixture.inventory.reservation(&order("o2")).unwrap(), None);
}

#[test]
fn a_repeated_reserve_returns_the_same_reservation_and_takes_nothing() {
    let fixture = Fixture::new();
    let first = fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("Widget", 3), ("Gadget", 2)]))
        .unwrap();
    // The same lines, in another order and spelling.
    let again = fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("gadget", 2), ("widget", 3)]))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(fixture.counts("Widget"), (7, 3, 0, 10));
    assert_eq!(fixture.counts("Gadget"), (3, 2, 0, 5));
}

#[test]
fn lines_for_one_product_are_added_up() {
    let fixture = Fixture::new();
    let outcome = fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("Widget", 2), ("WIDGET", 3)]))
        .unwrap();
    assert_eq!(
        outcome,
        ReserveOutcome::Reserved(reservation(
            "o1",
            ReservationState::Reserved,
            &[("Widget", 5)]
        ))
    );
    // The same total in one line is the same reservation.
    assert_eq!(
        fixture
            .inventory
            .reserve(&order("o1"), &lines(&[("widget", 5)]))
            .unwrap(),
        outcome
    );
    assert_eq!(fixture.counts("Widget"), (5, 5, 0, 10));
}

#[test]
fn a_reserve_of_other_lines_for_the_same_order_conflicts() {
    let fixture = Fixture::new();
    fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("Widget", 3)]))
        .unwrap();
    for other in [
        lines(&[("Widget", 4)]),
        lines(&[("Widget", 3), ("Gadget", 1)]),
        lines(&[("Gadget", 3)]),
    ] {
        assert!(matches!(
            fixture.inventory.reserve(&order("o1"), &other),
            Err(InventoryError::LinesConflict(id)) if id == order("o1")
        ));
    }
    assert_eq!(fixture.counts("Widget"), (7, 3, 0, 10));
    assert_eq!(fixture.counts("Gadget"), (5, 0, 0, 5));
}

#[test]
fn a_line_out_of_stock_takes_nothing_from_the_others() {
    let fixture = Fixture::new();
    let outcome = fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("Widget", 3), ("Gadget", 6)]))
        .unwrap();
    assert_eq!(
        outcome,
        ReserveOutcome::OutOfStock(Shortage {
            sku: sku("Gadget"),
            requested: Units::new(6).unwrap(),
            available: 5,
        })
    );
    assert_eq!(fixture.counts("Widget"), (10, 0, 0, 10));
    assert_eq!(fixture.inventory.reservation(&order("o1")).unwrap(), None);

    // Not a state: once restocked, the same order reserves.
    fixture
        .inventory
        .restock(&sku("Gadget"), Units::new(1).unwrap())
        .unwrap();
    assert!(matches!(
        fixture
            .inventory
            .reserve(&order("o1"), &lines(&[("Widget", 3), ("Gadget", 6)])),
        Ok(ReserveOutcome::Reserved(_))
    ));
    assert_eq!(fixture.counts("Gadget"), (0, 6, 0, 6));
}

#[test]
fn a_reserve_that_meets_stock_another_instance_just_seeded_goes_ahead() {
    let fixture = Fixture::new();
    let racing = fixture.racing_seeder();
    assert!(matches!(
        racing.reserve(&order("o1"), &lines(&[("Widget", 2)])),
        Ok(ReserveOutcome::Reserved(_))
    ));
    assert_eq!(fixture.counts("Widget"), (8, 2, 0, 10));
}

#[test]
fn unknown_products_and_bad_line_counts_are_refused() {
    let fixture = Fixture::new();
    assert!(matches!(
        fixture
            .inventory
            .reserve(&order("o1"), &lines(&[("Widget", 1), ("Unobtainium", 1)])),
        Err(InventoryError::UnknownSku(name)) if name == "Unobtainium"
    ));
    assert_eq!(fixture.counts("Widget"), (10, 0, 0, 10));
    assert!(matches!(
        fixture.inventory.reserve(&order("o1"), &[]),
        Err(InventoryError::InvalidLines { lines: 0 })
    ));
    let too_many: Vec<LineItem> = lines(&[("Widget", 1)])
        .into_iter()
        .cycle()
        .take(LineItem::MAX_PER_ORDER + 1)
        .collect();
    assert!(matches!(
        fixture.inventory.reserve(&order("o1"), &too_many),
        Err(InventoryError::InvalidLines { lines: 51 })
    ));
    assert_eq!(fixture.inventory.reservation(&order("o1")).unwrap(), None);
}

#[test]
fn releasing_gives_the_units_back_once() {
    let fixture = Fixture::new();
    fixture
        .inventory
        .reserve(&order("o1"), &lines(&[("Widget", 3), ("Gadget", 2)]))
        .unwrap();
    let released = fixture.inventory.release(&order("o1")).unwrap();
    assert_eq!(
        released,
        reservation(
            "o1",
            ReservationState::Released,
            &[("Gadget", 2), ("Widget", 3)]
        )
    );
    assert_eq!(fixture.inventory.release(&order("o1")).unwrap(), released);
    assert_eq!(fixture.counts("Widget"), (10, 0, 0, 10));
    assert_eq!(fixture.counts("Gadget"), (5, 0, 0, 5));
    // A reserve redelivered after the release is refused: the compensation stands.
    assert!(matches!(
        fixture
            .inventory
            .reserve(&order("o1"), &lines(&[("Widget", 3), ("Gadget", 2)])),
        Err(InventoryError::Released(_))
    ));
    assert!(matches!(
        fixture.inventory.commit(&order("o1")),
        Err(InventoryError::Released(_))
    ));
    assert_eq!(fixture.counts("Widget"), (10, 0, 0, 10));
}

#[test]
fn a_release_that_overtakes_its_reserve_wins() {
    let fixture = Fixture::new();
    fixture.inventory.seed().unwrap();
    let tombstone = fixture.inventory.release(&order("late")).unwrap();
    assert_eq!(
        tombstone,
        reservation("late", ReservationState::Released, &[])
    );
    assert_eq!(
        fixture.inventory.release(&order("late")).unwrap(),
        tombstone
    );
    assert!(matches!(
        fixture.inventory.reserve(&order("late"), &lines(&[("Widget", 1)])),
        Err(InventoryError::Released(id)) if id == order("late")
    ));
    assert_eq!(fixture.counts("Widget"), (10, 0, 0, 10));
    assert_eq!(
        fixture.inventory.reservation(&order("late")).unwrap(),
        Some(tombstone)
    );
}

#[test]
fn committing_ships_the_units_once() {
    let fixture = Fixture::new();
    let reserved = lines(&[("Widget", 3)]);
    fixture.inventory.reserve(&order("o1"), &reserved).unwrap();
    let committed = fixture.inventory.commit(&order("o1")).unwrap();
    assert_eq!(
        committed,
        reservation("o1", ReservationState::Committed, &[("Widget", 3)])
    );
    assert_eq!(fixture.inventory.commit(&order("o1")).unwrap(), committed);
    assert_eq!(fixture.counts("Widget"), (7, 0, 3, 10));
    // A redelivered reserve answers as the first did, with the state it is in now.
    assert_eq!(
        fixture.inventory.reserve(&order("o1"), &reserved).unwrap(),
        ReserveOutcome::Reserved(committed)
    );
    assert!(matches!(
        fixture.inventory.release(&order("o1")),
        Err(InventoryError::Committed(_))
    ));
    assert!(matches!(
        fixture.inventory.commit(&order("never")),
        Err(InventoryError::UnknownOrder(_))
    ));
    assert_eq!(
        fixture.inventory.reservation(&order("never")).unwrap(),
        None
    );
    assert_eq!(fixture.counts("Widget"), (7, 0, 3, 10));
}

/// Threads on their own connections reserve one product for overlapping orders (each order
/// asked twice): the stock is never oversold, each order takes its units once, and the units
/// reserved are exactly those of the orders told they reserved.
#[test]
fn concurrent_reserves_never_oversell() {
    let fixture = Fixture::new();
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let inventory = fixture.another(catalog());
            std::thread::spawn(move || {
                let mut reserved = Vec::new();
                for n in 0..12 {
                    // Threads 0 and 1 ask for orders 0..12, threads 2 and 3 for 12..24.
                    let id = format!("c{}", (thread / 2) * 12 + n);
                    match inventory
                        .reserve(&order(&id), &lines(&[("Widget", 1), ("Gadget", 1)]))
                        .unwrap()
                    {
                        ReserveOutcome::Reserved(_) => reserved.push(id),
                        ReserveOutcome::OutOfStock(_) => {}
                    }
                }
                reserved
            })
        })
        .collect();
    let mut told: Vec<String> = threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    told.sort();
    told.dedup();
    // Gadget runs out first: five orders reserve.
    assert_eq!(told.len(), 5, "{told:?}");
    assert_eq!(fixture.counts("Gadget"), (0, 5, 0, 5));
    assert_eq!(fixture.counts("Widget"), (5, 5, 0, 10));
    for id in told {
        assert!(matches!(
            fixture.inventory.reservation(&order(&id)).unwrap(),
            Some(Reservation {
                state: ReservationState::Reserved,
                ..
            })
        ));
    }
}
