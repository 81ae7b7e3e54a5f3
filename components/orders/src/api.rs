//! Every error the orders API returns, mapped to its status and problem body in one place.

use crate::store::StoreError;
use http_problem::Problem;
use orders_core::OrderError;
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not a new order.
    InvalidOrder(OrderError),
    /// A query parameter has a bad value.
    BadQuery {
        /// The parameter.
        parameter: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No such order or endpoint.
    NotFound(String),
    /// The endpoint exists but not for this method (the value lists the allowed ones).
    MethodNotAllowed(&'static str),
    /// An order with this id exists already.
    Duplicate(String),
    /// The database failed.
    Storage(String),
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        Self::InvalidOrder(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Duplicate(id) => Self::Duplicate(id),
            StoreError::Database(detail) => Self::Storage(detail),
        }
    }
}

impl ApiError {
    /// The problem response for this error.
    pub fn into_response(self) -> Response {
        let problem = match self {
            Self::InvalidOrder(error @ OrderError::Malformed(_)) => {
                Problem::new(400, "Bad Request")
                    .with_type("/problems/malformed-order")
                    .with_detail(error.to_string())
            }
            Self::InvalidOrder(error) => {
                let problem = Problem::new(422, "Unprocessable Content")
                    .with_type("/problems/invalid-order")
                    .with_detail(error.to_string());
                match error.field() {
                    Some(field) => problem.with("field", field),
                    None => problem,
                }
            }
            Self::BadQuery { parameter, detail } => Problem::new(400, "Bad Request")
                .with_type("/problems/invalid-query")
                .with_detail(format!("{parameter}: {detail}"))
                .with("parameter", parameter),
            Self::NotFound(detail) => return guest_kit::not_found(detail),
            Self::MethodNotAllowed(allow) => return guest_kit::method_not_allowed(allow),
            Self::Duplicate(id) => Problem::new(409, "Conflict")
                .with_type("/problems/duplicate-order")
                .with_detail(format!("an order with id {id} exists already"))
                .with("order_id", id),
            Self::Storage(detail) => Problem::new(503, "Service Unavailable")
                .with_type("/problems/storage")
                .with_detail(format!("the order database is unavailable: {detail}")),
        };
        guest_kit::problem(&problem)
    }
}
