//! `fermyon:spin/variables@2.0.0` and `wasi:config/store`: a component's variables, resolved at
//! start-up from its `[component.x.variables]` templates.

use crate::capability::bindings::fermyon::spin2_0_0::variables as spin_vars;
use crate::capability::bindings::wasi::config::store as wasi_config;
use crate::capability::{Capability, GrantContext, Has, InstanceContext, OpenContext};
use orderly_manifest::{ConfigProblem, VariableName};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// A component's variables and their values.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    component: String,
    values: Arc<BTreeMap<String, String>>,
}

impl ComponentVariables {
    /// The resolved `values` of component `component`.
    pub fn new(component: &str, values: BTreeMap<String, String>) -> Self {
        Self {
            component: component.to_owned(),
            values: Arc::new(values),
        }
    }
}

/// The variables capability: each component gets its `[component.x.variables]`, rendered
/// from the application's variables.
#[derive(Default)]
pub struct Variables;

impl Capability for Variables {
    type Grant = ComponentVariables;
    type Instance = ComponentVariables;

    fn open(_: &OpenContext<'_>) -> Result<Self, Vec<ConfigProblem>> {
        Ok(Self)
    }

    fn grant(
        self: &Arc<Self>,
        cx: &GrantContext<'_>,
    ) -> Result<ComponentVariables, Vec<ConfigProblem>> {
        Ok(ComponentVariables::new(
            cx.spec.id.as_str(),
            cx.spec
                .variables
                .iter()
                .map(|(name, template)| (name.to_string(), cx.variables.render(template)))
                .collect(),
        ))
    }

    fn instance(grant: &ComponentVariables, _: &InstanceContext) -> ComponentVariables {
        grant.clone()
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        spin_vars::add_to_linker::<T, VariablesData>(linker, view::<T>)?;
        wasi_config::add_to_linker::<T, VariablesData>(linker, view::<T>)?;
        Ok(())
    }
}

/// [`HasData`] for the variables interfaces: their host functions see the values alone.
struct VariablesData;

impl HasData for VariablesData {
    type Data<'a> = &'a ComponentVariables;
}

fn view<T: Has<Variables>>(state: &mut T) -> &ComponentVariables {
    state.part().access
}

impl spin_vars::Host for &ComponentVariables {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin_vars::Error>> {
        if let Err(reason) = VariableName::parse(&name) {
            return Ok(Err(spin_vars::Error::InvalidName(format!(
                "invalid variable name {name:?}: {reason}"
            ))));
        }
        Ok(self.values.get(&name).cloned().ok_or_else(|| {
            spin_vars::Error::Undefined(format!("no variable for {:?}.{name:?}", self.component))
        }))
    }
}

impl wasi_config::Host for &ComponentVariables {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(Ok(self.values.get(&key).cloned()))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(Ok(self
            .values
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()))
    }
}
