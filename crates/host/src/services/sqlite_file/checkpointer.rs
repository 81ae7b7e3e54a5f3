//! Write-ahead-log checkpoints off the request path. With SQLite's automatic checkpoints, the
//! commit that pushes the log past 1,000 pages copies the log into the database file (and
//! syncs it) before it returns: a stall of milliseconds in whichever request made that commit,
//! every few dozen commits under load. Files Orderly opens disable automatic checkpoints
//! ([`open_file`](super::open_file)), and each file gets a checkpointer: a thread with its own
//! connection that runs a passive checkpoint (one that never blocks readers or writers) every
//! [`CHECKPOINT_EVERY`]. Closing the last connection to a file still checkpoints it fully.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the log is copied into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// A running checkpointer; stopped (and joined) when dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the SQLite file at `path`.
    pub fn start(path: &Path) -> std::io::Result<Self> {
        let connection = super::open_file(path).map_err(std::io::Error::other)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let name = format!("checkpoint {}", path.display());
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            loop {
                match stopped.recv_timeout(CHECKPOINT_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                if let Err(error) =
                    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, "SQLite checkpoint failed; the next one retries");
                }
            }
        })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::HostClock;

    fn wal_frames(connection: &rusqlite::Connection) -> i64 {
        // (busy, frames in the log, frames checkpointed); PASSIVE with nothing to do is a read.
        connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
            .unwrap()
    }

    #[test]
    fn commits_leave_the_log_to_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let connection = super::super::open_file(&path).unwrap();
        connection.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        // Without a checkpointer, 2,000 pages of commits stay in the log: no automatic
        // checkpoint ran.
        for _ in 0..500 {
            connection
                .execute("INSERT INTO t VALUES (zeroblob(16000))", [])
                .unwrap();
        }
        let path_size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(path_size("db.sqlite-wal") > 4_000_000);
        assert!(
            path_size("db.sqlite") < 1_000_000,
            "nothing checkpointed yet"
        );
        let checkpointer = Checkpointer::start(&path).unwrap();
        let clock = crate::services::clock::SystemClock;
        let deadline = clock.now() + Duration::from_secs(10);
        while path_size("db.sqlite") < 4_000_000 {
            assert!(clock.now() < deadline, "no checkpoint ran");
            std::thread::sleep(CHECKPOINT_EVERY);
        }
        drop(checkpointer);
        assert!(wal_frames(&connection) >= 0);
    }
}
