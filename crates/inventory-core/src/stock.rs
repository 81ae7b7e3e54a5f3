//! Stock levels: seeding them from the catalogue, reading them, restocking.

use crate::{Inventory, InventoryError};
use orderly_sql::{RowReader, Sql, SqlValue};
use orders_core::{ProductName, Quantity};
use serde_json::json;

/// A positive number of units of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Units(u32);

/// Zero is not a number of units anything can move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a number of units must be at least 1")]
pub struct ZeroUnits;

impl Units {
    /// Checks a number of units.
    pub fn new(units: u32) -> Result<Self, ZeroUnits> {
        if units == 0 {
            Err(ZeroUnits)
        } else {
            Ok(Self(units))
        }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl From<Quantity> for Units {
    fn from(quantity: Quantity) -> Self {
        Self(quantity.get())
    }
}

/// One SKU's stock. Always `available + reserved + shipped = received`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    /// The product, as the catalogue spells it.
    pub sku: ProductName,
    /// Units free to reserve.
    pub available: u64,
    /// Units held by reservations not yet committed or released.
    pub reserved: u64,
    /// Units committed to orders (gone from the shelf).
    pub shipped: u64,
    /// Units ever received: the initial stock plus every restock.
    pub received: u64,
}

/// Columns [`StockLevel::read`] expects, in order.
const LEVEL_COLUMNS: &str = "sku, available, reserved, shipped, received";

impl StockLevel {
    fn read(row: &[SqlValue]) -> Result<Self, InventoryError> {
        let mut reader = RowReader::new(row);
        let corrupt = |detail| InventoryError::corrupt("a stock row", detail);
        let sku = reader.text("sku").map_err(corrupt)?;
        let sku = ProductName::new(&sku).map_err(|error| {
            InventoryError::corrupt(format!("stock of {sku:?}"), error.to_string())
        })?;
        Ok(Self {
            sku,
            available: reader.count("available").map_err(corrupt)?,
            reserved: reader.count("reserved").map_err(corrupt)?,
            shipped: reader.count("shipped").map_err(corrupt)?,
            received: reader.count("received").map_err(corrupt)?,
        })
    }
}

impl<S: Sql> Inventory<S> {
    /// Adds every catalogue product not stocked yet, with its initial stock, in one statement;
    /// returns how many it added. Products already stocked keep their counts, so seeding again
    /// changes nothing (a catalogue's new initial stock does not overwrite stock: restock).
    /// Operations seed by themselves when they meet a product they do not know.
    pub fn seed(&self) -> Result<u64, InventoryError> {
        let products: Vec<_> = self
            .catalog
            .products()
            .iter()
            .map(|product| json!({"sku": product.name, "stock": product.initial_stock}))
            .collect();
        let added = self.run(
            "seed its stock from the catalogue",
            "INSERT INTO inventory_stock (sku, available, reserved, shipped, received)
            SELECT json_extract(value, '$.sku'), json_extract(value, '$.stock'), 0, 0,
                json_extract(value, '$.stock')
            FROM json_each(?1) WHERE true
            ON CONFLICT (sku) DO NOTHING
            RETURNING sku",
            &[SqlValue::Text(
                serde_json::Value::from(products).to_string(),
            )],
        )?;
        Ok(added.rows.len() as u64)
    }

    /// Every SKU's stock, by name (ignoring case). Seeds first if a catalogue product is
    /// missing.
    pub fn levels(&self) -> Result<Vec<StockLevel>, InventoryError> {
        let read = || -> Result<Vec<StockLevel>, InventoryError> {
            self.run(
                "read its stock levels",
                &format!("SELECT {LEVEL_COLUMNS} FROM inventory_stock ORDER BY sku"),
                &[],
            )?
            .rows
            .iter()
            .map(|row| StockLevel::read(row))
            .collect()
        };
        let levels = read()?;
        let seeded = self.catalog.products().iter().all(|product| {
            levels
                .iter()
                .any(|level| level.sku.as_str().eq_ignore_ascii_case(&product.name))
        });
        if seeded {
            return Ok(levels);
        }
        self.seed()?;
        read()
    }

    /// The stock of `sku` (ignoring case).
    pub fn level(&self, sku: &ProductName) -> Result<StockLevel, InventoryError> {
        self.seeding_once(sku, || {
            self.run(
                "read a stock level",
                &format!("SELECT {LEVEL_COLUMNS} FROM inventory_stock WHERE sku = ?1"),
                &[SqlValue::text(sku.as_str())],
            )
        })
    }

    /// Receives `units` more of `sku` (an administrator's restock): they become available at
    /// once. Not idempotent: each call adds. Returns the new level.
    pub fn restock(&self, sku: &ProductName, units: Units) -> Result<StockLevel, InventoryError> {
        self.seeding_once(sku, || {
            self.run(
                "restock",
                &format!(
                    "UPDATE inventory_stock
                    SET available = available + ?2, received = received + ?2
                    WHERE sku = ?1 RETURNING {LEVEL_COLUMNS}"
                ),
                &[
                    SqlValue::text(sku.as_str()),
                    SqlValue::Integer(i64::from(units.get())),
                ],
            )
        })
    }

    /// Runs `statement` (which returns `sku`'s level, if stocked); when `sku` is not stocked,
    /// seeds and runs it once more.
    fn seeding_once(
        &self,
        sku: &ProductName,
        statement: impl Fn() -> Result<orderly_sql::SqlRows, InventoryError>,
    ) -> Result<StockLevel, InventoryError> {
        let mut found = statement()?;
        if found.rows.is_empty() {
            // Another connection may have seeded between the two statements: ask again anyway.
            self.seed()?;
            found = statement()?;
        }
        match found.rows.first() {
            Some(row) => StockLevel::read(row),
            None => Err(InventoryError::UnknownSku(sku.as_str().to_owned())),
        }
    }
}
