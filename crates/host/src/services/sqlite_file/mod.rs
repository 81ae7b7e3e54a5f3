//! SQLite files as Orderly uses them (the SQLite databases and the `spin` key-value store):
//! opened the same way, and checkpointed off the request path.

mod checkpointer;

pub(crate) use checkpointer::Checkpointer;

use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another connection's lock on the file.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a database file each connection maps into memory: reads of pages another
/// connection's commit invalidated come from the shared mapping instead of a `pread` each.
const MMAP_SIZE: i64 = 256 << 20;

/// Opens the SQLite file at `path` as every Orderly file is used: WAL mode with
/// `synchronous = NORMAL` (see the README on durability), memory-mapped reads, no automatic
/// checkpoints (whoever owns the file runs a [`Checkpointer`]), waiting up
/// to [`BUSY_TIMEOUT`] for another connection's lock.
pub(crate) fn open_file(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}
