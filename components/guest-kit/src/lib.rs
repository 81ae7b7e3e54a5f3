//! Helpers shared by Orderly's components (wasm32-wasip2 guests): the request path below the
//! component's route, JSON and problem responses, and bindings for the `wasi:keyvalue`
//! interfaces spin-sdk does not wrap.

use http_problem::Problem;
use spin_sdk::http::{Request, Response};

/// `wasi:keyvalue/store`, `atomics` and `batch` (`@0.2.0-draft2`), bound from the
/// `orderly:app/keyvalue-atomics` world in `wit/`: compare-and-swap and increment, which
/// spin-sdk does not wrap. Counters are 8-byte little-endian integers; never `set` them as text.
pub mod keyvalue {
    #[allow(missing_docs, reason = "generated bindings")]
    mod bindings {
        spin_sdk::wit_bindgen::generate!({
            path: "../../wit",
            world: "orderly:app/keyvalue-atomics",
            runtime_path: "spin_sdk::wit_bindgen::rt",
            generate_all,
        });
    }
    pub use bindings::wasi::keyvalue::{atomics, batch, store};
}

/// The request path below the component's route (`spin-path-info`), `/` when empty.
pub fn path_info(request: &Request) -> String {
    let info = request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
        .unwrap_or_else(|| request.path());
    if info.is_empty() {
        "/".to_owned()
    } else {
        info.to_owned()
    }
}

/// A JSON response.
pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
        .build()
}

/// A problem response (`application/problem+json`), with an `Allow` header when given.
pub fn problem(problem: &Problem, allow: Option<&str>) -> Response {
    let mut builder = Response::builder();
    builder
        .status(problem.status)
        .header("content-type", http_problem::CONTENT_TYPE);
    if let Some(allow) = allow {
        builder.header("allow", allow);
    }
    builder.body(problem.to_json()).build()
}
