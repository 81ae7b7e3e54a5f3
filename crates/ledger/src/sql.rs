//! The one thing the ledger needs from a database: run a single SQL statement with
//! parameters and get its rows back (as `spin:sqlite` offers it), and helpers to read those
//! rows back into checked values.

use orders_core::Timestamp;

/// A connection that runs one SQL statement at a time.
pub trait Sql {
    /// Runs a single statement (no trailing statements) with positional parameters and returns
    /// the rows it produced, if any.
    fn execute(&self, statement: &str, parameters: &[SqlValue]) -> Result<SqlRows, SqlError>;

    /// The caller will not run a statement for a while (it waits on the network): give the
    /// connection back if holding it costs others; the next statement opens one again.
    fn release_connection(&self) {}
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
    /// in its current form): the ledger then migrates and runs the statement once more.
    pub(crate) fn is_missing_schema(&self) -> bool {
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
    pub(crate) fn is_unique_violation(&self, columns: &str) -> bool {
        self.message
            .split_once("UNIQUE constraint failed: ")
            .is_some_and(|(_, failed)| failed == columns)
    }
}

impl SqlValue {
    /// A timestamp as stored (see [`stored_millis`]).
    pub(crate) fn millis(at: Timestamp) -> Self {
        Self::Integer(stored_millis(at))
    }

    /// Text.
    pub(crate) fn text(text: &str) -> Self {
        Self::Text(text.to_owned())
    }

    /// Text, or `NULL`.
    pub(crate) fn optional_text(text: Option<&str>) -> Self {
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

/// A timestamp as stored: milliseconds since the epoch, saturating at `i64::MAX`.
pub(crate) fn stored_millis(at: Timestamp) -> i64 {
    saturating_i64(at.millis())
}

/// `value` as SQLite's integer, saturating at `i64::MAX`.
pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads a row's values in order, each checked against the type its column must have. Errors
/// are a description of the column at fault, for [`crate::LedgerError::Corrupt`].
pub(crate) struct RowReader<'row> {
    values: std::slice::Iter<'row, SqlValue>,
}

impl<'row> RowReader<'row> {
    /// A reader over one row.
    pub(crate) fn new(row: &'row [SqlValue]) -> Self {
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
    pub(crate) fn optional_text(&mut self, column: &str) -> Result<Option<String>, String> {
        match self.next(column)? {
            SqlValue::Text(text) => Ok(Some(text.clone())),
            SqlValue::Null => Ok(None),
            other => Err(Self::unexpected(column, "text", other)),
        }
    }

    /// Text.
    pub(crate) fn text(&mut self, column: &str) -> Result<String, String> {
        self.optional_text(column)?
            .ok_or_else(|| format!("{column} should be text, found NULL"))
    }

    /// An integer or `NULL`.
    pub(crate) fn optional_integer(&mut self, column: &str) -> Result<Option<i64>, String> {
        match self.next(column)? {
            SqlValue::Integer(value) => Ok(Some(*value)),
            SqlValue::Null => Ok(None),
            other => Err(Self::unexpected(column, "an integer", other)),
        }
    }

    /// An integer.
    pub(crate) fn integer(&mut self, column: &str) -> Result<i64, String> {
        self.optional_integer(column)?
            .ok_or_else(|| format!("{column} should be an integer, found NULL"))
    }

    /// A non-negative integer that fits `T`, or `NULL`.
    pub(crate) fn optional_count<T: TryFrom<i64>>(
        &mut self,
        column: &str,
    ) -> Result<Option<T>, String> {
        self.optional_integer(column)?
            .map(|value| {
                T::try_from(value).map_err(|_| format!("{column} is out of range: {value}"))
            })
            .transpose()
    }

    /// A non-negative integer that fits `T`.
    pub(crate) fn count<T: TryFrom<i64>>(&mut self, column: &str) -> Result<T, String> {
        self.optional_count(column)?
            .ok_or_else(|| format!("{column} should be an integer, found NULL"))
    }

    /// A flag stored as 0 or 1.
    pub(crate) fn flag(&mut self, column: &str) -> Result<bool, String> {
        match self.integer(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{column} should be 0 or 1, found {other}")),
        }
    }

    /// A timestamp (milliseconds since the epoch) or `NULL`.
    pub(crate) fn optional_timestamp(&mut self, column: &str) -> Result<Option<Timestamp>, String> {
        Ok(self.optional_count::<u64>(column)?.map(Timestamp))
    }

    /// A timestamp (milliseconds since the epoch).
    pub(crate) fn timestamp(&mut self, column: &str) -> Result<Timestamp, String> {
        self.count::<u64>(column).map(Timestamp)
    }

    /// Bytes or `NULL` (text is taken as its UTF-8 bytes).
    pub(crate) fn optional_blob(&mut self, column: &str) -> Result<Option<Vec<u8>>, String> {
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
        assert_eq!(reader.timestamp("d"), Err("d is out of range: -1".into()));
        assert_eq!(reader.text("e"), Err("the result has no e column".into()));
    }
}
