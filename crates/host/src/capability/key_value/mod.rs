//! Key-value stores: `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue` (store, atomics, batch)
//! `@0.2.0-draft2`, both views over the same backends ([`backend`]: a SQLite file, or Redis),
//! opened by label from the runtime config; a component opens the labels it lists in
//! `key_value_stores`.

mod backend;
mod redis;
mod sqlite;

pub use backend::{Backend, StoreError};

use crate::capability::bindings::fermyon::spin2_0_0::key_value as spin_kv;
use crate::capability::bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use crate::capability::{
    Capability, Grant, GrantContext, Has, InstanceContext, OpenContext, View, ViewOf,
};
use crate::services::redis::{RedisAddress, RedisServers};
use orderly_manifest::{ConfigProblem, KeyValueStoreConfig, RuntimeConfig};
use sqlite::SqliteKvFile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

/// Every key-value store the application uses, by label, opened at start-up.
#[derive(Default)]
pub struct KeyValueStores {
    by_label: BTreeMap<String, Arc<dyn Backend>>,
    sqlite_files: Vec<Arc<SqliteKvFile>>,
}

impl KeyValueStores {
    /// Opens the store for every label in `labels` (label → the components that use it), as
    /// configured in `config`. Lists each label that has no configuration.
    pub fn open(
        labels: &BTreeMap<String, Vec<String>>,
        config: &RuntimeConfig,
        state_dir: Option<&Path>,
        redis: &Arc<RedisServers>,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut stores = Self::default();
        let mut files: BTreeMap<Option<PathBuf>, Arc<SqliteKvFile>> = BTreeMap::new();
        let mut problems = Vec::new();
        for (label, users) in labels {
            let backend: Arc<dyn Backend> = match config.key_value_store(label, state_dir) {
                Some(KeyValueStoreConfig::Spin { path }) => {
                    let file = match files.get(&path) {
                        Some(file) => Arc::clone(file),
                        None => match SqliteKvFile::open(path.as_deref()) {
                            Ok(file) => {
                                files.insert(path.clone(), Arc::clone(&file));
                                file
                            }
                            Err(error) => {
                                problems.push(ConfigProblem::new(
                                    format!("key-value store `{label}`"),
                                    format!("cannot open {}: {error:#}", describe(path.as_deref())),
                                    "check the path and its permissions in runtime-config.toml",
                                ));
                                continue;
                            }
                        },
                    };
                    Arc::new(file.store(label))
                }
                Some(KeyValueStoreConfig::Redis { url }) => {
                    let Some(address) = RedisAddress::parse(&url) else {
                        problems.push(ConfigProblem::new(
                            format!("[key_value_store.{label}] url"),
                            format!("{url:?} is not a Redis URL"),
                            "write it as redis://host:port (optionally with /db)",
                        ));
                        continue;
                    };
                    Arc::new(redis::RedisStore::new(Arc::clone(redis), address))
                }
                None => {
                    problems.push(ConfigProblem::new(
                        format!("key_value_stores = [\"{label}\"]"),
                        format!(
                            "unknown key-value store label `{label}` (used by {})",
                            users.join(", ")
                        ),
                        format!(
                            "define it in a runtime config file passed with --runtime-config-file: [key_value_store.{label}] type = \"spin\" path = \"{label}.db\""
                        ),
                    ));
                    continue;
                }
            };
            stores.by_label.insert(label.clone(), backend);
        }
        stores.sqlite_files = files.into_values().collect();
        if problems.is_empty() {
            Ok(stores)
        } else {
            Err(problems)
        }
    }

    /// Closes the files behind the stores, checkpointing their write-ahead logs.
    pub fn close(&self) {
        for file in &self.sqlite_files {
            if let Err(error) = file.close() {
                tracing::warn!(%error, "closing a key-value store failed");
            }
        }
    }
}

fn describe(path: Option<&Path>) -> String {
    path.map_or_else(
        || "an in-memory store".to_owned(),
        |p| p.display().to_string(),
    )
}

/// The key-value stores one component instance may open.
pub type KeyValueAccess = Grant<KeyValueStores>;

impl KeyValueStores {
    /// The backend for `label`, if this component may open it.
    fn open_for(access: &KeyValueAccess, label: &str) -> Result<Arc<dyn Backend>, OpenError> {
        let stores = access.open(label).ok_or(OpenError::AccessDenied)?;
        stores
            .by_label
            .get(label)
            .cloned()
            .ok_or(OpenError::NoSuchStore)
    }
}

