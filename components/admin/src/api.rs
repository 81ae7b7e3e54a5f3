//! Every error the admin API returns, mapped to its status and problem body in one place.

use http_problem::Problem;
use ledger::LedgerError;
use orders_core::Timestamp;
use resilience::{BreakerError, SettingError};
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON.
    BadBody(String),
    /// A field has a bad value.
    Invalid {
        /// The JSON member.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A query parameter has a bad value.
    BadQuery {
        /// The parameter.
        parameter: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No such dead letter or endpoint.
    NotFound(String),
    /// The endpoint exists but not for this method.
    MethodNotAllowed(&'static str),
    /// The dead letter's order was decided meanwhile (its deadline failed it): nothing to
    /// replay.
    OrderSettled {
        /// The dead letter's id.
        id: i64,
        /// Its order.
        order_id: String,
    },
    /// The dead letter was replayed before.
    AlreadyReplayed {
        /// Its id.
        id: i64,
        /// When.
        at: Timestamp,
    },
    /// A ready-made answer (wrong media type, access refused).
    Refused(Response),
    /// A variable holds a bad setting.
    Settings(SettingError),
    /// The database or the key-value store failed.
    Storage(Box<dyn std::error::Error + Send + Sync>),
    /// Redis refused to publish.
    Redis(String),
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        Self::Storage(Box::new(error))
    }
}

impl From<BreakerError> for ApiError {
    fn from(error: BreakerError) -> Self {
        Self::Storage(Box::new(error))
    }
}

impl ApiError {
    /// The problem response for this error.
    pub fn into_response(self) -> Response {
        let problem = match self {
            Self::BadBody(detail) => Problem::new(400, "Bad Request")
                .with_type("/problems/malformed-request")
                .with_detail(detail),
            Self::Invalid { field, detail } => Problem::new(422, "Unprocessable Content")
                .with_type("/problems/invalid-field")
                .with_detail(format!("{field}: {detail}"))
                .with("field", field),
            Self::BadQuery { parameter, detail } => Problem::new(400, "Bad Request")
                .with_type("/problems/invalid-query")
                .with_detail(format!("{parameter}: {detail}"))
                .with("parameter", parameter),
            Self::NotFound(detail) => return guest_kit::not_found(detail),
            Self::MethodNotAllowed(allow) => return guest_kit::method_not_allowed(allow),
            Self::OrderSettled { id, order_id } => Problem::new(409, "Conflict")
                .with_type("/problems/order-settled")
                .with_detail(format!(
                    "dead letter {id}: order {order_id} was decided meanwhile; nothing to replay"
                ))
                .with("order_id", order_id),
            Self::AlreadyReplayed { id, at } => Problem::new(409, "Conflict")
                .with_type("/problems/already-replayed")
                .with_detail(format!("dead letter {id} was replayed at {at}")),
            Self::Refused(response) => return response,
            Self::Settings(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/settings")
                .with_detail(error.to_string()),
            Self::Storage(error) => {
                eprintln!("admin: storage error: {}", guest_kit::error_chain(&*error));
                Problem::new(503, "Service Unavailable")
                    .with_type("/problems/storage")
                    .with_detail(format!("storage is unavailable: {error}"))
            }
            Self::Redis(detail) => Problem::new(503, "Service Unavailable")
                .with_type("/problems/redis")
                .with_detail(format!("could not publish: {detail}")),
        };
        guest_kit::problem(&problem)
    }
}
