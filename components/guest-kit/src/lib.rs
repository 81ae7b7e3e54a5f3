//! Helpers shared by Orderly's components (wasm32-wasip2 guests): requests read with a body
//! limit, JSON and problem responses, outbound HTTP with timeouts, bindings for the
//! `wasi:keyvalue` interfaces spin-sdk does not wrap, the adapters that give the native
//! libraries Spin's SQLite ([`SpinSql`]), key-value store ([`SpinKv`]) and wall clock, and every
//! service's fault-injection controls ([`faults`]).

mod clock;
pub mod faults;
mod http_out;
mod kv;
mod request;
mod sql;

pub use clock::{WallClock, random_seed};
pub use http_out::{FetchError, Fetched, Timeouts, fetch};
pub use kv::{KvError, SpinKv};
pub use request::{BodyError, Incoming, send, serve};
pub use sql::SpinSql;

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

/// The `key=value` pairs of a query string, in order, percent-decoded (`+` is kept as is); a
/// pair without `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
}

/// Escapes `text` for a query string: everything but unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes `%XX` escapes (invalid UTF-8 becomes U+FFFD); a `%` not followed by two hex digits
/// stays as it is.
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let hex = |at: usize| {
        bytes
            .get(at)
            .and_then(|byte| char::from(*byte).to_digit(16))
    };
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The request path below the component's route (`spin-path-info`), `/` when empty, for
/// handlers that take a whole [`Request`] (see [`Incoming`] for the streaming ones). Spin and
/// `orderly up` set the header on every HTTP request, so a missing one is treated as empty
/// (never the full request path, which would still hold the route's prefix).
pub fn path_info(request: &Request) -> String {
    match request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
    {
        None | Some("") => "/".to_owned(),
        Some(info) => info.to_owned(),
    }
}

/// An error with every cause below it, `outer: inner: innermost`, for logs and problem details
/// (an error's `Display` usually names only its own step).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// The value of Spin variable `name`, if it is set and not empty (for settings readers).
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A JSON response.
pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
        .build()
}

/// A problem response (`application/problem+json`).
pub fn problem(problem: &Problem) -> Response {
    Response::builder()
        .status(problem.status)
        .header("content-type", http_problem::CONTENT_TYPE)
        .body(problem.to_json())
        .build()
}

/// 404 Not Found, with `detail`.
pub fn not_found(detail: impl Into<String>) -> Response {
    problem(&Problem::new(404, "Not Found").with_detail(detail))
}

/// 405 Method Not Allowed, with an `Allow` header listing `allow` (e.g. `"GET, POST"`).
pub fn method_not_allowed(allow: &str) -> Response {
    let mut response =
        problem(&Problem::new(405, "Method Not Allowed").with_detail(format!("use {allow}")));
    response.set_header("allow", allow);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query_pairs(query).collect()
    }

    #[test]
    fn error_chains_name_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }

    #[test]
    fn query_pairs_split_and_decode() {
        let own = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(pairs(""), vec![]);
        assert_eq!(
            pairs("status=pending&&limit=5&flag"),
            vec![own("status", "pending"), own("limit", "5"), own("flag", "")]
        );
        assert_eq!(
            pairs("a=x%3Dy%26z&b=%e2%9c%93&c=+1"),
            vec![own("a", "x=y&z"), own("b", "\u{2713}"), own("c", "+1")]
        );
        assert_eq!(
            pairs("a=100%&b=%zz&c=%+1&d=%4"),
            vec![
                own("a", "100%"),
                own("b", "%zz"),
                own("c", "%+1"),
                own("d", "%4")
            ]
        );
        assert_eq!(pairs("a=%FF"), vec![own("a", "\u{fffd}")]);
        let odd = "1732:ord_01 a&b=c/%";
        assert_eq!(percent_encode(odd), "1732%3Aord_01%20a%26b%3Dc%2F%25");
        assert_eq!(
            pairs(&format!("after={}", percent_encode(odd))),
            vec![own("after", odd)]
        );
    }
}
