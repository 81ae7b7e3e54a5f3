//! Outbound HTTP through raw `wasi:http`, so a test can set a first-byte timeout (spin-sdk's
//! `send` has no options) and see the exact error code the host returns.

use serde_json::{Value as Json, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingRequest, RequestOptions, Scheme};

/// GETs `url`; returns `{status, body}` or `{error}` with the host's error code.
pub fn fetch(url: &str, timeout_ms: Option<u64>) -> Json {
    match try_fetch(url, timeout_ms) {
        Ok((status, body)) => json!({ "status": status, "body": body }),
        Err(error) => json!({ "error": error }),
    }
}

fn try_fetch(url: &str, timeout_ms: Option<u64>) -> Result<(u16, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or("the url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| "bad method")?;
    request
        .set_scheme(Some(&match scheme {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => Scheme::Other(other.to_owned()),
        }))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let options = timeout_ms.map(|ms| {
        let options = RequestOptions::new();
        let _ = options.set_first_byte_timeout(Some(ms * 1_000_000));
        options
    });
    let pending = outgoing_handler::handle(request, options).map_err(|code| format!("{code:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|code| format!("{code:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(error) => return Err(format!("reading the body: {error:?}")),
        }
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
