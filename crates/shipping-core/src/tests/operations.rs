//! Each operation, its repeats, and the transitions it refuses.

use super::{Fixture, SEED, lines, order};
use crate::{
    Address, CancelOutcome, ShipTo, ShipmentStatus, ShippingError, StatusUpdate, TrackingSeed,
};
use orders_core::{CustomerName, LineItem, Timestamp};

fn ada() -> ShipTo {
    ShipTo {
        recipient: Some(CustomerName::new("Ada Lovelace").unwrap()),
        address: Some(Address::new("12 St James's Square, London").unwrap()),
    }
}

#[test]
fn a_shipment_gets_a_tracking_number_and_a_label() {
    let fixture = Fixture::new();
    let created = fixture
        .shipping
        .create_shipment(
            &order("o1"),
            &lines(&[("Vaccine X", 2)]),
            &ada(),
            Timestamp(1_000),
        )
        .unwrap();
    assert_eq!(created.status, ShipmentStatus::LabelCreated);
    assert_eq!(created.lines, lines(&[("Vaccine X", 2)]));
    assert_eq!(created.ship_to, ada());
    assert_eq!(
        (created.created_at, created.updated_at),
        (Timestamp(1_000), Timestamp(1_000))
    );
    assert!(created.label.contains(created.tracking_number.as_str()));
    assert!(
        created
            .label
            .contains("Ship to: Ada Lovelace, 12 St James's Square, London\n")
    );
    assert!(created.label.contains("Contents: 2 x Vaccine X\n"));
    assert!(
        created
            .label
            .contains("Created: 1970-01-01T00:00:01.000Z\n")
    );
    assert_eq!(fixture.shipping.get(&order("o1")).unwrap(), Some(created));
    assert_eq!(fixture.shipping.get(&order("o2")).unwrap(), None);
}

#[test]
fn tracking_numbers_depend_on_the_seed_and_the_order_only() {
    let first = Fixture::new();
    let second = Fixture::new();
    let ship = |fixture: &Fixture, id: &str, at: u64| {
        fixture
            .shipping
            .create_shipment(
                &order(id),
                &lines(&[("Taco", 1)]),
                &ShipTo::default(),
                Timestamp(at),
            )
            .unwrap()
    };
    let one = ship(&first, "o1", 1);
    // Another database, another time: the same number, and the same label but for the time.
    let again = ship(&second, "o1", 2);
    assert_eq!(one.tracking_number, again.tracking_number);
    assert_eq!(
        one.label.replace("00:00:00.001Z", "T"),
        again.label.replace("00:00:00.002Z", "T")
    );
    assert_ne!(ship(&first, "o2", 1).tracking_number, one.tracking_number);
    let reseeded = first
        .another(TrackingSeed(SEED.0 + 1))
        .create_shipment(
            &order("o3"),
            &lines(&[("Taco", 1)]),
            &ShipTo::default(),
            Timestamp(1),
        )
        .unwrap();
    assert_ne!(
        reseeded.tracking_number,
        second
            .shipping
            .create_shipment(
                &order("o3"),
                &lines(&[("Taco", 1)]),
                &ShipTo::default(),
                Timestamp(1)
            )
            .unwrap()
            .tracking_number
    );
}

#[test]
fn a_repeated_creation_returns_the_first_shipment() {
    let fixture = Fixture::new();
    let items = lines(&[("Pizza", 1), ("Salad", 2)]);
    let first = fixture
        .shipping
        .create_shipment(&order("o1"), &items, &ada(), Timestamp(1_000))
        .unwrap();
    // Redelivered later, and through a connection with another seed: the stored shipment.
    let again = fixture
        .another(TrackingSeed(99))
        .create_shipment(&order("o1"), &items, &ada(), Timestamp(5_000))
        .unwrap();
    assert_eq!(again, first);
    for (other_lines, other_ship_to) in [
        (lines(&[("Pizza", 2), ("Salad", 2)]), ada()),
        (lines(&[("Salad", 2), ("Pizza", 1)]), ada()),
        (items.clone(), ShipTo::default()),
    ] {
        assert!(matches!(
            fixture.shipping.create_shipment(&order("o1"), &other_lines, &other_ship_to, Timestamp(6_000)),
            Err(ShippingError::Conflict(id)) if id == order("o1")
        ));
    }
}

#[test]
fn a_shipment_carries_one_to_fifty_lines() {
    let fixture = Fixture::new();
    assert!(matches!(
        fixture
            .shipping
            .create_shipment(&order("o1"), &[], &ShipTo::default(), Timestamp(1)),
        Err(ShippingError::InvalidLines { lines: 0 })
    ));
    let too_many: Vec<LineItem> = lines(&[("Taco", 1)])
        .into_iter()
        .cycle()
        .take(LineItem::MAX_PER_ORDER + 1)
        .collect();
    assert!(matches!(
        fixture
            .shipping
            .create_shipment(&order("o1"), &too_many, &ShipTo::default(), Timestamp(1)),
        Err(ShippingError::InvalidLines { lines: 51 })
    ));
    assert_eq!(fixture.shipping.get(&order("o1")).unwrap(), None);
}