enum OpenError {
    AccessDenied,
    NoSuchStore,
}

/// An open `fermyon:spin/key-value` store.
pub struct SpinStore(Arc<dyn Backend>);

/// An open `wasi:keyvalue` bucket.
pub struct Bucket(Arc<dyn Backend>);

/// A `wasi:keyvalue/atomics` compare-and-swap handle. As in Spin, the value to compare with is
/// the one `current` read; a swap without it (or after it found nothing) writes unconditionally.
pub struct Cas {
    backend: Arc<dyn Backend>,
    key: String,
    /// The value `current` read, if it read one.
    expected: Option<Vec<u8>>,
}

/// What the key-value host functions see of an instance.
pub type KeyValueView<'a> = View<'a, KeyValueAccess>;

impl Capability for KeyValueStores {
    type Grant = KeyValueAccess;
    type Instance = KeyValueAccess;

    fn open(cx: &OpenContext<'_>) -> Result<Self, Vec<ConfigProblem>> {
        Self::open(
            &cx.labels(|c| &c.key_value_stores),
            cx.runtime_config,
            cx.state_dir,
            cx.redis,
        )
    }

    fn grant(
        self: &Arc<Self>,
        cx: &GrantContext<'_>,
    ) -> Result<KeyValueAccess, Vec<ConfigProblem>> {
        Ok(Grant::new(Arc::clone(self), &cx.spec.key_value_stores))
    }

    fn instance(grant: &KeyValueAccess, _: &InstanceContext) -> KeyValueAccess {
        grant.clone()
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        let view = <T as Has<Self>>::part;
        spin_kv::add_to_linker::<T, ViewOf<KeyValueAccess>>(linker, view)?;
        wasi_kv::add_to_linker::<T, ViewOf<KeyValueAccess>>(linker, view)?;
        atomics::add_to_linker::<T, ViewOf<KeyValueAccess>>(linker, view)?;
        batch::add_to_linker::<T, ViewOf<KeyValueAccess>>(linker, view)?;
        Ok(())
    }

    fn close(&self) {
        KeyValueStores::close(self);
    }
}

impl From<StoreError> for spin_kv::Error {
    fn from(error: StoreError) -> Self {
        Self::Other(error.to_string())
    }
}

impl From<StoreError> for wasi_kv::Error {
    fn from(error: StoreError) -> Self {
        Self::Other(error.to_string())
    }
}

type WasmResult<T, E> = wasmtime::Result<Result<T, E>>;

impl KeyValueView<'_> {
    fn spin_store(&self, store: &Resource<SpinStore>) -> wasmtime::Result<Arc<dyn Backend>> {
        Ok(Arc::clone(&self.table.get(store)?.0))
    }

    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Arc<dyn Backend>> {
        Ok(Arc::clone(&self.table.get(bucket)?.0))
    }

    /// A new CAS handle with its snapshot taken.
    async fn cas_with_snapshot(
        &mut self,
        backend: Arc<dyn Backend>,
        key: String,
    ) -> WasmResult<Resource<Cas>, wasi_kv::Error> {
        let current = match backend.get(&key).await {
            Ok(current) => current,
            Err(error) => return Ok(Err(error.into())),
        };
        Ok(Ok(self.table.push(Cas {
            backend,
            key,
            expected: current,
        })?))
    }
}

impl spin_kv::Host for KeyValueView<'_> {}

