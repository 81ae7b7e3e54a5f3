//! The payments table.

use orderly_sql::Schema;

/// The payment service's schema, created on demand.
pub(crate) const SCHEMA: Schema = Schema {
    version_table: "payment_schema",
    migrations: &[VERSION_1],
};

const VERSION_1: &[&str] = &[
    // One row per order: its authorization (or decline), what was captured and refunded, or a
    // tombstone ('cancelled', no amount) when a compensation came before any authorization.
    // The CHECKs: an order is charged once, in full, and refunded at most what it was charged.
    "CREATE TABLE payment_intents (
        id             INTEGER PRIMARY KEY,
        order_id       TEXT NOT NULL UNIQUE,
        state          TEXT NOT NULL CHECK (state IN
            ('authorized', 'declined', 'captured', 'voided', 'refunded', 'cancelled')),
        amount_cents   INTEGER CHECK (amount_cents > 0),
        card_last4     TEXT,
        decline_reason TEXT,
        captured_cents INTEGER NOT NULL DEFAULT 0,
        refunded_cents INTEGER NOT NULL DEFAULT 0,
        CHECK ((state = 'cancelled') = (amount_cents IS NULL)),
        CHECK ((amount_cents IS NULL) = (card_last4 IS NULL)),
        CHECK ((state = 'declined') = (decline_reason IS NOT NULL)),
        CHECK (captured_cents =
            CASE WHEN state IN ('captured', 'refunded') THEN amount_cents ELSE 0 END),
        CHECK (refunded_cents = CASE WHEN state = 'refunded' THEN captured_cents ELSE 0 END)
    )",
];
