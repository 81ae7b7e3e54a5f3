//! HTTP edges: request bodies parsed into the domain's types, payments shown as JSON, and every
//! error mapped to its status and problem body, once.

use http_problem::Problem;
use orders_core::OrderId;
use payment_core::{Amount, CardNumber, DeclineReason, Payment, PaymentError};
use serde::Deserialize;
use serde_json::{Value, json};
use spin_sdk::http::Response;

/// The card charged when a request names none: Stripe's test card that always succeeds. The
/// fulfilment saga sends no card (orders carry none), so only the amount limit declines its
/// authorizations.
const DEFAULT_CARD: &str = "4242424242424242";

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not the JSON expected.
    BadBody(String),
    /// A member has a bad value.
    Invalid {
        /// The JSON member.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No such endpoint or payment.
    NotFound(String),
    /// The endpoint exists but not for this method (the value lists the allowed ones).
    MethodNotAllowed(&'static str),
    /// The authorization was declined.
    Declined {
        /// The order.
        order_id: OrderId,
        /// Why.
        reason: DeclineReason,
    },
    /// The payment service refused or failed.
    Payment(PaymentError),
    /// The `payment_limit_cents` variable is not an amount.
    Settings(String),
    /// A ready-made answer (wrong media type, access refused, injected fault).
    Refused(Response),
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        Self::Payment(error)
    }
}

impl ApiError {
    /// The problem response for this error.
    pub fn into_response(self) -> Response {
        let problem = match self {
            Self::BadBody(detail) => Problem::new(400, "Bad Request")
                .with_type("/problems/malformed-request")
                .with_detail(detail),
            Self::Invalid { field, detail } => Problem::new(400, "Bad Request")
                .with_type("/problems/invalid-field")
                .with_detail(format!("{field}: {detail}"))
                .with("field", field),
            Self::NotFound(detail) => return guest_kit::not_found(detail),
            Self::MethodNotAllowed(allow) => return guest_kit::method_not_allowed(allow),
            Self::Declined { order_id, reason } => Problem::new(402, "Payment Required")
                .with_type("/problems/payment-declined")
                .with_detail(format!("order {order_id}'s payment was declined: {reason}"))
                .with("reason", reason.code()),
            Self::Payment(error) => return payment_problem(error),
            Self::Settings(detail) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/settings")
                .with_detail(detail),
            Self::Refused(response) => return response,
        };
        guest_kit::problem(&problem)
    }
}

/// The answer to each [`PaymentError`].
fn payment_problem(error: PaymentError) -> Response {
    let detail = guest_kit::error_chain(&error);
    let problem = match &error {
        PaymentError::Sql { .. } => {
            let mut response = guest_kit::problem(
                &Problem::new(503, "Service Unavailable")
                    .with_type("/problems/storage")
                    .with_detail(detail),
            );
            response.set_header("retry-after", "1");
            return response;
        }
        PaymentError::Corrupt { .. } => Problem::new(500, "Internal Server Error")
            .with_type("/problems/corrupt-data")
            .with_detail(detail),
        PaymentError::UnknownOrder(_) => Problem::new(404, "Not Found")
            .with_type("/problems/unknown-payment")
            .with_detail(detail),
        PaymentError::Conflict(_) => Problem::new(409, "Conflict")
            .with_type("/problems/payment-conflict")
            .with_detail(detail),
        PaymentError::Closed { state, .. } => Problem::new(409, "Conflict")
            .with_type("/problems/payment-closed")
            .with_detail(detail)
            .with("state", state.as_str()),
        PaymentError::IllegalTransition {
            operation, state, ..
        } => Problem::new(409, "Conflict")
            .with_type("/problems/illegal-transition")
            .with_detail(detail)
            .with("operation", operation.to_string())
            .with("state", state.as_str()),
    };
    guest_kit::problem(&problem)
}

/// `POST /payments`: `{"order_id", "amount_cents", "customer"?, "card"?}`. The customer is
/// accepted as the saga sends it and not kept; the card defaults to [`DEFAULT_CARD`].
pub struct AuthorizeRequest {
    /// The order paying.
    pub order_id: OrderId,
    /// What it pays.
    pub amount: Amount,
    /// The card charged.
    pub card: CardNumber,
}

impl AuthorizeRequest {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Body {
            order_id: String,
            amount_cents: u64,
            card: Option<String>,
        }
        let body: Body =
            serde_json::from_slice(body).map_err(|error| ApiError::BadBody(error.to_string()))?;
        let invalid = |field| {
            move |error: &dyn std::fmt::Display| ApiError::Invalid {
                field,
                detail: error.to_string(),
            }
        };
        Ok(Self {
            order_id: OrderId::parse(&body.order_id).map_err(|e| invalid("order_id")(&e))?,
            amount: Amount::new(body.amount_cents).map_err(|e| invalid("amount_cents")(&e))?,
            card: CardNumber::parse(body.card.as_deref().unwrap_or(DEFAULT_CARD))
                .map_err(|e| invalid("card")(&e))?,
        })
    }
}

/// An order id from a path segment; an id no order can have names no payment.
pub fn order_id(segment: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(segment)
        .map_err(|_| ApiError::NotFound(format!("no payment for order {segment:?}")))
}

/// A payment as JSON.
pub fn payment_json(payment: &Payment) -> Value {
    json!({
        "payment_id": payment.id.as_str(),
        "order_id": payment.order_id.as_str(),
        "state": payment.state.as_str(),
        "amount_cents": payment.amount.map(Amount::cents),
        "card_last4": payment.card_last4,
        "decline_reason": payment.decline.map(DeclineReason::code),
        "captured_cents": payment.captured_cents,
        "refunded_cents": payment.refunded_cents,
        "charged_cents": payment.charged_cents(),
    })
}
