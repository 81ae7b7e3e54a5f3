//! The ledger's [`Sql`] over Spin's SQLite API (`spin:sqlite@3.0.0`).

use ledger::{Sql, SqlError, SqlRows, SqlValue};
use spin_sdk::sqlite3::{Connection, Error, Value};

/// A connection to one of the app's SQLite databases.
pub struct SpinSql {
    connection: Connection,
}

impl SpinSql {
    /// Opens the `default` database.
    pub fn open_default() -> Result<Self, SqlError> {
        Ok(Self {
            connection: Connection::open_default().map_err(to_error)?,
        })
    }
}

impl Sql for SpinSql {
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError> {
        let parameters: Vec<Value> = parameters.iter().map(to_value).collect();
        let result = self
            .connection
            .execute(statement, &parameters)
            .map_err(to_error)?;
        Ok(SqlRows {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.values.into_iter().map(from_value).collect())
                .collect(),
        })
    }
}

fn to_value(value: &SqlValue) -> Value {
    match value {
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(r) => Value::Real(*r),
        SqlValue::Text(t) => Value::Text(t.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
        SqlValue::Null => Value::Null,
    }
}

fn from_value(value: Value) -> SqlValue {
    match value {
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
        Value::Null => SqlValue::Null,
    }
}

fn to_error(error: Error) -> SqlError {
    SqlError {
        message: match error {
            Error::NoSuchDatabase => "no such database (is `default` in sqlite_databases?)".into(),
            Error::AccessDenied => "access denied (is `default` in sqlite_databases?)".into(),
            Error::InvalidConnection => "invalid connection".into(),
            Error::DatabaseFull => "the database is full".into(),
            Error::Io(detail) => detail,
        },
    }
}
