//! Seeding, levels and restocks.

use super::{CATALOG, Fixture, sku};
use crate::{InventoryError, StockLevel, Units, ZeroUnits};
use catalog::Catalog;

fn level(name: &str, available: u64, reserved: u64, shipped: u64, received: u64) -> StockLevel {
    StockLevel {
        sku: sku(name),
        available,
        reserved,
        shipped,
        received,
    }
}

#[test]
fn the_schema_and_the_stock_appear_on_demand() {
    let fixture = Fixture::new();
    assert_eq!(
        fixture.inventory.level(&sku("widget")).unwrap(),
        level("Widget", 10, 0, 0, 10)
    );
    // The first read seeded every product, so seeding again adds nothing.
    assert_eq!(fixture.inventory.seed().unwrap(), 0);
    assert_eq!(
        fixture.inventory.levels().unwrap(),
        vec![
            level("Gadget", 5, 0, 0, 5),
            level("Sold Out", 0, 0, 0, 0),
            level("Widget", 10, 0, 0, 10),
        ]
    );
}

#[test]
fn seeding_twice_changes_nothing_and_keeps_stock_that_moved() {
    let fixture = Fixture::new();
    assert_eq!(fixture.inventory.seed().unwrap(), 3);
    fixture
        .inventory
        .restock(&sku("Widget"), Units::new(4).unwrap())
        .unwrap();
    assert_eq!(fixture.inventory.seed().unwrap(), 0);
    assert_eq!(fixture.counts("Widget"), (14, 0, 0, 14));

    // A catalogue that adds a product and changes an initial stock: only the new product is
    // added; stock already there is not overwritten.
    let grown = CATALOG.replace(
        r#""initial_stock": 10}"#,
        r#""initial_stock": 99}, {"name": "Doohickey", "min_quantity": 1, "max_quantity": 1, "price_cents": 1, "initial_stock": 7}"#,
    );
    let grown = fixture.another(Catalog::from_json(&grown).unwrap());
    assert_eq!(
        grown.level(&sku("DOOHICKEY")).unwrap(),
        level("Doohickey", 7, 0, 0, 7)
    );
    assert_eq!(fixture.counts("Widget"), (14, 0, 0, 14));
    assert_eq!(grown.levels().unwrap().len(), 4);
}

#[test]
fn restocking_adds_available_and_received_units() {
    let fixture = Fixture::new();
    let restocked = fixture
        .inventory
        .restock(&sku(" sold out "), Units::new(3).unwrap())
        .unwrap();
    assert_eq!(restocked, level("Sold Out", 3, 0, 0, 3));
    let again = fixture
        .inventory
        .restock(&sku("Sold Out"), Units::new(2).unwrap())
        .unwrap();
    assert_eq!(again, level("Sold Out", 5, 0, 0, 5));
}

#[test]
fn a_read_that_meets_stock_another_instance_just_seeded_finds_it() {
    let fixture = Fixture::new();
    let racing = fixture.racing_seeder();
    assert_eq!(
        racing.level(&sku("Gadget")).unwrap(),
        level("Gadget", 5, 0, 0, 5)
    );
}

#[test]
fn unknown_products_are_refused_by_name() {
    let fixture = Fixture::new();
    let unknown = sku("Unobtainium");
    assert!(matches!(
        fixture.inventory.level(&unknown),
        Err(InventoryError::UnknownSku(name)) if name == "Unobtainium"
    ));
    assert!(matches!(
        fixture.inventory.restock(&unknown, Units::new(1).unwrap()),
        Err(InventoryError::UnknownSku(_))
    ));
    assert_eq!(fixture.inventory.levels().unwrap().len(), 3);
}

#[test]
fn units_are_positive() {
    assert_eq!(Units::new(0), Err(ZeroUnits));
    assert_eq!(Units::new(7).unwrap().get(), 7);
}

#[test]
fn the_database_refuses_negative_or_unbalanced_stock() {
    let fixture = Fixture::new();
    fixture.inventory.seed().unwrap();
    for broken in [
        "UPDATE inventory_stock SET available = -1, received = received - 11 WHERE sku = 'Widget'",
        "UPDATE inventory_stock SET available = available + 1 WHERE sku = 'Widget'",
        "UPDATE inventory_stock SET reserved = reserved + 1 WHERE sku = 'Widget'",
        "INSERT INTO inventory_reservation_lines (order_id, sku, units) VALUES ('o', 'Widget', 0)",
    ] {
        let error = fixture.inspect.execute(broken, []).unwrap_err();
        assert!(
            error.to_string().contains("CHECK constraint failed"),
            "{broken}: {error}"
        );
    }
    assert_eq!(fixture.counts("Widget"), (10, 0, 0, 10));
}
