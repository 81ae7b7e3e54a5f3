//! The `spin` key-value backend: a SQLite file with Spin's schema, so a `.spin` folder written by
//! real Spin reads the same here and back.

use super::backend::{Backend, StoreError, add_to_counter};
use crate::services::lock::lock;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One SQLite key-value file, shared by every label stored in it and every instance. Its one
/// connection serialises the calls in process: a lock queue instead of SQLite's busy handler,
/// which sleeps between retries when connections contend for the write lock (every `increment`
/// writes).
pub struct SqliteKvFile {
    connection: Mutex<Option<Connection>>,
    /// Copies the file's log into it in the background (`None` in memory or once closed).
    checkpointer: Mutex<Option<crate::services::sqlite_file::Checkpointer>>,
}

/// One label's view of a [`SqliteKvFile`].
pub struct SqliteStore {
    file: Arc<SqliteKvFile>,
    label: String,
}

impl SqliteKvFile {
    /// Opens (creating if needed) the file at `path`, or an in-memory store for `None`.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Arc<Self>> {
        let (connection, checkpointer) = match path {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                (
                    crate::services::sqlite_file::open_file(path)?,
                    Some(crate::services::sqlite_file::Checkpointer::start(path)?),
                )
            }
            None => (Connection::open_in_memory()?, None),
        };
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
        )?;
        Ok(Arc::new(Self {
            connection: Mutex::new(Some(connection)),
            checkpointer: Mutex::new(checkpointer),
        }))
    }

    /// The store for one label.
    pub fn store(self: &Arc<Self>, label: &str) -> SqliteStore {
        SqliteStore {
            file: Arc::clone(self),
            label: label.to_owned(),
        }
    }

    /// Closes the connection (checkpointing the WAL); later calls fail.
    pub fn close(&self) -> anyhow::Result<()> {
        drop(lock(&self.checkpointer).take());
        let taken = self.lock().take();
        if let Some(connection) = taken {
            connection.close().map_err(|(_, error)| error)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // A panic cannot leave SQLite inconsistent: every write is a single statement or a
        // transaction that rolls back when dropped.
        lock(&self.connection)
    }
}

impl SqliteStore {
    /// Runs `work` on the connection off the async threads.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &str) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let file = Arc::clone(&self.file);
        let label = self.label.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = file.lock();
            let connection = guard
                .as_mut()
                .ok_or_else(|| StoreError::Backend("the key-value store is closed".into()))?;
            work(connection, &label)
        })
        .await
        .map_err(|error| StoreError::Backend(format!("key-value task failed: {error}")))?
    }
}

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

const GET: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";

#[async_trait]
impl Backend for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.run(move |c, label| {
            c.prepare_cached(GET)
                .and_then(|mut s| {
                    s.query_row(params![label, key], |row| row.get(0))
                        .optional()
                })
                .map_err(backend)
        })
        .await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |c, label| {
            c.prepare_cached(UPSERT)
                .and_then(|mut s| s.execute(params![label, key, value]))
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(move |c, label| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![label, key]))
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run(move |c, label| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut s| s.exists(params![label, key]))
                .map_err(backend)
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.run(move |c, label| {
            let mut statement = c
                .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")
                .map_err(backend)?;
            let rows = statement
                .query_map(params![label], |row| row.get(0))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys = keys.to_vec();
        self.run(move |c, label| {
            let mut statement = c.prepare_cached(GET).map_err(backend)?;
            keys.iter()
                .map(|key| {
                    statement
                        .query_row(params![label, key], |row| row.get(0))
                        .optional()
                        .map_err(backend)
                })
                .collect()
        })
        .await
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let pairs = pairs.to_vec();
        self.run(move |c, label| {
            let tx = c.transaction().map_err(backend)?;
            {
                let mut statement = tx.prepare_cached(UPSERT).map_err(backend)?;
                for (key, value) in &pairs {
                    statement
                        .execute(params![label, key, value])
                        .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let keys = keys.to_vec();
        self.run(move |c, label| {
            let tx = c.transaction().map_err(backend)?;
            {
                let mut statement = tx
                    .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                    .map_err(backend)?;
                for key in &keys {
                    statement.execute(params![label, key]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let key = key.to_owned();
        self.run(move |c, label| {
            // IMMEDIATE takes the write lock up front, so other processes sharing the file
            // cannot interleave between the read and the write.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let current: Option<Vec<u8>> = tx
                .prepare_cached(GET)
                .and_then(|mut s| {
                    s.query_row(params![label, key], |row| row.get(0))
                        .optional()
                })
                .map_err(backend)?;
            let next = add_to_counter(&key, current.as_deref(), delta)?;
            tx.prepare_cached(UPSERT)
                .and_then(|mut s| s.execute(params![label, key, next.to_le_bytes().to_vec()]))
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(next)
        })
        .await
    }

    async fn swap_if(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let (key, expected, value) = (key.to_owned(), expected.to_owned(), value.to_owned());
        self.run(move |c, label| {
            c.prepare_cached(
                "UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3",
            )
            .and_then(|mut s| s.execute(params![label, key, expected, value]))
            .map(|changed| changed == 1)
            .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_share_a_file_but_not_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteKvFile::open(Some(&dir.path().join("kv.db"))).unwrap();
        let a = file.store("a");
        let b = file.store("b");
        a.set("k", b"1").await.unwrap();
        assert_eq!(a.get("k").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get("k").await.unwrap(), None);
        assert!(a.exists("k").await.unwrap());
        a.set_many(&[("x".into(), b"2".to_vec()), ("y".into(), b"3".to_vec())])
            .await
            .unwrap();
        assert_eq!(a.keys().await.unwrap(), ["k", "x", "y"]);
        assert_eq!(
            a.get_many(&["y".into(), "nope".into()]).await.unwrap(),
            [Some(b"3".to_vec()), None]
        );
        a.delete_many(&["x".into(), "y".into()]).await.unwrap();
        a.delete("k").await.unwrap();
        assert!(a.keys().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn increment_and_compare_and_swap() {
        let file = SqliteKvFile::open(None).unwrap();
        let store = file.store("default");
        assert_eq!(store.increment("n", 2).await.unwrap(), 2);
        assert_eq!(store.increment("n", 3).await.unwrap(), 5);
        assert_eq!(
            store.get("n").await.unwrap(),
            Some(5i64.to_le_bytes().to_vec())
        );
        store.set("t", b"text").await.unwrap();
        assert!(matches!(
            store.increment("t", 1).await,
            Err(StoreError::NotACounter { .. })
        ));
        assert!(store.swap_if("t", b"text", b"new").await.unwrap());
        assert!(!store.swap_if("t", b"text", b"newer").await.unwrap());
        assert!(!store.swap_if("absent", b"x", b"y").await.unwrap());
        assert_eq!(store.get("t").await.unwrap(), Some(b"new".to_vec()));
    }

    #[tokio::test]
    async fn data_survives_reopening_and_close_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let file = SqliteKvFile::open(Some(&path)).unwrap();
        file.store("s").set("k", b"v").await.unwrap();
        file.close().unwrap();
        assert!(file.store("s").get("k").await.is_err());
        assert!(!dir.path().join("kv.db-wal").exists());
        let reopened = SqliteKvFile::open(Some(&path)).unwrap();
        assert_eq!(
            reopened.store("s").get("k").await.unwrap(),
            Some(b"v".to_vec())
        );
    }
}