impl spin_kv::HostStore for KeyValueView<'_> {
    async fn open(&mut self, label: String) -> WasmResult<Resource<SpinStore>, spin_kv::Error> {
        match KeyValueStores::open_for(self.access, &label) {
            Ok(backend) => Ok(Ok(self.table.push(SpinStore(backend))?)),
            Err(OpenError::AccessDenied) => Ok(Err(spin_kv::Error::AccessDenied)),
            Err(OpenError::NoSuchStore) => Ok(Err(spin_kv::Error::NoSuchStore)),
        }
    }

    async fn get(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
    ) -> WasmResult<Option<Vec<u8>>, spin_kv::Error> {
        Ok(self.spin_store(&store)?.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> WasmResult<(), spin_kv::Error> {
        Ok(self
            .spin_store(&store)?
            .set(&key, &value)
            .await
            .map_err(Into::into))
    }

    async fn delete(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
    ) -> WasmResult<(), spin_kv::Error> {
        Ok(self
            .spin_store(&store)?
            .delete(&key)
            .await
            .map_err(Into::into))
    }

    async fn exists(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
    ) -> WasmResult<bool, spin_kv::Error> {
        Ok(self
            .spin_store(&store)?
            .exists(&key)
            .await
            .map_err(Into::into))
    }

    async fn get_keys(
        &mut self,
        store: Resource<SpinStore>,
    ) -> WasmResult<Vec<String>, spin_kv::Error> {
        Ok(self.spin_store(&store)?.keys().await.map_err(Into::into))
    }

    async fn drop(&mut self, store: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl wasi_kv::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> WasmResult<Resource<Bucket>, wasi_kv::Error> {
        match KeyValueStores::open_for(self.access, &identifier) {
            Ok(backend) => Ok(Ok(self.table.push(Bucket(backend))?)),
            Err(OpenError::AccessDenied) => Ok(Err(wasi_kv::Error::AccessDenied)),
            Err(OpenError::NoSuchStore) => Ok(Err(wasi_kv::Error::NoSuchStore)),
        }
    }
}

impl wasi_kv::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> WasmResult<Option<Vec<u8>>, wasi_kv::Error> {
        Ok(self.bucket(&bucket)?.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> WasmResult<(), wasi_kv::Error> {
        Ok(self
            .bucket(&bucket)?
            .set(&key, &value)
            .await
            .map_err(Into::into))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> WasmResult<(), wasi_kv::Error> {
        Ok(self.bucket(&bucket)?.delete(&key).await.map_err(Into::into))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> WasmResult<bool, wasi_kv::Error> {
        Ok(self.bucket(&bucket)?.exists(&key).await.map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> WasmResult<wasi_kv::KeyResponse, wasi_kv::Error> {
        if cursor.is_some() {
            // As in Spin: every key comes back in one response, so there is never a cursor.
            return Ok(Err(wasi_kv::Error::Other(
                "list-keys: cursors are not supported".into(),
            )));
        }
        Ok(self
            .bucket(&bucket)?
            .keys()
            .await
            .map(|keys| wasi_kv::KeyResponse { keys, cursor: None })
            .map_err(Into::into))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> WasmResult<i64, wasi_kv::Error> {
        Ok(self
            .bucket(&bucket)?
            .increment(&key, delta)
            .await
            .map_err(Into::into))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> WasmResult<(), atomics::CasError> {
        let cas = self.table.delete(cas)?;
        let outcome = match &cas.expected {
            Some(expected) => cas.backend.swap_if(&cas.key, expected, &value).await,
            None => cas.backend.set(&cas.key, &value).await.map(|()| true),
        };
        match outcome {
            Ok(true) => Ok(Ok(())),
            Ok(false) => match self.cas_with_snapshot(cas.backend, cas.key).await? {
                Ok(retry) => Ok(Err(atomics::CasError::CasFailed(retry))),
                Err(error) => Ok(Err(atomics::CasError::StoreError(error))),
            },
            Err(error) => Ok(Err(atomics::CasError::StoreError(error.into()))),
        }
    }
}

impl atomics::HostCas for KeyValueView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> WasmResult<Resource<Cas>, wasi_kv::Error> {
        let backend = self.bucket(&bucket)?;
        Ok(Ok(self.table.push(Cas {
            backend,
            key,
            expected: None,
        })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> WasmResult<Option<Vec<u8>>, wasi_kv::Error> {
        let (backend, key) = {
            let cas = self.table.get(&cas)?;
            (Arc::clone(&cas.backend), cas.key.clone())
        };
        let current = match backend.get(&key).await {
            Ok(current) => current,
            Err(error) => return Ok(Err(error.into())),
        };
        self.table.get_mut(&cas)?.expected.clone_from(&current);
        Ok(Ok(current))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> WasmResult<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error> {
        Ok(self
            .bucket(&bucket)?
            .get_many(&keys)
            .await
            .map(|values| keys.into_iter().zip(values).collect())
            .map_err(Into::into))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> WasmResult<(), wasi_kv::Error> {
        Ok(self
            .bucket(&bucket)?
            .set_many(&key_values)
            .await
            .map_err(Into::into))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> WasmResult<(), wasi_kv::Error> {
        Ok(self
            .bucket(&bucket)?
            .delete_many(&keys)
            .await
            .map_err(Into::into))
    }
}
