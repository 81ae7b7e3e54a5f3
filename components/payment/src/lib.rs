//! `payment`: the payment service the fulfilment saga calls. Its routes, below its private
//! route (`http://payment.spin.internal`) or its public one (`/internal/payment`):
//!
//! - `POST /payments` `{"order_id", "amount_cents", "customer", "card"?}`: authorizes, or
//!   declines deterministically (402 `/problems/payment-declined`: payment-core's declining
//!   test cards, and amounts over `payment_limit_cents`).
//! - `POST /payments/{id}/capture`: charges the authorization.
//! - `POST /payments/{id}/compensate`: leaves the order uncharged (voids an authorization,
//!   refunds a charge, or records that none may come).
//! - `GET /payments/{id}`.
//! - `GET|POST /configure` (admin): fault injection on the payment routes.
//! - `GET /health`.
//!
//! All keyed by the order id and idempotent. Every route sits behind the internal guard
//! (`internal_token`); see `guest_kit::access`. This crate only adapts HTTP to
//! [`payment_core`]: parse, decide, respond.

mod api;

use api::{ApiError, AuthorizeRequest};
use guest_kit::service::{self, CommonError};
use guest_kit::{Incoming, SpinSql};
use payment_core::{Amount, Authorization, PaymentError, PaymentPolicy, Payments};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// The service name its fault configuration is kept under (`faults/payment/...`).
const SERVICE: &str = "payment";

/// The largest request body accepted.
const MAX_BODY: usize = 4 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    service::serve(SERVICE, request, out, MAX_BODY, route).await;
}

/// Routes a request past the gate and `/health` (see [`service::serve`]).
fn route(request: &Incoming) -> Result<Response, ApiError> {
    let path = request.path_info.as_str();
    let segments = service::segments(path);
    match (segments.as_slice(), &request.method) {
        (["payments"], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            authorize(&request.body)
        }
        (["payments", id], Method::Get) => {
            let order_id = api::order_id(id)?;
            match payments()?.payment(&order_id)? {
                Some(payment) => Ok(guest_kit::json(200, &api::payment_json(&payment))),
                None => {
                    Err(CommonError::NotFound(format!("no payment for order {order_id}")).into())
                }
            }
        }
        (["payments", id, action @ ("capture" | "compensate")], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            let order_id = api::order_id(id)?;
            let payments = payments()?;
            let payment = if *action == "capture" {
                payments.capture(&order_id)?
            } else {
                payments.compensate(&order_id)?
            };
            Ok(guest_kit::json(200, &api::payment_json(&payment)))
        }
        (["payments", _], _) => Err(CommonError::MethodNotAllowed("GET").into()),
        (["payments"] | ["payments", _, "capture" | "compensate"], _) => {
            Err(CommonError::MethodNotAllowed("POST").into())
        }
        _ => Err(CommonError::no_endpoint(SERVICE, path).into()),
    }
}

fn authorize(body: &[u8]) -> Result<Response, ApiError> {
    let request = AuthorizeRequest::parse(body)?;
    let payments = payments()?;
    match payments.authorize(&request.order_id, request.amount, &request.card)? {
        Authorization::Authorized { .. } => {
            let payment = payments
                .payment(&request.order_id)?
                .ok_or_else(|| PaymentError::UnknownOrder(request.order_id.clone()))?;
            Ok(guest_kit::json(200, &api::payment_json(&payment)))
        }
        Authorization::Declined { reason } => Err(ApiError::Declined {
            order_id: request.order_id,
            reason,
        }),
    }
}

/// Payments on the `default` database, under the policy the variables set.
fn payments() -> Result<Payments<SpinSql>, ApiError> {
    let sql = SpinSql::open_default().map_err(|source| PaymentError::Sql {
        operation: "open the database",
        source: orderly_sql::SchemaError::Statement(source),
    })?;
    Ok(Payments::new(sql, policy()?))
}

/// The default policy, its limit from `payment_limit_cents` when set.
fn policy() -> Result<PaymentPolicy, ApiError> {
    let Some(text) = guest_kit::variable("payment_limit_cents") else {
        return Ok(PaymentPolicy::default());
    };
    let limit = text
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|cents| Amount::new(cents).ok())
        .ok_or_else(|| {
            ApiError::Settings(format!(
                "payment_limit_cents must be a whole number of cents above 0, got {text:?}"
            ))
        })?;
    Ok(PaymentPolicy { limit })
}
