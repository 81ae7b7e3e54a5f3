//! HTTP edges: request bodies parsed into the domain's types, payments shown as JSON, and every
//! error mapped to its status and problem body, once.

use guest_kit::service::{self, CommonError, parse_json};
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
    /// What every service answers the same way (bad body, not found, refused...).
    Common(CommonError),
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
}

impl From<CommonError> for ApiError {
    fn from(error: CommonError) -> Self {
        Self::Common(error)
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        Self::Payment(error)
    }
}

/// The problem response for each error.
impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        let problem = match error {
            ApiError::Common(error) => return error.into_response(),
            ApiError::Declined { order_id, reason } => Problem::new(402, "Payment Required")
                .with_type("/problems/payment-declined")
                .with_detail(format!("order {order_id}'s payment was declined: {reason}"))
                .with("reason", reason.code()),
            ApiError::Payment(error) => return payment_problem(error),
            ApiError::Settings(detail) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/settings")
                .with_detail(detail),
        };
        guest_kit::problem(&problem)
    }
}

/// The answer to each [`PaymentError`].
fn payment_problem(error: PaymentError) -> Response {
    let detail = guest_kit::error_chain(&error);
    let problem = match &error {
        PaymentError::Sql { .. } => return service::storage_unavailable(detail),
        PaymentError::Corrupt { .. } => service::corrupt_data(detail),
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
        let body: Body = parse_json(body)?;
        Ok(Self {
            order_id: OrderId::parse(&body.order_id)
                .map_err(|error| CommonError::invalid("order_id", error))?,
            amount: Amount::new(body.amount_cents)
                .map_err(|error| CommonError::invalid("amount_cents", error))?,
            card: CardNumber::parse(body.card.as_deref().unwrap_or(DEFAULT_CARD))
                .map_err(|error| CommonError::invalid("card", error))?,
        })
    }
}

/// An order id from a path segment; an id no order can have names no payment.
pub fn order_id(segment: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(segment)
        .map_err(|_| CommonError::NotFound(format!("no payment for order {segment:?}")).into())
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
