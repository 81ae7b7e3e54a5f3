//! One component instance's state, and the linker that gives components every host interface.

use crate::capability::key_value::{self, KeyValueAccess, KeyValueView};
use crate::capability::outbound_http::OutboundHttp;
use crate::capability::redis::{self, RedisAccess, RedisView};
use crate::capability::sqlite::{self, SqliteAccess, SqliteView};
use crate::capability::variables::{self, ComponentVariables};
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one component instance owns while it runs: a fresh one per request or message.
pub struct InstanceState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundHttp,
    pub(crate) key_value: KeyValueAccess,
    pub(crate) sqlite: SqliteAccess,
    pub(crate) redis: RedisAccess,
    pub(crate) variables: ComponentVariables,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

// The interfaces of types only that the trigger exports use have no functions to implement.
impl crate::capability::bindings::fermyon::spin::redis_types::Host for InstanceState {}
impl crate::capability::bindings::fermyon::spin_cron::cron_types::Host for InstanceState {}

/// A linker with WASI 0.2, `wasi:http` and the Spin interfaces `orderly up` implements.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<InstanceState>> {
    let mut linker = Linker::<InstanceState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    key_value::add_to_linker(&mut linker, |state| KeyValueView {
        table: &mut state.table,
        access: &state.key_value,
    })?;
    sqlite::add_to_linker(&mut linker, |state| SqliteView {
        table: &mut state.table,
        access: &state.sqlite,
    })?;
    redis::add_to_linker(&mut linker, |state| RedisView {
        table: &mut state.table,
        access: &state.redis,
    })?;
    variables::add_to_linker(&mut linker, |state| &state.variables)?;
    // Interfaces of types only (used by the trigger exports) still need their instances.
    crate::capability::bindings::fermyon::spin::redis_types::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(&mut linker, |state| state)?;
    crate::capability::bindings::fermyon::spin_cron::cron_types::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(&mut linker, |state| state)?;
    Ok(linker)
}
