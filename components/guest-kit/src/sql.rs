//! [`Sql`] (what every store runs on) over Spin's SQLite API (`spin:sqlite@3.0.0`).

use orderly_sql::{Sql, SqlError, SqlRows, SqlValue};
use spin_sdk::sqlite3::{Connection, Error, Value};
use std::cell::RefCell;

/// The app's `default` SQLite database, through a connection opened on first use and given
/// back on [`Sql::release_connection`] (a host lends a limited number of connections).
pub struct SpinSql {
    connection: RefCell<Option<Connection>>,
}

impl SpinSql {
    /// Opens the `default` database.
    pub fn open_default() -> Result<Self, SqlError> {
        Ok(Self {
            connection: RefCell::new(Some(Connection::open_default().map_err(to_error)?)),
        })
    }
}

impl Sql for SpinSql {
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError> {
        let parameters: Vec<Value> = parameters.iter().map(to_value).collect();
        let mut connection = self.connection.borrow_mut();
        if connection.is_none() {
            *connection = Some(Connection::open_default().map_err(to_error)?);
        }
        let result = connection
            .as_ref()
            .expect("opened above")
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

    fn release_connection(&self) {
        self.connection.borrow_mut().take();
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
