//! The application's SQLite databases and the connections lent to guests.
//!
//! Each guest `open` gets a connection that behaves as a freshly opened one, as in Spin, so
//! nothing one guest sets on its connection (a pragma, an attached file, a temporary table, an
//! open transaction) reaches another. Opening a connection costs more than most queries (file
//! opens, locks, mapping the WAL index), so a connection goes back to an idle pool when the
//! guest is done, but only if the guest left no trace on it: an authorizer watches every
//! statement prepared on it, and any statement that changes connection state, or a
//! transaction left open, retires the connection instead. No connection may attach another
//! database file.

use crate::capability::bindings::spin::sqlite::sqlite as wit;
use crate::services::lock::lock;
use crate::services::sqlite_file::{BUSY_TIMEOUT, Checkpointer, open_file};
use orderly_manifest::{ConfigProblem, RuntimeConfig, SqliteDatabaseConfig};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most guest connections open at once to one database (also the most kept idle).
const MAX_CONNECTIONS: usize = 32;
/// How long `open` waits for a free connection before failing.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Every SQLite database the application uses, by label.
#[derive(Default)]
pub struct Databases {
    by_label: BTreeMap<String, Arc<Database>>,
}

/// One database: where it lives, and its connections.
pub struct Database {
    location: Location,
    /// Open while the database is in use: it keeps an in-memory database alive, and spares each
    /// guest connection from being the last to close a file (which checkpoints the WAL).
    anchor: Mutex<Option<rusqlite::Connection>>,
    /// Connections no guest holds, each as good as freshly opened; `None` once closed.
    idle: Mutex<Option<Vec<Reusable>>>,
    permits: Arc<Semaphore>,
    /// Taken by each single-statement write (see [`Lease::write_gate`]).
    write_gate: Mutex<()>,
    /// Copies a file database's log into it in the background; `None` in memory or once
    /// closed.
    checkpointer: Mutex<Option<Checkpointer>>,
}

enum Location {
    File(PathBuf),
    /// An in-memory database (SQLite's `memdb` VFS), shared by this application's connections.
    Memory(String),
}

impl Databases {
    /// Opens every database in `labels` (label → the components that use it), as configured in
    /// `config`. Lists each label without configuration and each file that cannot be opened.
    pub fn open(
        labels: &BTreeMap<String, Vec<String>>,
        config: &RuntimeConfig,
        state_dir: Option<&Path>,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut databases = Self::default();
        let mut problems = Vec::new();
        for (label, users) in labels {
            let location = match config.sqlite_database(label, state_dir) {
                Some(SqliteDatabaseConfig::Spin { path: Some(path) }) => Location::File(path),
                Some(SqliteDatabaseConfig::Spin { path: None }) => {
                    static NEXT: AtomicU64 = AtomicU64::new(0);
                    let n = NEXT.fetch_add(1, Ordering::Relaxed);
                    let pid = std::process::id();
                    Location::Memory(format!("file:/orderly-{pid}-{n}-{label}?vfs=memdb"))
                }
                None => {
                    problems.push(ConfigProblem::new(
                        format!("sqlite_databases = [\"{label}\"]"),
                        format!("unknown SQLite database label `{label}` (used by {})", users.join(", ")),
                        format!(
                            "define it in a runtime config file passed with --runtime-config-file: [sqlite_database.{label}] type = \"spin\" path = \"{label}.db\""
                        ),
                    ));
                    continue;
                }
            };
            if let Location::File(path) = &location
                && let Some(parent) = path.parent()
                && let Err(error) = std::fs::create_dir_all(parent)
            {
                problems.push(ConfigProblem::new(
                    format!("SQLite database `{label}`"),
                    format!("cannot create {}: {error}", parent.display()),
                    "check the path and its permissions in runtime-config.toml",
                ));
                continue;
            }
            let database = Database {
                location,
                anchor: Mutex::new(None),
                idle: Mutex::new(Some(Vec::new())),
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                write_gate: Mutex::new(()),
                checkpointer: Mutex::new(None),
            };
            // Open the anchor now: a bad path fails start-up.
            let checkpointer = match &database.location {
                Location::File(path) => Checkpointer::start(path).map(Some),
                Location::Memory(_) => Ok(None),
            };
            let opened = database
                .connect()
                .map_err(|error| error.to_string())
                .and_then(|c| checkpointer.map(|k| (c, k)).map_err(|e| e.to_string()));
            match opened {
                Ok((connection, checkpointer)) => {
                    *lock(&database.anchor) = Some(connection);
                    *lock(&database.checkpointer) = checkpointer;
                }
                Err(error) => {
                    problems.push(ConfigProblem::new(
                        format!("SQLite database `{label}`"),
                        format!("cannot open {}: {error}", database.location),
                        "check the path and its permissions in runtime-config.toml",
                    ));
                    continue;
                }
            }
            databases.by_label.insert(label.clone(), Arc::new(database));
        }
        if problems.is_empty() {
            Ok(databases)
        } else {
            Err(problems)
        }
    }

