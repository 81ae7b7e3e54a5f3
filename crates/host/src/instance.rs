//! One component instance's state, and the linker that gives components every host interface:
//! WASI, then every capability ([`capability::add_to_linker`]), then what the triggers add.

use crate::capability::{self, InstanceParts, Instances, outbound_http};
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

/// Everything one component instance owns while it runs: a fresh one per request, message or
/// cron run.
pub struct InstanceState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    /// Every capability's part of the instance.
    pub(crate) capabilities: Instances,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl InstanceParts for InstanceState {
    fn parts(&mut self) -> (&mut ResourceTable, &mut Instances) {
        (&mut self.table, &mut self.capabilities)
    }
}

/// The HTTP trigger hands requests in through this view (`wasi:http` belongs to the outbound
/// HTTP capability, as in Spin).
impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        outbound_http::http_view(self)
    }
}

/// What a trigger adds to the linker: the interfaces its exports need.
pub(crate) type AddToLinker = fn(&mut Linker<InstanceState>) -> wasmtime::Result<()>;

/// A linker with WASI 0.2, every capability, and what the triggers add (`triggers`).
pub(crate) fn linker(
    engine: &Engine,
    triggers: &[AddToLinker],
) -> wasmtime::Result<Linker<InstanceState>> {
    let mut linker = Linker::<InstanceState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    capability::add_to_linker(&mut linker)?;
    for add in triggers {
        add(&mut linker)?;
    }
    Ok(linker)
}
