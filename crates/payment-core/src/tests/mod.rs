//! Tests against real SQLite files, through `RusqliteSql`, which behaves as the Spin host's
//! `spin:sqlite` does (one statement per call, WAL mode, a busy timeout).

mod operations;
mod properties;

use crate::{Amount, CardNumber, PaymentPolicy, Payments};
use orderly_sql::RusqliteSql;
use orders_core::OrderId;
use std::path::PathBuf;

/// A card that is never declined.
pub(crate) const GOOD_CARD: &str = "4242 4242 4242 4242";
/// A test card that is always declined.
pub(crate) const DECLINED_CARD: &str = "4000 0000 0000 0002";

/// Payments over a fresh temporary file, with the default policy, and a second connection to
/// look inside it.
pub(crate) struct Fixture {
    _directory: tempfile::TempDir,
    path: PathBuf,
    pub(crate) payments: Payments<RusqliteSql>,
    pub(crate) inspect: rusqlite::Connection,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("payments.db");
        let payments = Payments::new(RusqliteSql::open(&path).unwrap(), PaymentPolicy::default());
        let inspect = RusqliteSql::open(&path).unwrap().into_connection();
        Self {
            _directory: directory,
            path,
            payments,
            inspect,
        }
    }

    /// Payments on another connection to the same file, with `policy`.
    pub(crate) fn another(&self, policy: PaymentPolicy) -> Payments<RusqliteSql> {
        Payments::new(RusqliteSql::open(&self.path).unwrap(), policy)
    }
}

pub(crate) fn order(id: &str) -> OrderId {
    OrderId::parse(id).unwrap()
}

pub(crate) fn card(number: &str) -> CardNumber {
    CardNumber::parse(number).unwrap()
}

pub(crate) fn cents(cents: u64) -> Amount {
    Amount::new(cents).unwrap()
}
