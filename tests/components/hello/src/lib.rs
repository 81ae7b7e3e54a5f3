//! The most trivial HTTP component: answers `hello`. The lab compares it served by
//! `orderly up` with a native server, to measure what the host costs per request.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_request: Request) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello")
        .build()
}
