//! Every error the orders API returns, mapped to its status and problem body in one place.

use http_problem::Problem;
use ledger::{CursorError, LedgerError};
use orders_core::{OrderError, OrderStatus};
use resilience::KeyError;
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not a new order.
    InvalidOrder(OrderError),
    /// A create without an `Idempotency-Key` header.
    MissingKey,
    /// An `Idempotency-Key` that is not a valid key.
    InvalidKey(KeyError),
    /// The key was used before with another request body.
    KeyReused,
    /// The first request with this key is still being handled.
    KeyInFlight {
        /// Seconds to wait before trying again.
        retry_after_secs: u64,
    },
    /// Another order already has the client's `order_id`.
    Duplicate(String),
    /// A query parameter has a bad value.
    BadQuery {
        /// The parameter.
        parameter: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An order id in the path that is not a valid id (why not).
    BadOrderId(String),
    /// No such order or endpoint.
    NotFound(String),
    /// A cancellation came too late: the order has this status.
    CannotCancel(OrderStatus),
    /// The endpoint exists but not for this method (the value lists the allowed ones).
    MethodNotAllowed(&'static str),
    /// A ready-made answer (body too large, wrong media type).
    Refused(Response),
    /// The database failed.
    Storage(Box<dyn std::error::Error + Send + Sync>),
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        Self::InvalidOrder(error)
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        Self::Storage(Box::new(error))
    }
}

impl From<CursorError> for ApiError {
    fn from(error: CursorError) -> Self {
        Self::BadQuery {
            parameter: "after",
            detail: error.to_string(),
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
            Self::MissingKey => Problem::new(400, "Bad Request")
                .with_type("/problems/missing-idempotency-key")
                .with_detail(
                    "POST /orders needs an Idempotency-Key header (a unique value per order, \
                     e.g. a UUID), so a retried request never creates a second order",
                ),
            Self::InvalidKey(error) => Problem::new(400, "Bad Request")
                .with_type("/problems/invalid-idempotency-key")
                .with_detail(format!("Idempotency-Key: {error}")),
            Self::KeyReused => Problem::new(422, "Unprocessable Content")
                .with_type("/problems/idempotency-key-reused")
                .with_detail(
                    "this Idempotency-Key was already used with a different request body; use a \
                     new key for a new order",
                ),
            Self::KeyInFlight { retry_after_secs } => {
                let mut response = guest_kit::problem(
                    &Problem::new(409, "Conflict")
                        .with_type("/problems/idempotency-key-in-flight")
                        .with_detail(
                            "the first request with this Idempotency-Key is still being \
                             handled; retry after a moment to get its answer",
                        ),
                );
                response.set_header("retry-after", retry_after_secs.to_string());
                return response;
            }
            Self::Duplicate(id) => Problem::new(409, "Conflict")
                .with_type("/problems/duplicate-order")
                .with_detail(format!(
                    "an order with id {id} exists already (created with another Idempotency-Key)"
                ))
                .with("order_id", id),
            Self::BadQuery { parameter, detail } => Problem::new(400, "Bad Request")
                .with_type("/problems/invalid-query")
                .with_detail(format!("{parameter}: {detail}"))
                .with("parameter", parameter),
            Self::BadOrderId(detail) => Problem::new(400, "Bad Request")
                .with_type("/problems/invalid-order-id")
                .with_detail(format!("the order id in the path: {detail}")),
            Self::CannotCancel(status) => Problem::new(409, "Conflict")
                .with_type("/problems/cannot-cancel")
                .with_detail(format!(
                    "the order is {status}; it can no longer be cancelled"
                ))
                .with("status", status.as_str()),
            Self::NotFound(detail) => return guest_kit::not_found(detail),
            Self::MethodNotAllowed(allow) => return guest_kit::method_not_allowed(allow),
            Self::Refused(response) => return response,
            Self::Storage(error) => {
                eprintln!("orders: storage error: {}", guest_kit::error_chain(&*error));
                let mut response = guest_kit::problem(
                    &Problem::new(503, "Service Unavailable")
                        .with_type("/problems/storage")
                        .with_detail(format!("the order database is unavailable: {error}")),
                );
                response.set_header("retry-after", "1");
                return response;
            }
        };
        guest_kit::problem(&problem)
    }
}