#[test]
fn the_status_moves_one_step_at_a_time() {
    let fixture = Fixture::new();
    let id = order("o1");
    fixture
        .shipping
        .create_shipment(&id, &lines(&[("Sushi", 3)]), &ada(), Timestamp(1_000))
        .unwrap();
    assert!(matches!(
        fixture
            .shipping
            .update_status(&id, StatusUpdate::Delivered, Timestamp(2_000)),
        Err(ShippingError::IllegalTransition {
            from: ShipmentStatus::LabelCreated,
            to: ShipmentStatus::Delivered,
            ..
        })
    ));
    let moving = fixture
        .shipping
        .update_status(&id, StatusUpdate::InTransit, Timestamp(3_000))
        .unwrap();
    assert_eq!(
        (moving.status, moving.updated_at, moving.created_at),
        (
            ShipmentStatus::InTransit,
            Timestamp(3_000),
            Timestamp(1_000)
        )
    );
    // Repeated news changes nothing, not even the time.
    assert_eq!(
        fixture
            .shipping
            .update_status(&id, StatusUpdate::InTransit, Timestamp(4_000))
            .unwrap(),
        moving
    );
    let delivered = fixture
        .shipping
        .update_status(&id, StatusUpdate::Delivered, Timestamp(5_000))
        .unwrap();
    assert_eq!(
        (delivered.status, delivered.updated_at),
        (ShipmentStatus::Delivered, Timestamp(5_000))
    );
    assert!(matches!(
        fixture
            .shipping
            .update_status(&id, StatusUpdate::InTransit, Timestamp(6_000)),
        Err(ShippingError::IllegalTransition {
            from: ShipmentStatus::Delivered,
            to: ShipmentStatus::InTransit,
            ..
        })
    ));
    assert!(matches!(
        fixture
            .shipping
            .update_status(&order("nobody"), StatusUpdate::InTransit, Timestamp(1)),
        Err(ShippingError::UnknownOrder(_))
    ));
}

#[test]
fn cancelling_is_allowed_until_the_parcel_leaves() {
    let fixture = Fixture::new();
    let id = order("o1");
    fixture
        .shipping
        .create_shipment(&id, &lines(&[("Burger", 1)]), &ada(), Timestamp(1_000))
        .unwrap();
    let CancelOutcome::Cancelled(cancelled) =
        fixture.shipping.cancel(&id, Timestamp(2_000)).unwrap()
    else {
        panic!("the shipment was not cancelled");
    };
    assert_eq!(
        (cancelled.status, cancelled.updated_at),
        (ShipmentStatus::Cancelled, Timestamp(2_000))
    );
    assert_eq!(
        fixture.shipping.cancel(&id, Timestamp(3_000)).unwrap(),
        CancelOutcome::Cancelled(cancelled)
    );
    assert!(matches!(
        fixture
            .shipping
            .update_status(&id, StatusUpdate::InTransit, Timestamp(4_000)),
        Err(ShippingError::IllegalTransition {
            from: ShipmentStatus::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        fixture
            .shipping
            .create_shipment(&id, &lines(&[("Burger", 1)]), &ada(), Timestamp(5_000)),
        Err(ShippingError::Cancelled(_))
    ));

    let moving = order("o2");
    fixture
        .shipping
        .create_shipment(&moving, &lines(&[("Burger", 1)]), &ada(), Timestamp(1_000))
        .unwrap();
    fixture
        .shipping
        .update_status(&moving, StatusUpdate::InTransit, Timestamp(2_000))
        .unwrap();
    assert!(matches!(
        fixture.shipping.cancel(&moving, Timestamp(3_000)),
        Err(ShippingError::TooLateToCancel {
            status: ShipmentStatus::InTransit,
            ..
        })
    ));
    assert_eq!(
        fixture.shipping.get(&moving).unwrap().unwrap().status,
        ShipmentStatus::InTransit
    );
}

#[test]
fn a_cancellation_that_overtakes_its_creation_wins() {
    let fixture = Fixture::new();
    let id = order("late");
    assert_eq!(
        fixture.shipping.cancel(&id, Timestamp(1_000)).unwrap(),
        CancelOutcome::NothingShipped
    );
    assert_eq!(
        fixture.shipping.cancel(&id, Timestamp(2_000)).unwrap(),
        CancelOutcome::NothingShipped
    );
    assert!(matches!(
        fixture.shipping.create_shipment(
            &id,
            &lines(&[("Taco", 1)]),
            &ShipTo::default(),
            Timestamp(3_000)
        ),
        Err(ShippingError::Cancelled(_))
    ));
    assert!(matches!(
        fixture
            .shipping
            .update_status(&id, StatusUpdate::InTransit, Timestamp(4_000)),
        Err(ShippingError::UnknownOrder(_))
    ));
    assert_eq!(fixture.shipping.get(&id).unwrap(), None);
    let (status, tracking): (String, Option<String>) = fixture
        .inspect
        .query_row(
            "SELECT status, tracking_number FROM shipping_shipments WHERE order_id = 'late'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), tracking), ("cancelled", None));
}

#[test]
fn the_database_refuses_half_shipments() {
    let fixture = Fixture::new();
    fixture
        .shipping
        .create_shipment(
            &order("o1"),
            &lines(&[("Taco", 1)]),
            &ShipTo::default(),
            Timestamp(1),
        )
        .unwrap();
    for broken in [
        "UPDATE shipping_shipments SET lines = NULL",
        "UPDATE shipping_shipments SET status = 'lost'",
        "INSERT INTO shipping_shipments (order_id, status, updated_at) VALUES ('x', 'in_transit', 1)",
    ] {
        let error = fixture.inspect.execute(broken, []).unwrap_err();
        assert!(
            error.to_string().contains("CHECK constraint failed"),
            "{broken}: {error}"
        );
    }
}
