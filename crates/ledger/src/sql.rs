//! The ledger's timestamps in SQLite: milliseconds since the epoch, saturating at `i64::MAX`.

use orderly_sql::{RowReader, SqlValue, saturating_i64};
use orders_core::Timestamp;

/// A timestamp as stored.
pub(crate) fn stored_millis(at: Timestamp) -> i64 {
    saturating_i64(at.millis())
}

/// Timestamps as statement parameters.
pub(crate) trait TimestampValue {
    /// A timestamp as stored (see [`stored_millis`]).
    fn millis(at: Timestamp) -> Self;
}

impl TimestampValue for SqlValue {
    fn millis(at: Timestamp) -> Self {
        Self::Integer(stored_millis(at))
    }
}

/// Timestamps read back from rows.
pub(crate) trait TimestampColumns {
    /// A timestamp or `NULL`.
    fn optional_timestamp(&mut self, column: &str) -> Result<Option<Timestamp>, String>;

    /// A timestamp.
    fn timestamp(&mut self, column: &str) -> Result<Timestamp, String>;
}

impl TimestampColumns for RowReader<'_> {
    fn optional_timestamp(&mut self, column: &str) -> Result<Option<Timestamp>, String> {
        Ok(self.optional_count::<u64>(column)?.map(Timestamp))
    }

    fn timestamp(&mut self, column: &str) -> Result<Timestamp, String> {
        self.count::<u64>(column).map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_timestamps_as_milliseconds() {
        assert_eq!(SqlValue::millis(Timestamp(7)), SqlValue::Integer(7));
        assert_eq!(
            SqlValue::millis(Timestamp(u64::MAX)),
            SqlValue::Integer(i64::MAX)
        );
        let row = [SqlValue::Integer(5), SqlValue::Null, SqlValue::Integer(-1)];
        let mut reader = RowReader::new(&row);
        assert_eq!(reader.timestamp("a"), Ok(Timestamp(5)));
        assert_eq!(reader.optional_timestamp("b"), Ok(None));
        assert_eq!(reader.timestamp("c"), Err("c is out of range: -1".into()));
    }
}
