//! Tests against real SQLite files, through [`RusqliteSql`], which behaves as the Spin host's
//! `spin:sqlite` does (one statement per call, WAL mode, a busy timeout).

mod dead_letters;
mod intake;
mod interleavings;
mod migration;
mod reads;
mod sagas;
mod worker;

use crate::{Intake, Ledger, RusqliteSql};
use orders_core::{NewOrder, Order, Timestamp};
use std::path::PathBuf;

/// A ledger in a fresh temporary file, and a second connection to look inside it.
pub(crate) struct Fixture {
    _directory: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) ledger: Ledger<RusqliteSql>,
    pub(crate) inspect: rusqlite::Connection,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        let ledger = Ledger::new(RusqliteSql::open(&path).unwrap());
        let inspect = RusqliteSql::open(&path).unwrap().into_connection();
        Self {
            _directory: directory,
            path,
            ledger,
            inspect,
        }
    }

    /// Another ledger on its own connection to the same file.
    pub(crate) fn another_ledger(&self) -> Ledger<RusqliteSql> {
        Ledger::new(RusqliteSql::open(&self.path).unwrap())
    }

    /// One value from the inspecting connection.
    pub(crate) fn value<T: rusqlite::types::FromSql>(
        &self,
        query: &str,
        parameters: impl rusqlite::Params,
    ) -> T {
        self.inspect
            .query_row(query, parameters, |row| row.get(0))
            .unwrap()
    }

    /// Runs statements on the inspecting connection.
    pub(crate) fn run(&self, statements: &str) {
        self.inspect.execute_batch(statements).unwrap();
    }

    /// Accepts an order `id` created at `at` ms, with key `key-<id>`, a lock for 10 s and a
    /// deadline 60 s after creation.
    pub(crate) fn accept(&self, id: &str, at: u64) -> Order {
        let order = order(id, at);
        let outcome = self
            .ledger
            .accept(&intake(&order, &format!("key-{id}")))
            .unwrap();
        assert_eq!(outcome, crate::IntakeOutcome::Created);
        order
    }
}

/// An order `id` with one line, created at `at` ms.
pub(crate) fn order(id: &str, at: u64) -> Order {
    NewOrder::parse(
        format!(r#"{{"order_id": "{id}", "product": "Medicine A", "quantity": 3}}"#).as_bytes(),
    )
    .unwrap()
    .accept(Timestamp(at), [0; 10])
}

/// An intake of `order` under `key`, locked for 10 s, with a deadline 60 s after creation.
pub(crate) fn intake<'a>(order: &'a Order, key: &'a str) -> Intake<'a> {
    Intake {
        order,
        key,
        fingerprint: "fingerprint",
        locked_until: Timestamp(order.created_at.millis() + 10_000),
        deadline_at: Timestamp(order.created_at.millis() + 60_000),
        hold: None,
    }
}
