//! Versioned schemas created on demand: a store lists the statements that take its schema from
//! each version to the next, and runs its statements through [`Schema::run`], which migrates
//! and tries once more when a statement finds the schema missing.

use crate::{Sql, SqlError, SqlRows, SqlValue};

/// A store's schema: its migrations and the table recording which of them ran.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The table that records the applied versions, one row each (`inventory_schema`). It is
    /// created by the first migration; its name is written into statements, so it must be a
    /// plain identifier.
    pub version_table: &'static str,
    /// `migrations[n]` takes the schema from version `n` to `n + 1`, one statement per entry.
    pub migrations: &'static [&'static [&'static str]],
}

/// Why a statement run through [`Schema::run`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema was missing or out of date, and bringing it up to date failed.
    #[error("its schema could not be created or upgraded")]
    Migration(#[source] SqlError),
    /// The statement itself failed.
    #[error(transparent)]
    Statement(SqlError),
}

impl Schema {
    /// Creates the schema or brings it up to date. Idempotent, and safe when instances race:
    /// it runs in one `BEGIN IMMEDIATE` transaction (one statement per call, as Spin allows),
    /// so the first instance migrates and the others find the work done.
    pub fn migrate(&self, sql: &impl Sql) -> Result<(), SqlError> {
        sql.execute("BEGIN IMMEDIATE", &[])?;
        let outcome = self
            .migrate_in_transaction(sql)
            .and_then(|()| sql.execute("COMMIT", &[]).map(drop));
        if outcome.is_err() {
            // The transaction may still be open; if SQLite already rolled it back, this fails
            // harmlessly.
            let _ = sql.execute("ROLLBACK", &[]);
        }
        outcome
    }

    /// Runs one statement; when the schema it needs is missing, migrates and runs it once
    /// more.
    pub fn run(
        &self,
        sql: &impl Sql,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<SqlRows, SchemaError> {
        match sql.execute(statement, parameters) {
            Err(error) if error.is_missing_schema() => {
                self.migrate(sql).map_err(SchemaError::Migration)?;
                sql.execute(statement, parameters)
                    .map_err(SchemaError::Statement)
            }
            result => result.map_err(SchemaError::Statement),
        }
    }

    fn migrate_in_transaction(&self, sql: &impl Sql) -> Result<(), SqlError> {
        let table = self.version_table;
        sql.execute(
            &format!("CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY)"),
            &[],
        )?;
        let found = sql.execute(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            &[],
        )?;
        let version = match found.rows.first().map(Vec::as_slice) {
            Some([SqlValue::Integer(version)]) => usize::try_from(*version).ok(),
            _ => None,
        }
        .ok_or_else(|| SqlError {
            message: format!("{table} holds no readable schema version"),
        })?;
        for (from, statements) in self.migrations.iter().enumerate().skip(version) {
            for statement in *statements {
                sql.execute(statement, &[])?;
            }
            sql.execute(
                &format!("INSERT INTO {table} (version) VALUES (?1)"),
                &[SqlValue::unsigned(from as u64 + 1)],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RusqliteSql;

    const FIRST: &[&str] = &["CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)"];
    const SECOND: &[&str] = &["ALTER TABLE things ADD COLUMN colour TEXT"];

    fn database() -> (tempfile::TempDir, RusqliteSql) {
        let directory = tempfile::tempdir().unwrap();
        let sql = RusqliteSql::open(directory.path().join("schema.db")).unwrap();
        (directory, sql)
    }

    fn versions(sql: &RusqliteSql) -> Vec<Vec<SqlValue>> {
        sql.execute("SELECT version FROM things_schema ORDER BY version", &[])
            .unwrap()
            .rows
    }

    #[test]
    fn a_statement_that_finds_the_schema_missing_migrates_and_runs_again() {
        let (_directory, sql) = database();
        let schema = Schema {
            version_table: "things_schema",
            migrations: &[FIRST],
        };
        let inserted = schema
            .run(
                &sql,
                "INSERT INTO things (name) VALUES (?1) RETURNING id",
                &[SqlValue::text("a")],
            )
            .unwrap();
        assert_eq!(inserted.rows, vec![vec![SqlValue::Integer(1)]]);
        assert_eq!(versions(&sql), vec![vec![SqlValue::Integer(1)]]);
        // Migrating again changes nothing.
        schema.migrate(&sql).unwrap();
        assert_eq!(versions(&sql), vec![vec![SqlValue::Integer(1)]]);
    }

    #[test]
    fn upgrades_run_only_the_versions_not_yet_applied() {
        let (_directory, sql) = database();
        let first = Schema {
            version_table: "things_schema",
            migrations: &[FIRST],
        };
        first.migrate(&sql).unwrap();
        let second = Schema {
            migrations: &[FIRST, SECOND],
            ..first
        };
        second
            .run(
                &sql,
                "INSERT INTO things (name, colour) VALUES ('b', 'red')",
                &[],
            )
            .unwrap();
        assert_eq!(
            versions(&sql),
            vec![vec![SqlValue::Integer(1)], vec![SqlValue::Integer(2)]]
        );
    }

    #[test]
    fn failures_say_whether_the_migration_or_the_statement_failed() {
        let (_directory, sql) = database();
        let broken = Schema {
            version_table: "things_schema",
            migrations: &[&["CREATE TABLE things (oops"]],
        };
        let failed = broken.run(&sql, "SELECT * FROM things", &[]);
        assert!(
            matches!(failed, Err(SchemaError::Migration(_))),
            "{failed:?}"
        );
        // The failed migration left nothing behind: no version was recorded.
        assert!(
            sql.execute("SELECT 1 FROM things_schema", &[])
                .unwrap_or_default()
                .rows
                .is_empty()
        );

        let schema = Schema {
            version_table: "things_schema",
            migrations: &[FIRST],
        };
        let failed = schema.run(&sql, "INSERT INTO things (id) VALUES ('x')", &[]);
        assert!(
            matches!(&failed, Err(SchemaError::Statement(error)) if error.message.contains("datatype mismatch")),
            "{failed:?}"
        );
    }
}
