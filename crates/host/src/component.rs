//! A component made ready to run: compiled (or loaded from the cache), linked, checked against
//! the triggers that run it, and given what each of its instances receives.

use crate::capability::bindings::cron::SpinCronPre;
use crate::capability::bindings::redis_handler::RedisHandlerPre;
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
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// A component, compiled and linked, with what each of its instances gets.
pub(crate) struct ComponentRuntime {
    pub(crate) id: ComponentId,
    /// Its HTTP handler, when an HTTP trigger runs it.
    pub(crate) http: Option<ProxyPre<InstanceState>>,
    /// Its Redis handler, when a Redis trigger runs it.
    pub(crate) redis: Option<RedisHandlerPre<InstanceState>>,
    /// Its cron handler, when a cron trigger runs it.
    pub(crate) cron: Option<SpinCronPre<InstanceState>>,
    pub(crate) environment: Vec<(String, String)>,
    /// The `files` folders, opened once and shared read-only by every instance.
    pub(crate) mounts: WasiFilesystemCtx,
    pub(crate) stdout: ComponentOutput,
    pub(crate) stderr: ComponentOutput,
    /// What each capability granted it.
    pub(crate) grants: Grants,
}

/// Which triggers run a component.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Triggers {
    pub(crate) http: bool,
    pub(crate) redis: bool,
    pub(crate) cron: bool,
}

impl Triggers {
    /// The triggers of `manifest` that run `id`.
    pub(crate) fn of(manifest: &Manifest, id: &ComponentId) -> Self {
        Self {
            http: manifest.http_triggers.iter().any(|t| &t.component == id),
            redis: manifest.redis_triggers.iter().any(|t| &t.component == id),
            cron: manifest.cron_triggers.iter().any(|t| &t.component == id),
        }
    }
}

/// What building a [`ComponentRuntime`] needs from the application.
pub(crate) struct ComponentContext<'a> {
    pub(crate) linker: &'a Linker<InstanceState>,
    pub(crate) variables: &'a ResolvedVariables,
    pub(crate) capabilities: &'a Capabilities,
    pub(crate) log_dir: Option<&'a Path>,
    pub(crate) echo_output: bool,
    pub(crate) extra_env: &'a [(String, String)],
}

impl ComponentContext<'_> {
    /// Links `component` and checks it exports what its `triggers` call; lists every problem.
    pub(crate) fn runtime(
        &self,
        spec: &ComponentSpec,
        component: &Component,
        triggers: Triggers,
    ) -> Result<ComponentRuntime, Vec<ConfigProblem>> {
        let id = &spec.id;
        let location = format!("[component.{id}] source");
        let mut problems = Vec::new();
        let pre: Option<InstancePre<InstanceState>> = match self.linker.instantiate_pre(component) {
            Ok(pre) => Some(pre),
            Err(error) => {
                problems.push(ConfigProblem::new(
                    location.clone(),
                    format!("cannot link the component: {error:#}"),
                    "use only the interfaces orderly up provides (WASI 0.2, wasi:http, Spin key-value, SQLite, Redis, variables), or run with real Spin",
                ));
                None
            }
        };
        let pre = pre.as_ref();
        let http = export(
            pre,
            triggers.http,
            &location,
            &mut problems,
            Export {
                what: "wasi:http/incoming-handler@0.2.x",
                fix: "build it as an HTTP component (#[http_component] in spin-sdk)",
                make: ProxyPre::new,
            },
        );
        let redis = export(
            pre,
            triggers.redis,
            &location,
            &mut problems,
            Export {
                what: "fermyon:spin/inbound-redis",
                fix: "build it as a Redis component (#[redis_component] in spin-sdk)",
                make: RedisHandlerPre::new,
            },
        );
        let cron = export(
            pre,
            triggers.cron,
            &location,
            &mut problems,
            Export {
                what: "handle-cron-event (world fermyon:spin-cron/spin-cron)",
                fix: "export handle-cron-event as the spin-trigger-cron plugin's world declares it",
                make: SpinCronPre::new,
            },
        );

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
            ComponentOutput::new(id.as_str(), stream, self.log_dir, terminal)
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
                return Err(problems);
            }
        };
        let grants = self.capabilities.grant(&GrantContext {
            spec,
            variables: self.variables,
            allowed_hosts: &allowed_hosts,
        });
        let grants = match grants {
            Ok(grants) if problems.is_empty() => grants,
            Ok(_) => return Err(problems),
            Err(found) => {
                problems.extend(found);
                return Err(problems);
            }
        };
        let mut environment: Vec<(String, String)> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        environment.extend(self.extra_env.iter().cloned());
        Ok(ComponentRuntime {
            id: id.clone(),
            http,
            redis,
            cron,
            environment,
            mounts,
            stdout,
            stderr,
            grants,
        })
    }
}

/// A trigger's export: what it is called, how to fix its absence, and how to find it.
struct Export<P> {
    what: &'static str,
    fix: &'static str,
    make: fn(InstancePre<InstanceState>) -> wasmtime::Result<P>,
}

/// The export a trigger calls, when `wanted`; its absence is a problem.
fn export<P>(
    pre: Option<&InstancePre<InstanceState>>,
    wanted: bool,
    location: &str,
    problems: &mut Vec<ConfigProblem>,
    export: Export<P>,
) -> Option<P> {
    let pre = pre.filter(|_| wanted)?;
    match (export.make)(pre.clone()) {
        Ok(found) => Some(found),
        Err(error) => {
            problems.push(ConfigProblem::new(
                location,
                format!(
                    "a trigger runs it, but it does not export {}: {error:#}",
                    export.what
                ),
                export.fix,
            ));
            None
        }
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
