//! The inventory's tables, and the views whose `INSTEAD OF` triggers move stock, each in one
//! statement.
//!
//! Reserving, releasing and committing insert one row into a view. The row carries the
//! outcome, decided by the inserting statement's `SELECT` from the state it sees (the same
//! statement holds the write lock throughout, so nothing changes in between); a trigger acts
//! only on the outcome that moves stock, and `RETURNING` hands the outcome back.

use orderly_sql::Schema;

/// The inventory's schema, created on demand.
pub(crate) const SCHEMA: Schema = Schema {
    version_table: "inventory_schema",
    migrations: &[VERSION_1],
};

/// The lines of order `NEW.order_id` that a trigger moves, as a correlated subquery on
/// `inventory_stock`.
macro_rules! units_of_order {
    () => {
        "(SELECT l.units FROM inventory_reservation_lines AS l
            WHERE l.order_id = NEW.order_id AND l.sku = inventory_stock.sku)"
    };
}

/// The stock rows order `NEW.order_id` has lines for.
macro_rules! skus_of_order {
    () => {
        "sku IN (SELECT sku FROM inventory_reservation_lines WHERE order_id = NEW.order_id)"
    };
}

const VERSION_1: &[&str] = &[
    // One row per SKU, named as the catalogue spells it and matched ignoring ASCII case.
    // `received` is the initial stock plus every restock; the CHECKs make the conservation
    // rule and non-negative counts the database's own.
    "CREATE TABLE inventory_stock (
        sku       TEXT PRIMARY KEY COLLATE NOCASE,
        available INTEGER NOT NULL CHECK (available >= 0),
        reserved  INTEGER NOT NULL CHECK (reserved >= 0),
        shipped   INTEGER NOT NULL CHECK (shipped >= 0),
        received  INTEGER NOT NULL CHECK (received >= 0),
        CHECK (available + reserved + shipped = received)
    ) WITHOUT ROWID",
    // One row per order that reserved, or was released before it did (a tombstone: no lines).
    // Its lines move together, so the state is the order's.
    "CREATE TABLE inventory_reservations (
        order_id TEXT PRIMARY KEY,
        state    TEXT NOT NULL CHECK (state IN ('reserved', 'released', 'committed'))
    ) WITHOUT ROWID",
    // What each order holds, per (order, SKU); one line per SKU (the caller merges repeats).
    "CREATE TABLE inventory_reservation_lines (
        order_id TEXT NOT NULL REFERENCES inventory_reservations (order_id),
        sku      TEXT NOT NULL COLLATE NOCASE REFERENCES inventory_stock (sku),
        units    INTEGER NOT NULL CHECK (units > 0),
        PRIMARY KEY (order_id, sku)
    ) WITHOUT ROWID",
    // Reserving: `outcome` is 'reserved' when the order has no row and every line is in
    // stock; `lines` then holds the lines as JSON `[{"sku", "units"}]`, with the stock's names.
    "CREATE VIEW inventory_reserve (order_id, outcome, state, lines, sku, requested, available)
    AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    concat!(
        "CREATE TRIGGER inventory_reserve_insert INSTEAD OF INSERT ON inventory_reserve
        WHEN NEW.outcome = 'reserved'
        BEGIN
            INSERT INTO inventory_reservations (order_id, state)
            VALUES (NEW.order_id, 'reserved');
            INSERT INTO inventory_reservation_lines (order_id, sku, units)
            SELECT NEW.order_id, json_extract(value, '$.sku'), json_extract(value, '$.units')
            FROM json_each(NEW.lines);
            UPDATE inventory_stock
            SET available = available - ",
        units_of_order!(),
        ", reserved = reserved + ",
        units_of_order!(),
        " WHERE ",
        skus_of_order!(),
        ";
        END"
    ),
    // Releasing: 'release' gives a reservation's units back, 'tombstone' records the release
    // of an order that never reserved.
    "CREATE VIEW inventory_release (order_id, outcome, lines)
    AS SELECT NULL, NULL, NULL WHERE 0",
    concat!(
        "CREATE TRIGGER inventory_release_reserved INSTEAD OF INSERT ON inventory_release
        WHEN NEW.outcome = 'release'
        BEGIN
            UPDATE inventory_stock
            SET available = available + ",
        units_of_order!(),
        ", reserved = reserved - ",
        units_of_order!(),
        " WHERE ",
        skus_of_order!(),
        ";
            UPDATE inventory_reservations SET state = 'released' WHERE order_id = NEW.order_id;
        END"
    ),
    "CREATE TRIGGER inventory_release_unknown INSTEAD OF INSERT ON inventory_release
    WHEN NEW.outcome = 'tombstone'
    BEGIN
        INSERT INTO inventory_reservations (order_id, state) VALUES (NEW.order_id, 'released');
    END",
    // Committing: 'commit' ships a reservation's units.
    "CREATE VIEW inventory_commit (order_id, outcome, lines)
    AS SELECT NULL, NULL, NULL WHERE 0",
    concat!(
        "CREATE TRIGGER inventory_commit_reserved INSTEAD OF INSERT ON inventory_commit
        WHEN NEW.outcome = 'commit'
        BEGIN
            UPDATE inventory_stock
            SET reserved = reserved - ",
        units_of_order!(),
        ", shipped = shipped + ",
        units_of_order!(),
        " WHERE ",
        skus_of_order!(),
        ";
            UPDATE inventory_reservations SET state = 'committed' WHERE order_id = NEW.order_id;
        END"
    ),
];
