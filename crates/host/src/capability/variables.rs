//! `fermyon:spin/variables@2.0.0` and `wasi:config/store`: a component's variables, resolved at
//! start-up from its `[component.x.variables]` templates.

use crate::capability::bindings::fermyon::spin2_0_0::variables as spin_vars;
use crate::capability::bindings::wasi::config::store as wasi_config;
use orderly_manifest::VariableName;
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

/// [`HasData`] for the variables interfaces.
pub struct Variables;

impl HasData for Variables {
    type Data<'a> = &'a ComponentVariables;
}

/// Adds both variables interfaces to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &ComponentVariables,
) -> wasmtime::Result<()> {
    spin_vars::add_to_linker::<T, Variables>(linker, view)?;
    wasi_config::add_to_linker::<T, Variables>(linker, view)?;
    Ok(())
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
