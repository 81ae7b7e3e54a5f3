//! The one thing Orderly's stores need from a database: run a single SQL statement with
//! parameters and get its rows back (as `spin:sqlite` offers it), and helpers to read those
//! rows back into checked values.
//!
//! Components implement [`Sql`] over the Spin host's SQLite; with the `rusqlite` feature,
//! [`RusqliteSql`] implements it over a native SQLite file (for tests and tools outside
//! WebAssembly). [`Schema`] creates a store's tables on demand: a statement that finds them
//! missing migrates and runs once more.

#[cfg(any(test, feature = "rusqlite"))]
mod rusqlite_sql;
mod schema;

#[cfg(any(test, feature = "rusqlite"))]
pub use rusqlite_sql::RusqliteSql;
pub use schema::{Schema, SchemaError};

/// A connection that runs one SQL statement at a time.
pub trait Sql {
    /// Runs a single statement (no trailing statements) with positional parameters and returns
    /// the rows it produced, if any.
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError>;

    /// The caller will not run a statement for a while (it waits on the network): give the
    /// connection back if holding it costs others; the next statement opens one again.
    fn release_connection(&self) {}
}

/// A borrowed connection is a connection: stores that share one take `&S`.
impl<S: Sql + ?Sized> Sql for &S {
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError> {
        (**self).execute(statement, parameters)
    }

    fn release_connection(&self) {
        (**self).release_connection();
    }
}

/// A value passed to or read from SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// SQL `NULL`.
    Null,
}

/// The rows a statement produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    /// The result's column names.
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

/// A statement failed; `message` is SQLite's own text (`UNIQUE constraint failed: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// What SQLite said.
    pub message: String,
}

impl SqlError {
    /// Whether the statement failed because the schema it uses is not there yet (or not yet
    /// in its current form): a store then migrates and runs the statement once more.
    pub fn is_missing_schema(&self) -> bool {
        [
            "no such table",
            "no such column",
            "has no column named",
            "no such view",
        ]
        .iter()
        .any(|symptom| self.message.contains(symptom))
    }

    /// Whether the statement broke the UNIQUE (or PRIMARY KEY) constraint on `columns`, as
    /// SQLite names them (`orders.id`, `jobs.kind, jobs.order_id`).
    pub fn is_unique_violation(&self, columns: &str) -> bool {
        self.message
            .split_once("UNIQUE constraint failed: ")
            .is_some_and(|(_, failed)| failed == columns)
    }
}

impl SqlValue {
    /// An unsigned count or time, saturating at `i64::MAX` (see [`saturating_i64`]).
    pub fn unsigned(value: u64) -> Self {
        Self::Integer(saturating_i64(value))
    }

    /// Text.
    pub fn text(text: &str) -> Self {
        Self::Text(text.to_owned())
    }

    /// Text, or `NULL`.
    pub fn optional_text(text: Option<&str>) -> Self {
        text.map_or(Self::Null, Self::text)
    }

    /// What kind of value this is, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Self::Integer(_) => "an integer",
            Self::Real(_) => "a real",
            Self::Text(_) => "text",
            Self::Blob(_) => "a blob",
            Self::Null => "NULL",
        }
    }
}

/// `value` as SQLite's integer, saturating at `i64::MAX`.
pub fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads a row's values in order, each checked against the type its column must have. Errors
/// are a description of the column at fault, for the caller's "corrupt row" error.
pub struct RowReader<'row> {
    values: std::slice::Iter<'row, SqlValue>,
}

impl<'row> RowReader<'row> {
    /// A reader over one row.
    pub fn new(row: &'row [SqlValue]) -> Self {
        Self { values: row.iter() }
    }

