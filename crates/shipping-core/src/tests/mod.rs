//! Tests against real SQLite files, through `RusqliteSql`, which behaves as the Spin host's
//! `spin:sqlite` does (one statement per call, WAL mode, a busy timeout).

mod operations;
mod properties;

use crate::{Shipping, TrackingSeed};
use orderly_sql::RusqliteSql;
use orders_core::{LineItem, OrderId, ProductName, Quantity};
use std::path::PathBuf;

/// The seed the fixtures derive tracking numbers with.
pub(crate) const SEED: TrackingSeed = TrackingSeed(0x5eed);

/// Shipping over a fresh temporary file, and a second connection to look inside it.
pub(crate) struct Fixture {
    _directory: tempfile::TempDir,
    path: PathBuf,
    pub(crate) shipping: Shipping<RusqliteSql>,
    pub(crate) inspect: rusqlite::Connection,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("shipping.db");
        let shipping = Shipping::new(RusqliteSql::open(&path).unwrap(), SEED);
        let inspect = RusqliteSql::open(&path).unwrap().into_connection();
        Self {
            _directory: directory,
            path,
            shipping,
            inspect,
        }
    }

    /// Shipping on another connection to the same file, with `seed`.
    pub(crate) fn another(&self, seed: TrackingSeed) -> Shipping<RusqliteSql> {
        Shipping::new(RusqliteSql::open(&self.path).unwrap(), seed)
    }
}

pub(crate) fn order(id: &str) -> OrderId {
    OrderId::parse(id).unwrap()
}

/// Order lines from (product, quantity) pairs.
pub(crate) fn lines(pairs: &[(&str, i64)]) -> Vec<LineItem> {
    pairs
        .iter()
        .map(|(product, quantity)| LineItem {
            product: ProductName::new(product).unwrap(),
            quantity: Quantity::new(*quantity).unwrap(),
        })
        .collect()
}
