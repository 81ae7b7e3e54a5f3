//! A component made ready to run: compiled (or loaded from the cache), linked, and given what
//! each of its instances receives (environment, files, output, what each capability granted
//! it). Which exports it must have is for the triggers that run it to check.

use crate::capability::{Capabilities, GrantContext, Grants};
use crate::engine::{ComponentCache, Loaded};
use crate::instance::InstanceState;
use crate::services::allowed_hosts::AllowedHosts;
use crate::services::clock::HostClock;
use crate::stdio::{ComponentOutput, Terminal};
use orderly_manifest::{
    App as Manifest, ComponentId, ComponentSpec, ConfigProblem, ResolvedVariables,
};
use std::path::Path;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A component, compiled and linked, with what each of its instances gets.
pub(crate) struct ComponentRuntime {
    pub(crate) id: ComponentId,
    /// The component, linked: what each trigger makes its export's handle from.
    pub(crate) pre: InstancePre<InstanceState>,
    pub(crate) environment: Vec<(String, String)>,
    /// The `files` folders, opened once and shared read-only by every instance.
    pub(crate) mounts: WasiFilesystemCtx,
    pub(crate) stdout: ComponentOutput,
    pub(crate) stderr: ComponentOutput,
    /// What each capability granted it.
    pub(crate) grants: Grants,
}

/// What building a [`ComponentRuntime`] needs from the application.
pub(crate) struct ComponentContext<'a> {
    pub(crate) linker: &'a Linker<InstanceState>,
    pub(crate) variables: &'a ResolvedVariables,
    pub(crate) capabilities: &'a Capabilities,
    pub(crate) log_dir: Option<&'a Path>,
    pub(crate) echo_output: bool,
    pub(crate) extra_env: &'a [(String, String)],
    /// What one instance may write to each of stdout and stderr.
    pub(crate) max_output: usize,
}

impl ComponentContext<'_> {
    /// Links `component` and gives it what its instances get; lists every problem. The
    /// runtime comes back, problems or not, whenever the component could be linked (so that
    /// the triggers can check its exports too, and every problem is reported at once).
    pub(crate) fn runtime(
        &self,
        spec: &ComponentSpec,
        component: &Component,
    ) -> (Option<ComponentRuntime>, Vec<ConfigProblem>) {
        let id = &spec.id;
        let mut problems = Vec::new();
        let pre: Option<InstancePre<InstanceState>> = match self.linker.instantiate_pre(component) {
            Ok(pre) => Some(pre),
            Err(error) => {
                problems.push(ConfigProblem::new(
                    format!("[component.{id}] source"),
                    format!("cannot link the component: {error:#}"),
                    "use only the interfaces orderly up provides (WASI 0.2, wasi:http, Spin key-value, SQLite, Redis, variables), or run with real Spin",
                ));
                None
            }
        };
        let mut mounts = WasiCtxBuilder::new();
        for mount in &spec.files {
            let opened = if mount.source.is_dir() {
                mounts
                    .preopened_dir(&mount.source, &mount.destination, FsPerms::ReadOnly)
                    .map(drop)
                    .map_err(|error| format!("cannot open {}: {error}", mount.source.display()))
            } else {
                Err(format!("{} is not a folder", mount.source.display()))
            };
            if let Err(reason) = opened {
                problems.push(ConfigProblem::new(
                    format!("[component.{id}] files"),
                    reason,
                    "create the folder, or fix `source` (relative to spin.toml)",
                ));
            }
        }
        let mounts = mounts.build().filesystem().clone();
        let hosts: Vec<String> = spec
            .allowed_outbound_hosts
            .iter()
            .map(|template| self.variables.render(template))
            .collect();
        let allowed_hosts = Arc::new(AllowedHosts::parse(&hosts).unwrap_or_else(|error| {
            problems.push(ConfigProblem::new(
                format!("[component.{id}] allowed_outbound_hosts"),
                error.to_string(),
                "write entries as scheme://host[:port], e.g. \"https://api.example.com\" or \"http://orders.spin.internal\"",
            ));
            AllowedHosts::default()
        }));
        let output = |stream: &str, terminal: Terminal| {
            let terminal = if self.echo_output {
                terminal
            } else {
                Terminal::Quiet
            };
            ComponentOutput::new(id.as_str(), stream, self.log_dir, terminal, self.max_output)
        };
        let (stdout, stderr) = match (
            output("stdout", Terminal::Stdout),
            output("stderr", Terminal::Stderr),
        ) {
            (Ok(stdout), Ok(stderr)) => (stdout, stderr),
            (Err(error), _) | (_, Err(error)) => {
                problems.push(ConfigProblem::new(
                    "--state-dir",
                    format!("cannot create the log files for `{id}`: {error}"),
                    "make the state dir writable, or pass another --state-dir",
                ));
                return (None, problems);
            }
        };
        let grants = self.capabilities.grant(&GrantContext {
            spec,
            variables: self.variables,
            allowed_hosts: &allowed_hosts,
        });
        let (grants, pre) = match (grants, pre) {
            (Ok(grants), Some(pre)) => (grants, pre),
            (Ok(_), None) => return (None, problems),
            (Err(found), _) => {
                problems.extend(found);
                return (None, problems);
            }
        };
        let mut environment: Vec<(String, String)> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        environment.extend(self.extra_env.iter().cloned());
        let runtime = ComponentRuntime {
            id: id.clone(),
            pre,
            environment,
            mounts,
            stdout,
            stderr,
            grants,
        };
        (Some(runtime), problems)
    }
}

/// Compiles (or loads from cache) every component, concurrently.
pub(crate) async fn compile_all(
    engine: &Engine,
    manifest: &Manifest,
    cache: ComponentCache,
    clock: &Arc<dyn HostClock>,
) -> Vec<(ComponentId, anyhow::Result<Component>)> {
    let tasks: Vec<_> = manifest
        .components
        .values()
        .map(|spec| {
            let (engine, cache, id, source, clock) = (
                engine.clone(),
                cache.clone(),
                spec.id.clone(),
                spec.source.clone(),
                Arc::clone(clock),
            );
            tokio::task::spawn_blocking(move || {
                let started = clock.now();
                let loaded = cache.load(&engine, &source);
                if let Ok((_, how)) = &loaded {
                    let how = match how {
                        Loaded::Cached => "loaded from cache",
                        Loaded::Compiled => "compiled",
                    };
                    tracing::info!(component = %id, ms = started.elapsed().as_millis() as u64, "{how}");
                }
                (id, loaded.map(|(component, _)| component))
            })
        })
        .collect();
    let mut compiled = Vec::new();
    for task in tasks {
        match task.await {
            Ok(result) => compiled.push(result),
            Err(error) => tracing::error!(%error, "a compile task failed"),
        }
    }
    compiled
}