    fn next(&mut self, column: &str) -> Result<&'row SqlValue, String> {
        self.values
            .next()
            .ok_or_else(|| format!("the result has no {column} column"))
    }

    fn unexpected(column: &str, expected: &str, found: &SqlValue) -> String {
        format!("{column} should be {expected}, found {}", found.kind())
    }

    /// Text or `NULL`.
    pub fn optional_text(&mut self, column: &str) -> Result<Option<String>, String> {
        match self.next(column)? {
            SqlValue::Text(text) => Ok(Some(text.clone())),
            SqlValue::Null => Ok(None),
            other => Err(Self::unexpected(column, "text", other)),
        }
    }

    /// Text.
    pub fn text(&mut self, column: &str) -> Result<String, String> {
        self.optional_text(column)?
            .ok_or_else(|| format!("{column} should be text, found NULL"))
    }

    /// An integer or `NULL`.
    pub fn optional_integer(&mut self, column: &str) -> Result<Option<i64>, String> {
        match self.next(column)? {
            SqlValue::Integer(value) => Ok(Some(*value)),
            SqlValue::Null => Ok(None),
            other => Err(Self::unexpected(column, "an integer", other)),
        }
    }

    /// An integer.
    pub fn integer(&mut self, column: &str) -> Result<i64, String> {
        self.optional_integer(column)?
            .ok_or_else(|| format!("{column} should be an integer, found NULL"))
    }

    /// A non-negative integer that fits `T`, or `NULL`.
    pub fn optional_count<T: TryFrom<i64>>(&mut self, column: &str) -> Result<Option<T>, String> {
        self.optional_integer(column)?
            .map(|value| {
                T::try_from(value).map_err(|_| format!("{column} is out of range: {value}"))
            })
            .transpose()
    }

    /// A non-negative integer that fits `T`.
    pub fn count<T: TryFrom<i64>>(&mut self, column: &str) -> Result<T, String> {
        self.optional_count(column)?
            .ok_or_else(|| format!("{column} should be an integer, found NULL"))
    }

    /// A flag stored as 0 or 1.
    pub fn flag(&mut self, column: &str) -> Result<bool, String> {
        match self.integer(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{column} should be 0 or 1, found {other}")),
        }
    }

    /// Bytes or `NULL` (text is taken as its UTF-8 bytes).
    pub fn optional_blob(&mut self, column: &str) -> Result<Option<Vec<u8>>, String> {
        match self.next(column)? {
            SqlValue::Blob(bytes) => Ok(Some(bytes.clone())),
            SqlValue::Text(text) => Ok(Some(text.clone().into_bytes())),
            SqlValue::Null => Ok(None),
            other => Err(Self::unexpected(column, "a blob", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(message: &str) -> SqlError {
        SqlError {
            message: message.into(),
        }
    }

    #[test]
    fn recognises_a_missing_schema() {
        assert!(error("no such table: jobs").is_missing_schema());
        assert!(error("no such column: items").is_missing_schema());
        assert!(error("table orders has no column named items").is_missing_schema());
        assert!(error("no such view: order_intake").is_missing_schema());
        assert!(!error("database is locked").is_missing_schema());
    }

    #[test]
    fn recognises_which_unique_constraint_failed() {
        let key = error("UNIQUE constraint failed: orders.idempotency_key");
        assert!(key.is_unique_violation("orders.idempotency_key"));
        assert!(!key.is_unique_violation("orders.id"));
        assert!(error("io: UNIQUE constraint failed: orders.id").is_unique_violation("orders.id"));
        assert!(!error("NOT NULL constraint failed: orders.id").is_unique_violation("orders.id"));
    }

    #[test]
    fn reads_checked_values() {
        let row = [
            SqlValue::Integer(7),
            SqlValue::Null,
            SqlValue::Text("x".into()),
            SqlValue::Integer(-1),
        ];
        let mut reader = RowReader::new(&row);
        assert_eq!(reader.count::<u32>("a"), Ok(7));
        assert_eq!(reader.optional_text("b"), Ok(None));
        assert_eq!(
            reader.integer("c"),
            Err("c should be an integer, found text".into())
        );
        assert_eq!(
            reader.count::<u64>("d"),
            Err("d is out of range: -1".into())
        );
        assert_eq!(reader.text("e"), Err("the result has no e column".into()));
    }
}
