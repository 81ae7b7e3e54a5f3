//! The wasmtime engine (pooling allocator, async) and the on-disk cache of compiled components.

use crate::settings::InstanceSettings;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Builds the engine. The pooling allocator makes a fresh instance per request cheap; when the
/// machine will not reserve its address space, the engine falls back to on-demand allocation.
pub fn new_engine(settings: &InstanceSettings) -> anyhow::Result<Engine> {
    let slots = settings.slots;
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .max_memory_size(settings.max_memory)
        .max_core_instances_per_component(50)
        .max_memories_per_component(10)
        .max_tables_per_component(20)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20);
    // Reset memory and tables between instances with memset (only the pages a guest dirtied,
    // where the kernel can report them) instead of madvise: a fresh instance per request then
    // takes no page faults, and no cross-core TLB shootdowns. This doubles requests/s. What a
    // slot keeps is bounded (the keep-resident sizes), and so is the set of slots used (free
    // warm slots are reused first), so a burst does not leave its memory behind.
    pooling
        .linear_memory_keep_resident(settings.memory_keep_resident)
        .table_keep_resident(settings.table_keep_resident)
        .max_unused_warm_slots(settings.warm_slots)
        .async_stack_keep_resident(settings.stack_keep_resident)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = base_config();
    // Each instance's stack is zeroed once it ends (nothing of one request is left for the
    // next), and all but its first part given back: a burst leaves no stacks behind.
    config.async_stack_zeroing(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let engine = match Engine::new(&config) {
        Ok(engine) => engine,
        Err(error) => {
            tracing::warn!(%error, "pooling allocator unavailable; allocating instances on demand");
            Engine::new(&base_config())?
        }
    };
    Ok(engine)
}

/// How often a running guest yields to other work.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Guests yield every tick (see `App::new_store`), once the ticker runs, so one busy guest cannot starve the
    // requests that share its thread.
    config.epoch_interruption(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped (a thread of
/// its own; started when the triggers start, not while loading).
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("orderly-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the epoch thread; busy guests will not yield");
    }
}

/// Compiled components, cached on disk by content hash and engine, so a restart does not
/// recompile.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// How a component was obtained, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Read from the cache.
    Cached,
    /// Compiled now (and written to the cache).
    Compiled,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Loads the component in `wasm_path`, from the cache when it holds this exact file
    /// compiled by a compatible engine, else by compiling it.
    pub fn load(&self, engine: &Engine, wasm_path: &Path) -> anyhow::Result<(Component, Loaded)> {
        let bytes = std::fs::read(wasm_path)
            .with_context(|| format!("cannot read {}", wasm_path.display()))?;
        let key = cache_key(engine, &bytes);
        let cached = self.dir.join(format!("{key}.cwasm"));
        if cached.is_file() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash (it is in the file name), into the state dir or the user's own
            // cache folder, which only this user's hosts write.
            match unsafe { Component::deserialize_file(engine, &cached) } {
                Ok(component) => return Ok((component, Loaded::Cached)),
                Err(error) => tracing::warn!(
                    %error,
                    file = %cached.display(),
                    "ignoring unreadable cached component"
                ),
            }
        }
        let component = Component::new(engine, &bytes).map_err(|error| {
            anyhow::anyhow!(
                "{} is not a valid WebAssembly component: {error:#}\n    fix: build it for wasm32-wasip2 (cargo build --target wasm32-wasip2 --release)",
                wasm_path.display()
            )
        })?;
        if let Err(error) = self.store(&cached, &component) {
            tracing::warn!(%error, "could not write the component cache");
        }
        Ok((component, Loaded::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize()?;
        // Write then rename, so concurrent hosts never read a half-written file.
        let temp = tempfile_path(path);
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, path)?;
        Ok(())
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(wasm);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}", engine_hash.finish())
}

/// A temporary name no other writer uses (several threads may compile the same file at once).
fn tempfile_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}
