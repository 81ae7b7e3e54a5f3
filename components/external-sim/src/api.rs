//! HTTP edges: request paths, JSON responses, and every error mapped to its status, once.

use guest_kit::KvError;
use guest_kit::faults::FaultError;
use guest_kit::service::CommonError;
use http_problem::Problem;
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// What every service answers the same way (bad body, no such endpoint, refused...).
    Common(CommonError),
    /// The fault configuration could not be read.
    Faults(FaultError),
    /// The call counter could not be kept.
    Storage(KvError),
    /// The `catalog` variable holds no valid catalogue.
    Catalog(catalog::CatalogError),
}

impl From<CommonError> for ApiError {
    fn from(error: CommonError) -> Self {
        Self::Common(error)
    }
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
            Self::Common(error) => return error.into_response(),
            Self::Faults(error) => return error.into_response(),
            Self::Storage(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/storage")
                .with_detail(guest_kit::error_chain(&error)),
            Self::Catalog(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/catalog")
                .with_detail(format!("the `catalog` variable: {error}")),
        };
        guest_kit::problem(&problem)
    }
}
