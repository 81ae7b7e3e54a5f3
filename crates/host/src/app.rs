//! A loaded application: its capabilities opened from configuration, its components compiled
//! (or loaded from the cache) and linked, and a fresh store for each instance. The triggers
//! that run it are planned and started by the entry point; the app knows none of them.

use crate::capability::{Capabilities, InstanceContext, OpenContext};
use crate::component::{ComponentContext, ComponentRuntime, compile_all};
use crate::engine::{self, ComponentCache};
use crate::instance::{self, AddToLinker, InstanceState};
use crate::services::clock::HostClock;
use crate::services::redis::RedisServers;
use crate::settings::HostSettings;
use orderly_manifest::{
    App as Manifest, ComponentId, ConfigProblem, ResolvedVariables, RuntimeConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

/// What loading an application needs.
pub(crate) struct AppConfig<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) runtime_config: &'a RuntimeConfig,
    pub(crate) variables: &'a ResolvedVariables,
    /// Where default stores live; `None` keeps them in memory.
    pub(crate) state_dir: Option<&'a Path>,
    /// Where component output is written; `None`: nowhere but the terminal.
    pub(crate) log_dir: Option<&'a Path>,
    /// Where compiled components are cached.
    pub(crate) cache_dir: PathBuf,
    /// Environment variables for every component.
    pub(crate) env: &'a [(String, String)],
    /// Whether component output is echoed to the terminal.
    pub(crate) echo_output: bool,
    pub(crate) redis: &'a Arc<RedisServers>,
    pub(crate) settings: &'a HostSettings,
    pub(crate) clock: &'a Arc<dyn HostClock>,
    /// What the triggers add to the linker (the interfaces their exports use).
    pub(crate) trigger_interfaces: &'a [AddToLinker],
}

/// A loaded application: its components and capabilities.
pub(crate) struct App {
    engine: Engine,
    components: BTreeMap<ComponentId, ComponentRuntime>,
    capabilities: Capabilities,
}

impl App {
    /// Opens the capabilities, compiles (or loads cached) components and links them. Every
    /// problem found goes to `problems`: the app comes back with what could be loaded, so that
    /// the triggers can check it too; it must not run unless `problems` stays empty. An error
    /// is the host's own failure (the engine, the linker).
    pub(crate) async fn load(
        config: &AppConfig<'_>,
        problems: &mut Vec<ConfigProblem>,
    ) -> anyhow::Result<Self> {
        let capabilities = Capabilities::open(
            &OpenContext {
                manifest: config.manifest,
                runtime_config: config.runtime_config,
                state_dir: config.state_dir,
                redis: config.redis,
                settings: config.settings,
            },
            problems,
        );
        let engine = engine::new_engine(&config.settings.instances)?;
        let linker = instance::linker(&engine, config.trigger_interfaces)
            .map_err(|error| anyhow::anyhow!("cannot set up the host interfaces: {error:?}"))?;
        let context = ComponentContext {
            linker: &linker,
            variables: config.variables,
            capabilities: &capabilities,
            log_dir: config.log_dir,
            echo_output: config.echo_output,
            extra_env: config.env,
            max_output: config.settings.instances.max_output,
        };
        let mut components = BTreeMap::new();
        let cache = ComponentCache::new(config.cache_dir.clone());
        for (id, compiled) in compile_all(&engine, config.manifest, cache, config.clock).await {
            let component = match compiled {
                Ok(component) => component,
                Err(error) => {
                    problems.push(ConfigProblem::new(
                        format!("[component.{id}] source"),
                        format!("{error:#}"),
                        "rebuild the component for wasm32-wasip2",
                    ));
                    continue;
                }
            };
            let (runtime, found) = context.runtime(&config.manifest.components[&id], &component);
            problems.extend(found);
            if let Some(runtime) = runtime {
                components.insert(id, runtime);
            }
        }
        Ok(Self {
            engine,
            components,
            capabilities,
        })
    }

    /// A component by id.
    pub(crate) fn component(&self, id: &str) -> Option<&ComponentRuntime> {
        self.components.get(id)
    }

    /// Starts advancing the engine's epoch, which makes running guests yield (see
    /// [`App::new_store`]). Call once, when the triggers start.
    pub(crate) fn start_epoch_ticker(&self) {
        engine::start_epoch_ticker(&self.engine);
    }

    /// A fresh store for one instance of `component`; `context` is what the trigger that runs
    /// it hands the instance.
    pub(crate) fn new_store(
        &self,
        component: &ComponentRuntime,
        context: &InstanceContext,
    ) -> Store<InstanceState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&component.environment)
            .stdout(component.stdout.clone())
            .stderr(component.stderr.clone());
        let mut wasi = wasi.build();
        wasi.filesystem().clone_from(&component.mounts);
        let state = InstanceState {
            table: wasmtime::component::ResourceTable::new(),
            wasi,
            capabilities: component.grants.instance(context),
        };
        let mut store = Store::new(&self.engine, state);
        // At every epoch tick a running guest yields through tokio's `yield_now`, which lets
        // the I/O driver and other tasks run before the guest resumes.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| {
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// Closes the capabilities (stores and databases, checkpointing SQLite write-ahead logs).
    /// Call once every instance has finished.
    pub(crate) fn close(&self) {
        self.capabilities.close();
    }
}
