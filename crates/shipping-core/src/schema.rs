//! The shipments table.

use orderly_sql::Schema;

/// The shipping service's schema, created on demand.
pub(crate) const SCHEMA: Schema = Schema {
    version_table: "shipping_schema",
    migrations: &[VERSION_1],
};

const VERSION_1: &[&str] = &[
    // One row per order: its shipment, or a tombstone (cancelled, nothing else) when a
    // cancellation came before any shipment. `lines` is `LineItem::to_json`; times are
    // milliseconds since the epoch.
    "CREATE TABLE shipping_shipments (
        order_id        TEXT PRIMARY KEY,
        status          TEXT NOT NULL CHECK (status IN
            ('label_created', 'in_transit', 'delivered', 'cancelled')),
        tracking_number TEXT UNIQUE,
        label           TEXT,
        lines           TEXT,
        recipient       TEXT,
        address         TEXT,
        created_at      INTEGER,
        updated_at      INTEGER NOT NULL,
        CHECK ((lines IS NULL) = (tracking_number IS NULL)),
        CHECK ((lines IS NULL) = (label IS NULL)),
        CHECK ((lines IS NULL) = (created_at IS NULL)),
        CHECK (lines IS NOT NULL OR status = 'cancelled')
    ) WITHOUT ROWID",
];
