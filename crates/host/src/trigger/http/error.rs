//! Every way the host itself answers a request with an error, and the one place each becomes a
//! status and an RFC 9457 problem body.

use super::edge::BadHost;
use crate::trigger::InstanceError;
use http::{HeaderValue, Response, StatusCode};
use http_problem::Problem;
use std::time::Duration;
use wasmtime_wasi_http::WasiBody;

/// Why the host answers a request itself, with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No route matches the path.
    #[error("no route matches {0}")]
    NoRoute(String),
    /// A path under `/.well-known/spin/` that Spin does not serve.
    #[error("/.well-known/spin/{0} is not a Spin endpoint")]
    NotSpinEndpoint(String),
    /// The Host header is missing, repeated or malformed.
    #[error(transparent)]
    BadHost(#[from] BadHost),
    /// The body is (or is declared) longer than the limit.
    #[error("the request body is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body did not arrive in time (its timeout plus its bytes at the minimum rate).
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The client broke the body off: a malformed chunk, or it went away mid-body.
    #[error("the request body could not be read: {0}")]
    BodyAborted(#[source] hyper::Error),
    /// The host is shutting down and the body had not arrived.
    #[error("the host is shutting down; the request body had not arrived")]
    ShuttingDown,
    /// Too many requests in flight: refused before any instance was made.
    #[error("too many requests in flight; retry shortly")]
    Busy,
    /// Request bodies already fill the body memory budget: refused unread.
    #[error("too many request bodies are being received; retry shortly")]
    BodyMemoryFull,
    /// Every instance slot is busy (the health check).
    #[error("every instance slot is busy ({in_flight} requests in flight, {waiting} waiting)")]
    NoSlotFree {
        /// Requests whose instances run.
        in_flight: usize,
        /// Requests waiting for a slot.
        waiting: usize,
    },
    /// A chained request to a component that does not handle HTTP.
    #[error("the component does not handle HTTP")]
    NotHttp,
    /// The component answered with a `wasi:http` error code instead of a response.
    #[error("the component reported an error: {0}")]
    ComponentError(String),
    /// The instance did not run to a response.
    #[error(transparent)]
    Instance(#[from] InstanceError),
}

impl HttpError {
    /// The status this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) | Self::NotSpinEndpoint(_) => StatusCode::NOT_FOUND,
            Self::BadHost(_) | Self::BodyAborted(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ShuttingDown
            | Self::Busy
            | Self::BodyMemoryFull
            | Self::NoSlotFree { .. }
            | Self::Instance(InstanceError::PoolFull(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Instance(InstanceError::DeadlineExceeded(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::NotHttp | Self::ComponentError(_) | Self::Instance(InstanceError::Failed(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The problem type (`about:blank` where the status says it all).
    fn kind(&self) -> &'static str {
        match self {
            Self::BadHost(_) => "/problems/bad-host",
            Self::BodyTooLarge { .. } => "/problems/body-too-large",
            Self::BodyTimeout => "/problems/body-timeout",
            Self::BodyAborted(_) => "/problems/bad-body",
            Self::ShuttingDown => "/problems/shutting-down",
            Self::Busy
            | Self::BodyMemoryFull
            | Self::NoSlotFree { .. }
            | Self::Instance(InstanceError::PoolFull(_)) => "/problems/overloaded",
            Self::Instance(InstanceError::DeadlineExceeded(_)) => "/problems/deadline-exceeded",
            Self::Instance(InstanceError::Failed(_)) | Self::ComponentError(_) => {
                "/problems/component-failed"
            }
            Self::NoRoute(_) | Self::NotSpinEndpoint(_) | Self::NotHttp => "about:blank",
        }
    }

    /// Whether the connection is closed after the answer: the rest of the body may still be
    /// on its way (or never come), so the connection cannot carry another request.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BodyTooLarge { .. }
                | Self::BodyTimeout
                | Self::BodyAborted(_)
                | Self::BodyMemoryFull
                | Self::ShuttingDown
        )
    }

    /// The answer: the status, a problem body (with the request id where a component was
    /// involved), `Retry-After` on 503, `Connection: close` where the body was not read.
    pub(crate) fn response(&self, request_id: &str, retry_after: Duration) -> Response<WasiBody> {
        let status = self.status();
        let detail = match self {
            // Never the guest's trap in a response: the host log has it.
            Self::Instance(InstanceError::Failed(_)) => {
                "the component failed before responding; see the host log".to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(status.as_u16(), status.canonical_reason().unwrap_or(""))
            .with_type(self.kind())
            .with_detail(detail);
        if matches!(self, Self::Instance(_) | Self::ComponentError(_)) {
            problem = problem.with("request_id", request_id);
        }
        let mut response = super::problem(problem);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        if self.closes_connection() {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status() {
        let failed = || InstanceError::Failed(wasmtime::Error::msg("trap"));
        for (error, status) in [
            (HttpError::NoRoute("/x".into()), 404),
            (HttpError::BadHost(BadHost::Missing), 400),
            (HttpError::BodyTooLarge { limit: 10 }, 413),
            (HttpError::BodyTimeout, 408),
            (HttpError::Busy, 503),
            (HttpError::Instance(failed()), 500),
            (
                HttpError::Instance(InstanceError::DeadlineExceeded(Duration::from_secs(1))),
                504,
            ),
        ] {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn refusals_before_the_body_close_the_connection_and_503_says_when_to_retry() {
        let response = HttpError::BodyTooLarge { limit: 10 }.response("id", Duration::ZERO);
        assert_eq!(response.headers()[http::header::CONNECTION], "close");
        let response = HttpError::Busy.response("id", Duration::from_secs(2));
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
        assert!(response.headers().get(http::header::CONNECTION).is_none());
    }
}
