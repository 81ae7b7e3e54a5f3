//! Orderly's durable record in SQLite: orders, their validation jobs (a transactional outbox:
//! jobs live here, messages only wake workers), each order's timeline, idempotency keys, the
//! dead-letter queue, and the outbox of final orders (confirmed or cancelled) that services
//! following orders to their end read with a cursor.
//!
//! The ledger talks to SQLite through [`Sql`], one statement per call, as `spin:sqlite` offers
//! it. Each hot-path operation is a single statement (views with `INSTEAD OF` triggers,
//! `UPDATE ... RETURNING`), so it holds SQLite's write lock once and never leaves a transaction
//! open between calls. The schema is created and upgraded on demand: a statement that finds
//! it missing runs [`Ledger::migrate`] and is tried once more. Time always comes in as
//! [`Timestamp`] arguments.
//!
//! With the `rusqlite` feature, [`RusqliteSql`] (from `orderly-sql`) runs the ledger over a
//! native SQLite file (for tests and tools outside WebAssembly).

mod dead_letters;
mod events;
mod final_orders;
mod intake;
mod reads;
mod sagas;
mod schema;
mod sql;
mod worker;

#[cfg(test)]
mod tests;

pub use dead_letters::{DeadLetter, DeadLetterSource, ReplayOutcome};
pub use events::{EventKind, OrderEvent};
pub use final_orders::FinalOrder;
pub use intake::{Intake, IntakeOutcome, JobHold, StoredKey};
#[cfg(any(test, feature = "rusqlite"))]
pub use orderly_sql::RusqliteSql;
pub use orderly_sql::{Sql, SqlError, SqlRows, SqlValue};
pub use reads::{CursorError, JobView, OrderPage, OrderView, PageCursor, PipelineStats};
pub use sagas::{CancelOutcome, SagaProgress, StoredSaga};
pub use schema::NO_DEADLINE;
pub use worker::{Applied, ClaimedJob, JobResult, NextStep, WorkProbe};

use orders_core::Timestamp;

/// The kind of a new order's validation job.
pub const VALIDATION_JOB: &str = "validate";
/// The kind of a validated order's fulfilment job (its saga's).
pub const FULFILMENT_JOB: &str = "fulfil";

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A statement failed (the database is busy, unavailable, full, ...).
    #[error("the ledger could not {operation}")]
    Sql {
        /// What the ledger was doing.
        operation: &'static str,
        /// The failed statement's error.
        #[source]
        source: SqlError,
    },
    /// A stored row does not hold what the ledger writes.
    #[error("{what} is unreadable: {detail}")]
    Corrupt {
        /// The row at fault (`order "ord_..."`, `job 7`, ...).
        what: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl LedgerError {
    fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// The ledger over one SQLite connection.
pub struct Ledger<S: Sql> {
    sql: S,
}

impl<S: Sql> Ledger<S> {
    /// A ledger using `sql`; nothing is run until the first operation.
    pub fn new(sql: S) -> Self {
        Self { sql }
    }

    /// Lets go of the database connection until the next operation (see [`Sql::release_connection`]):
    /// call it before waiting on something slow, so the wait holds no connection.
    pub fn release_connection(&self) {
        self.sql.release_connection();
    }

    /// Runs one statement; when the schema it needs is missing, migrates and runs it once
    /// more. The outer error is a failed migration, the inner one the statement's own.
    fn execute(
        &self,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<Result<SqlRows, SqlError>, LedgerError> {
        match self.sql.execute(statement, parameters) {
            Err(error) if error.is_missing_schema() => {
                self.migrate()?;
                Ok(self.sql.execute(statement, parameters))
            }
            result => Ok(result),
        }
    }

    /// Runs one statement as [`Ledger::execute`] does, any failure being `operation`'s.
    fn run(
        &self,
        operation: &'static str,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<SqlRows, LedgerError> {
        self.execute(statement, parameters)?
            .map_err(|source| LedgerError::Sql { operation, source })
    }
}

/// Milliseconds from `earlier` to `later`, 0 if `later` is not later.
fn millis_between(earlier: Timestamp, later: Timestamp) -> u64 {
    later.millis().saturating_sub(earlier.millis())
}
