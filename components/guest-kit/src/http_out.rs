//! Outbound HTTP with timeouts. spin-sdk's `send` passes no request options, so this sends
//! through `wasi:http/outgoing-handler` itself, with a connect, first-byte and between-bytes
//! timeout that the host enforces, and reads the answer up to a size limit. Many requests may
//! be in flight at once from one handler (join their futures).

use futures::{SinkExt, StreamExt};
use guest_kit_core::HttpScheme;
use resilience::{CallFailure, HttpAnswer};
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{IncomingResponse, Method, OutgoingRequest, Scheme};
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{ErrorCode, Fields, RequestOptions};
use std::task::Poll;
use std::time::Duration;

/// How long an outbound request may take at each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open the connection.
    pub connect: Duration,
    /// From sending the request to the answer's first byte.
    pub first_byte: Duration,
    /// Between two chunks of the answer's body.
    pub between_bytes: Duration,
}

/// An answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Fetched {
    /// The first value of header `name` (lower case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// Why there is no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL is not `http(s)://authority/path`.
    #[error("invalid URL {0:?}")]
    BadUrl(String),
    /// The host is not in the component's `allowed_outbound_hosts`.
    #[error("denied: the host is not in allowed_outbound_hosts")]
    Denied,
    /// No connection: refused, unreachable, or no such host.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A timeout passed (connecting, waiting for the answer, or between body chunks).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The answer's body is larger than the limit.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// Anything else (a protocol error, a reset connection).
    #[error("{0}")]
    Other(String),
}

/// Sends `method url` with `headers` and `body`, and reads the answer (at most `max_body`
/// bytes of body).
pub async fn fetch(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeouts: Timeouts,
    max_body: usize,
) -> Result<Fetched, FetchError> {
    let (scheme, authority, path) = split_url(url).ok_or_else(|| FetchError::BadUrl(url.into()))?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| FetchError::Other(format!("header {name}: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let refused = |what: &str| FetchError::Other(format!("cannot set the request's {what}"));
    request
        .set_method(&method)
        .map_err(|()| refused("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| refused("path"))?;
    let options = RequestOptions::new();
    let nanos = |duration: Duration| Some(duration.as_nanos().min(u128::from(u64::MAX)) as u64);
    // A host that does not support an option says so; the request then goes without it.
    let _ = options.set_connect_timeout(nanos(timeouts.connect));
    let _ = options.set_first_byte_timeout(nanos(timeouts.first_byte));
    let _ = options.set_between_bytes_timeout(nanos(timeouts.between_bytes));
    let mut sink = request.take_body();
    let pending = outgoing_handler::handle(request, Some(options)).map_err(classify)?;
    if !body.is_empty() {
        sink.send(body)
            .await
            .map_err(|e| FetchError::Other(format!("sending the body: {e:?}")))?;
    }
    drop(sink);
    let mut waiting: Option<CancelOnDropToken> = None;
    let response = futures::future::poll_fn(|context| match pending.get() {
        Some(Ok(result)) => Poll::Ready(result),
        Some(Err(())) => Poll::Ready(Err(ErrorCode::InternalError(Some(
            "the response was already taken".into(),
        )))),
        None => {
            waiting = Some(CancelOnDropToken::from(
                spin_executor::push_waker_and_get_token(
                    pending.subscribe(),
                    context.waker().clone(),
                ),
            ));
            Poll::Pending
        }
    })
    .await
    .map_err(classify)?;
    drop(waiting);
    read(response, max_body).await
}

async fn read(response: IncomingResponse, max_body: usize) -> Result<Fetched, FetchError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    let mut stream = response.take_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError::Other(format!("reading the answer: {e:?}")))?;
        if body.len() + chunk.len() > max_body {
            return Err(FetchError::TooLarge(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

/// `http://host:port/path?query` → (scheme, authority, path with query).
fn split_url(url: &str) -> Option<(Scheme, &str, &str)> {
    let (scheme, authority, path) = guest_kit_core::split_url(url)?;
    let scheme = match scheme {
        HttpScheme::Http => Scheme::Http,
        HttpScheme::Https => Scheme::Https,
    };
    Some((scheme, authority, path))
}

fn classify(error: ErrorCode) -> FetchError {
    match error {
        ErrorCode::HttpRequestDenied => FetchError::Denied,
        ErrorCode::ConnectionRefused => FetchError::Connect("connection refused".into()),
        ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::DnsError(_) => FetchError::Connect(format!("{error:?}")),
        ErrorCode::ConnectionTimeout => FetchError::Timeout("connecting".into()),
        ErrorCode::DnsTimeout => FetchError::Timeout("resolving the host".into()),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            FetchError::Timeout("waiting for the answer".into())
        }
        ErrorCode::ConnectionWriteTimeout => FetchError::Timeout("sending the request".into()),
        other => FetchError::Other(format!("{other:?}")),
    }
}

/// [`fetch`], seen as a dependency call for the resilience library: an answer (any status), or
/// why there is none. A denied or malformed URL counts as a connect failure (nothing was
/// sent); an answer over `max_body` or another transport error as [`CallFailure::Other`].
pub async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeouts: Timeouts,
    max_body: usize,
) -> Result<HttpAnswer, CallFailure> {
    match fetch(method, url, headers, body, timeouts, max_body).await {
        Ok(answer) => Ok(HttpAnswer {
            status: answer.status,
            retry_after: answer.header("retry-after").map(str::to_owned),
            body: answer.body,
        }),
        Err(error @ (FetchError::Connect(_) | FetchError::Denied | FetchError::BadUrl(_))) => {
            Err(CallFailure::Connect(error.to_string()))
        }
        Err(FetchError::Timeout(detail)) => Err(CallFailure::Timeout(detail)),
        Err(error @ (FetchError::TooLarge(_) | FetchError::Other(_))) => {
            Err(CallFailure::Other(error.to_string()))
        }
    }
}