    /// The database with this label.
    pub fn get(&self, label: &str) -> Option<&Arc<Database>> {
        self.by_label.get(label)
    }

    /// Closes the databases (with guests done, this checkpoints each write-ahead log). A
    /// connection a guest still holds is closed when the guest lets it go.
    pub fn close(&self) {
        for database in self.by_label.values() {
            database.permits.close();
            drop(lock(&database.checkpointer).take());
            drop(lock(&database.idle).take());
            let anchor = lock(&database.anchor).take();
            if let Some(connection) = anchor
                && let Err((_, error)) = connection.close()
            {
                tracing::warn!(%error, "closing a SQLite database failed");
            }
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Memory(_) => f.write_str("an in-memory database"),
        }
    }
}

impl Database {
    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
        let connection = match &self.location {
            Location::File(path) => open_file(path)?,
            Location::Memory(uri) => {
                let connection = rusqlite::Connection::open_with_flags(
                    uri,
                    rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                )?;
                connection.busy_timeout(BUSY_TIMEOUT)?;
                connection
            }
        };
        // ATTACH (and VACUUM INTO, which attaches its target) would let a guest read and write
        // any file the host can reach: outside its sandbox.
        connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        Ok(connection)
    }

    /// A connection for a guest, once one of [`MAX_CONNECTIONS`] is free: an idle one, or a
    /// new one.
    pub async fn lend(self: &Arc<Self>) -> Result<Lease, wit::Error> {
        let permit = tokio::time::timeout(OPEN_TIMEOUT, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| wit::Error::Io("timed out waiting for a free database connection".into()))?
            .map_err(|_| wit::Error::Io("the database is closed".into()))?;
        let idle = lock(&self.idle).as_mut().and_then(Vec::pop);
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let database = Arc::clone(self);
                tokio::task::spawn_blocking(move || database.connect())
                    .await
                    .map_err(|error| wit::Error::Io(error.to_string()))?
                    .map(Reusable::watch)
                    .map_err(|error| wit::Error::Io(error.to_string()))?
            }
        };
        Ok(Lease {
            changes_when_lent: connection.connection.total_changes(),
            connection: Some(connection),
            database: Arc::clone(self),
            _permit: permit,
        })
    }
}

/// A connection with a watch on whether it still behaves as freshly opened.
struct Reusable {
    connection: rusqlite::Connection,
    /// Set by the authorizer when a statement would change connection state.
    state_changed: Arc<AtomicBool>,
}

impl Reusable {
    fn watch(connection: rusqlite::Connection) -> Self {
        let state_changed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&state_changed);
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            if changes_connection_state(&context.action) {
                flag.store(true, Ordering::Relaxed);
            }
            Authorization::Allow
        }));
        Self {
            connection,
            state_changed,
        }
    }

    /// Whether another guest may have this connection: nothing changed its state and no
    /// transaction is open.
    fn is_reusable(&self) -> bool {
        !self.state_changed.load(Ordering::Relaxed) && self.connection.is_autocommit()
    }
}

/// Whether an action leaves something on the connection that a later guest could see:
/// pragmas, attached databases (refused anyway), temporary objects, virtual tables (which may live in `temp`).
fn changes_connection_state(action: &AuthAction<'_>) -> bool {
    matches!(
        action,
        AuthAction::Pragma { .. }
            | AuthAction::Attach { .. }
            | AuthAction::Detach { .. }
            | AuthAction::CreateTempIndex { .. }
            | AuthAction::CreateTempTable { .. }
            | AuthAction::CreateTempTrigger { .. }
            | AuthAction::CreateTempView { .. }
            | AuthAction::CreateVtable { .. }
            | AuthAction::DropVtable { .. }
            | AuthAction::Unknown { .. }
    )
}

/// A connection lent to one guest `open`, and its place among [`MAX_CONNECTIONS`]. When the
/// guest lets it go, it returns to the idle pool if still as good as new, and is closed
/// otherwise (rolling back whatever transaction the guest left open).
pub struct Lease {
    /// `None` only while being returned.
    connection: Option<Reusable>,
    /// The connection's `total_changes` when lent: telling this guest's changes from those of
    /// guests before it.
    changes_when_lent: u64,
    database: Arc<Database>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The connection.
    pub fn connection(&self) -> &rusqlite::Connection {
        &self
            .connection
            .as_ref()
            .expect("a lease holds its connection until dropped")
            .connection
    }

