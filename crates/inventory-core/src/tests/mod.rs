//! Tests against real SQLite files, through `RusqliteSql`, which behaves as the Spin host's
//! `spin:sqlite` does (one statement per call, WAL mode, a busy timeout).

mod properties;
mod reservations;
mod stock;

use crate::Inventory;
use catalog::Catalog;
use orderly_sql::{RusqliteSql, Sql, SqlError, SqlRows, SqlValue};
use orders_core::{LineItem, OrderId, ProductName, Quantity};
use std::cell::Cell;
use std::path::PathBuf;

/// Three products: 10 widgets, 5 gadgets, none sold out.
pub(crate) const CATALOG: &str = r#"{"products": [
    {"name": "Widget", "min_quantity": 1, "max_quantity": 10, "price_cents": 100, "initial_stock": 10},
    {"name": "Gadget", "min_quantity": 1, "max_quantity": 10, "price_cents": 250, "initial_stock": 5},
    {"name": "Sold Out", "min_quantity": 1, "max_quantity": 10, "price_cents": 999, "initial_stock": 0}
]}"#;

/// An inventory over a fresh temporary file, and a second connection to look inside it.
pub(crate) struct Fixture {
    _directory: tempfile::TempDir,
    path: PathBuf,
    pub(crate) inventory: Inventory<RusqliteSql>,
    pub(crate) inspect: rusqlite::Connection,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("inventory.db");
        let inventory = Inventory::new(RusqliteSql::open(&path).unwrap(), catalog());
        let inspect = RusqliteSql::open(&path).unwrap().into_connection();
        Self {
            _directory: directory,
            path,
            inventory,
            inspect,
        }
    }

    /// Another inventory on its own connection to the same file, with `catalog`.
    pub(crate) fn another(&self, catalog: Catalog) -> Inventory<RusqliteSql> {
        Inventory::new(RusqliteSql::open(&self.path).unwrap(), catalog)
    }

    /// An inventory on its own connection to the same file whose first seeding is preceded by
    /// another instance's: it meets no stock, then seeds and adds nothing, as when two
    /// instances start on an empty database at once.
    pub(crate) fn racing_seeder(&self) -> Inventory<SeededMeanwhile> {
        let sql = SeededMeanwhile {
            sql: RusqliteSql::open(&self.path).unwrap(),
            other: self.another(catalog()),
            done: Cell::new(false),
        };
        Inventory::new(sql, catalog())
    }

    /// `sku`'s (available, reserved, shipped, received), read directly.
    pub(crate) fn counts(&self, sku: &str) -> (u64, u64, u64, u64) {
        self.inspect
            .query_row(
                "SELECT available, reserved, shipped, received FROM inventory_stock
                WHERE sku = ?1",
                [sku],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap()
    }
}

/// A connection on which another instance seeds the stock just before this one first does.
pub(crate) struct SeededMeanwhile {
    sql: RusqliteSql,
    other: Inventory<RusqliteSql>,
    done: Cell<bool>,
}

impl Sql for SeededMeanwhile {
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError> {
        if statement.starts_with("INSERT INTO inventory_stock") && !self.done.replace(true) {
            self.other.seed().unwrap();
        }
        self.sql.execute(statement, parameters)
    }
}

/// The test catalogue.
pub(crate) fn catalog() -> Catalog {
    Catalog::from_json(CATALOG).unwrap()
}

pub(crate) fn order(id: &str) -> OrderId {
    OrderId::parse(id).unwrap()
}

pub(crate) fn sku(name: &str) -> ProductName {
    ProductName::new(name).unwrap()
}

/// Order lines from (product, quantity) pairs.
pub(crate) fn lines(pairs: &[(&str, i64)]) -> Vec<LineItem> {
    pairs
        .iter()
        .map(|(product, quantity)| LineItem {
            product: sku(product),
            quantity: Quantity::new(*quantity).unwrap(),
        })
        .collect()
}
