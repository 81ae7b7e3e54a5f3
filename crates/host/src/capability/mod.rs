//! What the host gives components to import. Each capability is one module that holds all of
//! it: its interfaces' host functions and their linking, its opening for the application from
//! configuration, what each component is granted, and what each instance holds. A new
//! capability is one module implementing [`Capability`] plus one line in the
//! [`capabilities!`] list at the end of this file.

pub(crate) mod bindings;
mod grant;
pub(crate) mod key_value;
pub(crate) mod outbound_http;
pub(crate) mod redis;
pub(crate) mod sqlite;
pub(crate) mod variables;
mod view;

pub(crate) use grant::Grant;
pub(crate) use outbound_http::ServiceChaining;
pub(crate) use view::{View, ViewOf};

use crate::services::allowed_hosts::AllowedHosts;
use crate::services::redis::RedisServers;
use crate::settings::HostSettings;
use orderly_manifest::{
    App as Manifest, ComponentSpec, ConfigProblem, ResolvedVariables, RuntimeConfig,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Linker, ResourceTable};

/// What opening a capability for the application may use.
pub(crate) struct OpenContext<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) runtime_config: &'a RuntimeConfig,
    /// Where default stores live; `None` keeps them in memory.
    pub(crate) state_dir: Option<&'a Path>,
    pub(crate) redis: &'a Arc<RedisServers>,
    pub(crate) settings: &'a HostSettings,
}

impl OpenContext<'_> {
    /// Label → ids of the components that list it in `field`.
    pub(crate) fn labels(
        &self,
        field: impl Fn(&ComponentSpec) -> &Vec<String>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for component in self.manifest.components.values() {
            for label in field(component) {
                labels
                    .entry(label.clone())
                    .or_default()
                    .push(component.id.to_string());
            }
        }
        labels
    }
}

/// What granting a capability to one component may use.
pub(crate) struct GrantContext<'a> {
    pub(crate) spec: &'a ComponentSpec,
    pub(crate) variables: &'a ResolvedVariables,
    /// The component's `allowed_outbound_hosts`, parsed once for every capability that
    /// reaches out.
    pub(crate) allowed_hosts: &'a Arc<AllowedHosts>,
}

/// What a new instance gets from the trigger that runs it.
#[derive(Clone, Default)]
pub(crate) struct InstanceContext {
    /// Where `http://<component>.spin.internal` requests go (the HTTP trigger's instances
    /// only, as in Spin); without it they are denied.
    pub(crate) chaining: Option<Arc<dyn ServiceChaining>>,
}

/// One capability.
pub(crate) trait Capability: Default + Send + Sync + Sized + 'static {
    /// What one component is granted (labels, allowed hosts, values).
    type Grant: Send + Sync + 'static;
    /// What one instance holds.
    type Instance: Send + 'static;

    /// Opens the capability for the application; lists every problem found. (On problems
    /// the application does not start; a default stands in meanwhile, so that loading goes on
    /// to find every other problem too.)
    fn open(cx: &OpenContext<'_>) -> Result<Self, Vec<ConfigProblem>>;

    /// What `cx.spec` may use; lists every problem found.
    fn grant(self: &Arc<Self>, cx: &GrantContext<'_>) -> Result<Self::Grant, Vec<ConfigProblem>>;

    /// The state of a new instance of a component granted `grant`.
    fn instance(grant: &Self::Grant, cx: &InstanceContext) -> Self::Instance;

    /// Adds the capability's interfaces to `linker`; each host function finds its state with
    /// [`Has::part`].
    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// Closes what [`Capability::open`] opened, once every instance has finished.
    fn close(&self) {}
}

/// An instance's store data, as capability `C` sees it: the resource table, and `C`'s part.
pub(crate) trait Has<C: Capability>: Send + 'static {
    /// The table and `C`'s part of the instance.
    fn part(&mut self) -> View<'_, C::Instance>;
}

/// Store data that holds every capability's part of an instance ([`Instances`]).
pub(crate) trait InstanceParts: Send + 'static {
    /// The resource table, and every capability's part.
    fn parts(&mut self) -> (&mut ResourceTable, &mut Instances);
}

/// Registers capabilities: generates [`Capabilities`] (the application's, opened),
/// [`Grants`] (one component's), [`Instances`] (one instance's), a [`Has`] impl per
/// capability for any [`InstanceParts`], and [`add_to_linker`].
macro_rules! capabilities {
    ($($(#[$doc:meta])* $field:ident: $type:ty,)*) => {
        /// Every capability, opened for the application.
        #[derive(Default)]
        pub(crate) struct Capabilities {
            $($(#[$doc])* pub(crate) $field: Arc<$type>,)*
        }

        impl Capabilities {
            /// Opens every capability; problems go to `problems`.
            pub(crate) fn open(cx: &OpenContext<'_>, problems: &mut Vec<ConfigProblem>) -> Self {
                Self {
                    $($field: Arc::new(<$type as Capability>::open(cx).unwrap_or_else(|found| {
                        problems.extend(found);
                        <$type>::default()
                    })),)*
                }
            }

            /// What one component is granted of each; lists every problem found.
            pub(crate) fn grant(&self, cx: &GrantContext<'_>) -> Result<Grants, Vec<ConfigProblem>> {
                let mut problems = Vec::new();
                $(let $field = Capability::grant(&self.$field, cx)
                    .map_err(|found| problems.extend(found))
                    .ok();)*
                match ($($field,)*) {
                    ($(Some($field),)*) if problems.is_empty() => Ok(Grants { $($field,)* }),
                    _ => Err(problems),
                }
            }

            /// Closes every capability, once every instance has finished.
            pub(crate) fn close(&self) {
                $(self.$field.close();)*
            }
        }

        /// What one component is granted of each capability.
        pub(crate) struct Grants {
            $($field: <$type as Capability>::Grant,)*
        }

        impl Grants {
            /// Every capability's part of a new instance.
            pub(crate) fn instance(&self, cx: &InstanceContext) -> Instances {
                Instances {
                    $($field: <$type as Capability>::instance(&self.$field, cx),)*
                }
            }
        }

        /// Every capability's part of one instance.
        pub(crate) struct Instances {
            $(pub(crate) $field: <$type as Capability>::Instance,)*
        }

        $(impl<T: InstanceParts> Has<$type> for T {
            fn part(&mut self) -> View<'_, <$type as Capability>::Instance> {
                let (table, instances) = self.parts();
                View {
                    table,
                    access: &mut instances.$field,
                }
            }
        })*

        /// Adds every capability's interfaces to `linker`.
        pub(crate) fn add_to_linker<T: InstanceParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$type as Capability>::add_to_linker(linker)?;)*
            Ok(())
        }
    };
}

capabilities! {
    /// `fermyon:spin/key-value` and `wasi:keyvalue`.
    key_value: key_value::KeyValueStores,
    /// `spin:sqlite`.
    sqlite: sqlite::Databases,
    /// `fermyon:spin/redis`.
    redis: redis::OutboundRedis,
    /// `fermyon:spin/variables` and `wasi:config`.
    variables: variables::Variables,
    /// `wasi:http` (outgoing requests, and the types incoming ones use too).
    outbound_http: outbound_http::OutboundHttp,
}
