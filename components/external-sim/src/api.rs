//! HTTP edges: request paths, JSON responses, and every error mapped to its status, once.

use guest_kit::KvError;
use guest_kit::faults::FaultError;
use http_problem::Problem;
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// The body could not be parsed.
    BadRequest(String),
    /// No such endpoint.
    NotFound(String),
    /// The endpoint exists but not for this method (the value lists the allowed ones).
    MethodNotAllowed(&'static str),
    /// The fault configuration could not be read.
    Faults(FaultError),
    /// The call counter could not be kept.
    Storage(KvError),
    /// The `catalog` variable holds no valid catalogue.
    Catalog(catalog::CatalogError),
    /// A ready-made answer (wrong media type, injected fault).
    Refused(Response),
}

impl From<FaultError> for ApiError {
    fn from(error: FaultError) -> Self {
        Self::Faults(error)
    }
}

impl From<KvError> for ApiError {
    fn from(error: KvError) -> Self {
        Self::Storage(error)
    }
}

impl ApiError {
    /// The problem response for this error.
    pub fn into_response(self) -> Response {
        let problem = match self {
            Self::BadRequest(detail) => Problem::new(400, "Bad Request")
                .with_type("/problems/malformed-request")
                .with_detail(detail),
            Self::NotFound(path) => {
                return guest_kit::not_found(format!("external-sim has no endpoint {path}"));
            }
            Self::MethodNotAllowed(allow) => return guest_kit::method_not_allowed(allow),
            Self::Faults(error) => return error.into_response(),
            Self::Storage(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/storage")
                .with_detail(guest_kit::error_chain(&error)),
            Self::Catalog(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/catalog")
                .with_detail(format!("the `catalog` variable: {error}")),
            Self::Refused(response) => return response,
        };
        guest_kit::problem(&problem)
    }
}
