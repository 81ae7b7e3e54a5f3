//! `spin:sqlite/sqlite@3.0.0`: SQLite databases by label, in WAL mode. Each guest `open` gets a
//! fresh connection of its own, as in Spin, so nothing one guest sets on its connection (a
//! pragma, an attached file, a temporary table, an open transaction) reaches another.

use crate::bindings::spin::sqlite::sqlite as wit;
use crate::grant::Grant;
use crate::view::{View, ViewOf};
use orderly_manifest::{Problem, RuntimeConfig, SqliteDatabaseConfig};
use rusqlite::types::{Value as SqlValue, ValueRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Linker, Resource};

/// Most guest connections open at once to one database.
const MAX_CONNECTIONS: usize = 32;
/// How long `open` waits for a free connection before failing.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest query result handed to a guest.
const MAX_RESULT_BYTES: usize = 64 << 20;

/// Every SQLite database the application uses, by label.
#[derive(Default)]
pub struct Databases {
    by_label: BTreeMap<String, Arc<Database>>,
}

struct Database {
    location: Location,
    /// Open while the database is in use: it keeps an in-memory database alive, and spares each
    /// guest connection from being the last to close a file (which checkpoints the WAL).
    anchor: Mutex<Option<rusqlite::Connection>>,
    permits: Arc<Semaphore>,
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
    ) -> Result<Self, Vec<Problem>> {
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
                    problems.push(Problem::new(
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
                problems.push(Problem::new(
                    format!("SQLite database `{label}`"),
                    format!("cannot create {}: {error}", parent.display()),
                    "check the path and its permissions in runtime-config.toml",
                ));
                continue;
            }
            let database = Database {
                location,
                anchor: Mutex::new(None),
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            };
            // Open the anchor now: a bad path fails start-up.
            match database.connect() {
                Ok(connection) => *database.lock_anchor() = Some(connection),
                Err(error) => {
                    problems.push(Problem::new(
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

    /// Closes the databases (with guests done, this checkpoints each write-ahead log).
    pub fn close(&self) {
        for database in self.by_label.values() {
            let anchor = database.lock_anchor().take();
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
            Location::File(path) => {
                let connection = rusqlite::Connection::open(path)?;
                connection.pragma_update(None, "journal_mode", "WAL")?;
                connection.pragma_update(None, "synchronous", "NORMAL")?;
                connection
            }
            Location::Memory(uri) => rusqlite::Connection::open_with_flags(
                uri,
                rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )?,
        };
        connection.busy_timeout(Duration::from_secs(5))?;
        Ok(connection)
    }

    fn lock_anchor(&self) -> std::sync::MutexGuard<'_, Option<rusqlite::Connection>> {
        self.anchor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh connection for a guest, once one of [`MAX_CONNECTIONS`] is free.
    async fn open(self: &Arc<Self>) -> Result<OpenConnection, wit::Error> {
        let permit = tokio::time::timeout(OPEN_TIMEOUT, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| wit::Error::Io("timed out waiting for a free database connection".into()))?
            .map_err(|_| wit::Error::Io("the database is closed".into()))?;
        let database = Arc::clone(self);
        let connection = tokio::task::spawn_blocking(move || database.connect())
            .await
            .map_err(|error| wit::Error::Io(error.to_string()))?
            .map_err(|error| wit::Error::Io(error.to_string()))?;
        Ok(OpenConnection {
            connection,
            _permit: permit,
        })
    }
}

/// A guest's connection and its place among [`MAX_CONNECTIONS`]; closing it (on drop) rolls
/// back whatever transaction the guest left open.
struct OpenConnection {
    connection: rusqlite::Connection,
    _permit: OwnedSemaphorePermit,
}

/// A guest's open connection (`spin:sqlite` `connection` resource).
pub struct GuestConnection {
    /// `None` only while a statement runs on a blocking thread.
    open: Option<OpenConnection>,
}

/// The SQLite databases one component instance may open.
pub type SqliteAccess = Grant<Databases>;

/// What the SQLite host functions see of an instance.
pub type SqliteView<'a> = View<'a, SqliteAccess>;

/// Adds `spin:sqlite` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> SqliteView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, ViewOf<SqliteAccess>>(linker, view)
}

type WasmResult<T> = wasmtime::Result<Result<T, wit::Error>>;

impl wit::Host for SqliteView<'_> {}

impl wit::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> WasmResult<Resource<GuestConnection>> {
        let Some(databases) = self.access.open(&database) else {
            return Ok(Err(wit::Error::AccessDenied));
        };
        let Some(db) = databases.by_label.get(&database) else {
            return Ok(Err(wit::Error::NoSuchDatabase));
        };
        match db.open().await {
            Ok(open) => Ok(Ok(self.table.push(GuestConnection { open: Some(open) })?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<GuestConnection>,
        statement: String,
        parameters: Vec<wit::Value>,
    ) -> WasmResult<wit::QueryResult> {
        let Some(open) = self.table.get_mut(&connection)?.open.take() else {
            return Ok(Err(wit::Error::InvalidConnection));
        };
        let (open, result) = tokio::task::spawn_blocking(move || {
            let result = run_statement(&open.connection, &statement, parameters);
            (open, result)
        })
        .await?;
        self.table.get_mut(&connection)?.open = Some(open);
        Ok(result)
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<GuestConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(with_connection(self.table.get(&connection)?, |c| {
            c.last_insert_rowid()
        }))
    }

    async fn changes(&mut self, connection: Resource<GuestConnection>) -> wasmtime::Result<u64> {
        Ok(with_connection(self.table.get(&connection)?, |c| {
            c.changes()
        }))
    }

    async fn drop(&mut self, connection: Resource<GuestConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

fn with_connection<R: Default>(
    guest: &GuestConnection,
    read: impl FnOnce(&rusqlite::Connection) -> R,
) -> R {
    guest
        .open
        .as_ref()
        .map(|open| read(&open.connection))
        .unwrap_or_default()
}

fn run_statement(
    connection: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<wit::Value>,
) -> Result<wit::QueryResult, wit::Error> {
    let io = |error: rusqlite::Error| wit::Error::Io(error.to_string());
    let mut prepared = connection.prepare_cached(statement).map_err(io)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let parameters = parameters.into_iter().map(to_sql);
    let mut rows = prepared
        .query(rusqlite::params_from_iter(parameters))
        .map_err(io)?;
    let mut result = Vec::new();
    let mut size = 0usize;
    while let Some(row) = rows.next().map_err(io)? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            let value = from_sql(row.get_ref(index).map_err(io)?)?;
            size += value_size(&value);
            values.push(value);
        }
        if size > MAX_RESULT_BYTES {
            return Err(wit::Error::Io(format!(
                "query result exceeds the limit of {MAX_RESULT_BYTES} bytes"
            )));
        }
        result.push(wit::RowResult { values });
    }
    Ok(wit::QueryResult {
        columns,
        rows: result,
    })
}

fn to_sql(value: wit::Value) -> SqlValue {
    match value {
        wit::Value::Integer(i) => SqlValue::Integer(i),
        wit::Value::Real(r) => SqlValue::Real(r),
        wit::Value::Text(t) => SqlValue::Text(t),
        wit::Value::Blob(b) => SqlValue::Blob(b),
        wit::Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> Result<wit::Value, wit::Error> {
    Ok(match value {
        ValueRef::Null => wit::Value::Null,
        ValueRef::Integer(i) => wit::Value::Integer(i),
        ValueRef::Real(r) => wit::Value::Real(r),
        ValueRef::Text(bytes) => wit::Value::Text(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| wit::Error::Io("a TEXT value is not valid UTF-8".into()))?,
        ),
        ValueRef::Blob(bytes) => wit::Value::Blob(bytes.to_vec()),
    })
}

fn value_size(value: &wit::Value) -> usize {
    match value {
        wit::Value::Text(text) => text.len(),
        wit::Value::Blob(blob) => blob.len(),
        _ => 8,
    }
}
