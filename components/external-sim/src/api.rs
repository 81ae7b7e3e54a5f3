//! HTTP edges: request paths, JSON responses, and every error mapped to its status, once.

use http_problem::Problem;
use simulator_core::ConfigError;
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// The body could not be parsed.
    BadRequest(String),
    /// A field has a bad value.
    Invalid {
        /// The JSON member.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No such endpoint.
    NotFound(String),
    /// The endpoint exists but not for this method (the value lists the allowed ones).
    MethodNotAllowed(&'static str),
    /// The configured fault: a 500.
    InjectedFault,
    /// The configured outage: a 503.
    SimulatedOutage,
    /// The key-value store failed.
    Storage(String),
    /// The `catalog` variable holds no valid catalogue.
    Catalog(catalog::CatalogError),
    /// A ready-made answer (wrong media type).
    Refused(Response),
}

impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Malformed(detail) => Self::BadRequest(detail),
            ConfigError::Invalid { field, reason } => Self::Invalid {
                field,
                detail: reason,
            },
        }
    }
}

impl ApiError {
    /// The problem response for this error.
    pub fn into_response(self) -> Response {
        let problem = match self {
            Self::BadRequest(detail) => Problem::new(400, "Bad Request")
                .with_type("/problems/malformed-request")
                .with_detail(detail),
            Self::Invalid { field, detail } => Problem::new(422, "Unprocessable Content")
                .with_type("/problems/invalid-field")
                .with_detail(format!("{field}: {detail}"))
                .with("field", field),
            Self::NotFound(path) => {
                return guest_kit::not_found(format!("external-sim has no endpoint {path}"));
            }
            Self::MethodNotAllowed(allow) => return guest_kit::method_not_allowed(allow),
            Self::InjectedFault => Problem::new(500, "Internal Server Error")
                .with_type("/problems/injected-fault")
                .with_detail("simulated failure (fault injection is on; see GET /configure)"),
            Self::SimulatedOutage => Problem::new(503, "Service Unavailable")
                .with_type("/problems/simulated-outage")
                .with_detail("the validator is down (mode \"down\"; see GET /configure)"),
            Self::Storage(detail) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/storage")
                .with_detail(format!("key-value store: {detail}")),
            Self::Catalog(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/catalog")
                .with_detail(format!("the `catalog` variable: {error}")),
            Self::Refused(response) => return response,
        };
        guest_kit::problem(&problem)
    }
}
