//! Tests against real SQLite files, through an adapter that behaves as the Spin host's
//! `spin:sqlite` does (one statement per call, WAL mode, a busy timeout).

mod dead_letters;
mod intake;
mod interleavings;
mod migration;
mod reads;
mod worker;

use crate::{Intake, Ledger, Sql, SqlError, SqlRows, SqlValue};
use orders_core::{NewOrder, Order, Timestamp};
use rusqlite::types::{Value, ValueRef};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A SQLite connection seen through [`Sql`].
pub(crate) struct Sqlite {
    connection: rusqlite::Connection,
}

impl Sqlite {
    /// Opens the file as the host does.
    pub(crate) fn open(path: &Path) -> Self {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .unwrap();
        connection.busy_timeout(Duration::from_secs(5)).unwrap();
        Self { connection }
    }
}

impl Sql for Sqlite {
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError> {
        let failed = |error: rusqlite::Error| SqlError {
            message: error.to_string(),
        };
        let mut prepared = self.connection.prepare_cached(statement).map_err(failed)?;
        let columns: Vec<String> = prepared
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let parameters = parameters.iter().map(|value| match value {
            SqlValue::Integer(integer) => Value::Integer(*integer),
            SqlValue::Real(real) => Value::Real(*real),
            SqlValue::Text(text) => Value::Text(text.clone()),
            SqlValue::Blob(bytes) => Value::Blob(bytes.clone()),
            SqlValue::Null => Value::Null,
        });
        let mut rows = prepared
            .query(rusqlite::params_from_iter(parameters))
            .map_err(failed)?;
        let mut result = Vec::new();
        while let Some(row) = rows.next().map_err(failed)? {
            let values = (0..columns.len())
                .map(|index| match row.get_ref(index) {
                    Ok(ValueRef::Integer(integer)) => SqlValue::Integer(integer),
                    Ok(ValueRef::Real(real)) => SqlValue::Real(real),
                    Ok(ValueRef::Text(text)) => {
                        SqlValue::Text(String::from_utf8_lossy(text).into_owned())
                    }
                    Ok(ValueRef::Blob(bytes)) => SqlValue::Blob(bytes.to_vec()),
                    Ok(ValueRef::Null) | Err(_) => SqlValue::Null,
                })
                .collect();
            result.push(values);
        }
        Ok(SqlRows {
            columns,
            rows: result,
        })
    }
}

/// A ledger in a fresh temporary file, and a second connection to look inside it.
pub(crate) struct Fixture {
    _directory: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) ledger: Ledger<Sqlite>,
    pub(crate) inspect: rusqlite::Connection,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        let ledger = Ledger::new(Sqlite::open(&path));
        let inspect = Sqlite::open(&path).connection;
        Self {
            _directory: directory,
            path,
            ledger,
            inspect,
        }
    }

    /// Another ledger on its own connection to the same file.
    pub(crate) fn another_ledger(&self) -> Ledger<Sqlite> {
        Ledger::new(Sqlite::open(&self.path))
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
    }
}
