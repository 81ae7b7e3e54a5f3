//! What the services (inventory, payment, shipping, external-sim) share at their HTTP edge: the
//! errors every one answers the same way ([`CommonError`]), their JSON bodies parsed into it,
//! the gate and `/health` route in front of their own routes ([`serve`]), and the answers to
//! their stores' failures.

use crate::{Incoming, access};
use http_problem::Problem;
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};

/// The errors every service answers the same way; each service's own error type wraps it.
#[derive(Debug)]
pub enum CommonError {
    /// The body is not the JSON expected (400 `/problems/malformed-request`).
    BadBody(String),
    /// A member has a bad value (400 `/problems/invalid-field`).
    Invalid {
        /// The JSON member (`lines[2].quantity`).
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// No such endpoint or resource (404).
    NotFound(String),
    /// The endpoint exists but not for this method (405; the value lists the allowed ones).
    MethodNotAllowed(&'static str),
    /// A ready-made answer (wrong media type, access refused, injected fault).
    Refused(Response),
}

impl CommonError {
    /// A bad value in member `field`.
    pub fn invalid(field: impl Into<String>, detail: impl ToString) -> Self {
        Self::Invalid {
            field: field.into(),
            detail: detail.to_string(),
        }
    }

    /// 404 for a path `service` has no endpoint at.
    pub fn no_endpoint(service: &str, path: &str) -> Self {
        Self::NotFound(format!("{service} has no endpoint {path}"))
    }

    /// The problem response for this error.
    pub fn into_response(self) -> Response {
        match self {
            Self::BadBody(detail) => crate::problem(
                &Problem::new(400, "Bad Request")
                    .with_type("/problems/malformed-request")
                    .with_detail(detail),
            ),
            Self::Invalid { field, detail } => crate::problem(
                &Problem::new(400, "Bad Request")
                    .with_type("/problems/invalid-field")
                    .with_detail(format!("{field}: {detail}"))
                    .with("field", field),
            ),
            Self::NotFound(detail) => crate::not_found(detail),
            Self::MethodNotAllowed(allow) => crate::method_not_allowed(allow),
            Self::Refused(response) => response,
        }
    }
}

/// A JSON body parsed, or [`CommonError::BadBody`].
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CommonError> {
    serde_json::from_slice(body).map_err(|error| CommonError::BadBody(error.to_string()))
}

/// A request path's segments, without its leading slashes (`/a/b` gives `["a", "b"]`).
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// What a service answers on `GET /health`.
fn health(service: &str) -> Response {
    crate::json(
        200,
        &serde_json::json!({"status": "healthy", "service": service}),
    )
}

/// Serves one request to `service` (see [`crate::serve`]): the [`access::service_gate`] and
/// `GET /health` answer first, then `route`, its error as the response it converts into.
pub async fn serve<E: Into<Response>>(
    service: &str,
    request: IncomingRequest,
    out: ResponseOutparam,
    max_body: usize,
    route: impl FnOnce(&Incoming) -> Result<Response, E>,
) {
    crate::serve(request, out, max_body, async move |request| {
        gate(service, request).unwrap_or_else(|| route(request).unwrap_or_else(Into::into))
    })
    .await;
}

/// The routes in front of a service's own: the [`access::service_gate`], then `/health` (`GET`
/// only). `Some` answer when one of them answers; `None` to route the request.
fn gate(service: &str, request: &Incoming) -> Option<Response> {
    if let Some(response) = access::service_gate(service, request) {
        return Some(response);
    }
    match (segments(&request.path_info).as_slice(), &request.method) {
        (["health"], Method::Get) => Some(health(service)),
        (["health"], _) => Some(crate::method_not_allowed("GET")),
        _ => None,
    }
}

/// 503 with `Retry-After: 1`: the service's database failed (`/problems/storage`).
pub fn storage_unavailable(detail: String) -> Response {
    let mut response = crate::problem(
        &Problem::new(503, "Service Unavailable")
            .with_type("/problems/storage")
            .with_detail(detail),
    );
    response.set_header("retry-after", "1");
    response
}

/// 500: the service's database holds what it cannot read (`/problems/corrupt-data`).
pub fn corrupt_data(detail: String) -> Problem {
    Problem::new(500, "Internal Server Error")
        .with_type("/problems/corrupt-data")
        .with_detail(detail)
}
