//! Host bindings for the Spin interfaces in `wit/` (world `orderly:app/host`).
wasmtime::component::bindgen!({
    path: "../../wit",
    world: "orderly:app/host",
    imports: { default: async | trappable },
});
