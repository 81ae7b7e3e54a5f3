//! [`Sql`] over a native SQLite connection ([`rusqlite`]), behaving as the Spin host's
//! `spin:sqlite` does: one statement per call, on a file in write-ahead-log mode with a busy
//! timeout. For native tests and tools; components use the host's SQLite instead. Enabled by
//! the `rusqlite` feature.

use crate::{Sql, SqlError, SqlRows, SqlValue};
use rusqlite::types::{Value, ValueRef};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another connection's write lock before it fails with
/// "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A native SQLite connection seen through [`Sql`].
#[derive(Debug)]
pub struct RusqliteSql {
    connection: rusqlite::Connection,
}

impl RusqliteSql {
    /// Opens (creating it if need be) the database file at `path` as the Spin host does: in
    /// write-ahead-log mode with `synchronous = NORMAL`, waiting up to 5 s for a busy
    /// database. Any number of connections may open the same file.
    pub fn open(path: impl AsRef<Path>) -> rusqlite::Result<Self> {
        let connection = rusqlite::Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        Ok(Self { connection })
    }

    /// The connection itself (to look inside the database, or run what [`Sql`] does not).
    pub fn into_connection(self) -> rusqlite::Connection {
        self.connection
    }
}

impl Sql for RusqliteSql {
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