    /// What a write statement holds while it runs, when it runs outside an explicit
    /// transaction: writers of this process then queue here, each woken as soon as the one
    /// before is done, instead of colliding on SQLite's file lock, whose busy handler sleeps
    /// for growing intervals (1 ms, 2 ms, 5 ms, ... 100 ms) and makes tail latency soar. A
    /// statement inside a guest's explicit transaction takes no gate: the transaction already
    /// holds (or is taking) SQLite's lock, and waiting on the gate could deadlock with a writer
    /// that waits for that lock. Other processes sharing the file still meet the busy handler.
    pub fn write_gate(&self) -> Option<MutexGuard<'_, ()>> {
        self.connection()
            .is_autocommit()
            .then(|| lock(&self.database.write_gate))
    }

    /// Rows changed by this guest's latest INSERT, UPDATE or DELETE (0 before its first), as
    /// on a fresh connection.
    pub fn changes(&self) -> u64 {
        let connection = self.connection();
        if connection.total_changes() == self.changes_when_lent {
            0
        } else {
            connection.changes()
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(reusable) = self.connection.take() else {
            return;
        };
        if !reusable.is_reusable() {
            return;
        }
        // A fresh connection reports rowid 0 until its first INSERT.
        // SAFETY: the handle is this open connection's, used on this thread only, and
        // `sqlite3_set_last_insert_rowid` has no other precondition.
        unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(reusable.connection.handle(), 0) };
        if let Some(idle) = lock(&self.database.idle).as_mut() {
            idle.push(reusable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_database() -> Arc<Database> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let database = Database {
            location: Location::Memory(format!("file:/unit-{n}?vfs=memdb")),
            anchor: Mutex::new(None),
            idle: Mutex::new(Some(Vec::new())),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            write_gate: Mutex::new(()),
            checkpointer: Mutex::new(None),
        };
        *lock(&database.anchor) = Some(database.connect().unwrap());
        database
            .connect()
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        Arc::new(database)
    }

    /// Runs `statement` on a lent connection, lets it go, and says whether the next guest gets
    /// the same connection back (a connection counts its changes from when it was opened).
    async fn reused_after(statement: &str) -> bool {
        let database = memory_database();
        let lease = database.lend().await.unwrap();
        lease
            .connection()
            .execute_batch("INSERT INTO t VALUES (0)")
            .unwrap();
        let _ = lease.connection().execute_batch(statement);
        drop(lease);
        database.lend().await.unwrap().connection().total_changes() > 0
    }

    #[tokio::test]
    async fn a_connection_used_only_for_data_is_reused() {
        assert!(reused_after("INSERT INTO t VALUES (1); SELECT * FROM t").await);
        assert!(reused_after("BEGIN; UPDATE t SET x = 2; COMMIT").await);
        assert!(reused_after("CREATE TABLE u (y); DROP TABLE u").await);
        assert!(reused_after("SELECT * FROM missing").await);
    }

    #[tokio::test]
    async fn a_connection_a_guest_changed_is_retired() {
        for statement in [
            "PRAGMA foreign_keys = OFF",
            "PRAGMA cache_size",
            "CREATE TEMP TABLE scratch (y)",
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
            "BEGIN; INSERT INTO t VALUES (1)",
            "SAVEPOINT s",
        ] {
            assert!(!reused_after(statement).await, "{statement}");
        }
    }

    #[tokio::test]
    async fn a_reused_connection_reports_no_changes_and_no_rowid_before_the_guest_writes() {
        let database = memory_database();
        let lease = database.lend().await.unwrap();
        lease
            .connection()
            .execute_batch("INSERT INTO t VALUES (1), (2)")
            .unwrap();
        assert_eq!(
            (lease.changes(), lease.connection().last_insert_rowid()),
            (2, 2)
        );
        drop(lease);

        let next = database.lend().await.unwrap();
        next.connection().execute_batch("SELECT * FROM t").unwrap();
        assert_eq!(
            (next.changes(), next.connection().last_insert_rowid()),
            (0, 0)
        );
        next.connection()
            .execute_batch("UPDATE t SET x = 0 WHERE x > 5")
            .unwrap();
        assert_eq!(next.changes(), 0);
        next.connection()
            .execute_batch("INSERT INTO t VALUES (3)")
            .unwrap();
        assert_eq!(
            (next.changes(), next.connection().last_insert_rowid()),
            (1, 3)
        );
    }

    #[tokio::test]
    async fn no_connection_reaches_another_file() {
        let database = memory_database();
        let lease = database.lend().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        for statement in [
            format!("ATTACH '{}' AS other", dir.path().join("a.db").display()),
            format!("VACUUM INTO '{}'", dir.path().join("b.db").display()),
        ] {
            let error = lease.connection().execute_batch(&statement).unwrap_err();
            assert!(
                error.to_string().contains("too many attached databases"),
                "{statement}: {error}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn closing_retires_idle_connections_and_those_still_lent() {
        let database = memory_database();
        let lent = database.lend().await.unwrap();
        drop(database.lend().await.unwrap());
        let databases = Databases {
            by_label: BTreeMap::from([("default".to_owned(), Arc::clone(&database))]),
        };
        databases.close();
        drop(lent);
        assert!(lock(&database.idle).is_none());
        assert!(lock(&database.anchor).is_none());
    }
}
