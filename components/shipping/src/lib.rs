//! `shipping`: the shipping service the fulfilment saga calls. Its routes, below its private
//! route (`http://shipping.spin.internal`) or its public one (`/internal/shipping`):
//!
//! - `POST /shipments` `{"order_id", "lines": [{"sku", "quantity"}], "recipient", "address"?}`:
//!   a shipment with its label and tracking number (derived from `tracking_seed`).
//! - `POST /shipments/{id}/cancel`: cancels it while only its label exists, or records that
//!   none may be created (409 `/problems/too-late-to-cancel` once in transit).
//! - `POST /shipments/{id}/status` `{"status": "in_transit" | "delivered"}`: the carrier's news.
//! - `GET /shipments/{id}`.
//! - `GET|POST /configure` (admin): fault injection on the shipment routes.
//! - `GET /health`.
//!
//! All keyed by the order id and idempotent. Every route sits behind the internal guard
//! (`internal_token`); see `guest_kit::access`. This crate only adapts HTTP to
//! [`shipping_core`]: parse, decide, respond.

mod api;

use api::{ApiError, ShipRequest};
use guest_kit::service::{self, CommonError};
use guest_kit::{Incoming, SpinSql, WallClock};
use orders_core::Timestamp;
use resilience::Clock;
use shipping_core::{CancelOutcome, Shipping, ShippingError, TrackingSeed};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// The service name its fault configuration is kept under (`faults/shipping/...`).
const SERVICE: &str = "shipping";

/// The largest request body accepted (50 lines fit many times over).
const MAX_BODY: usize = 16 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    service::serve(SERVICE, request, out, MAX_BODY, route).await;
}

/// Routes a request past the gate and `/health` (see [`service::serve`]).
fn route(request: &Incoming) -> Result<Response, ApiError> {
    let path = request.path_info.as_str();
    let segments = service::segments(path);
    let now = || Timestamp(WallClock.now_ms());
    match (segments.as_slice(), &request.method) {
        (["shipments"], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            let ship = ShipRequest::parse(&request.body)?;
            let shipment =
                shipping()?.create_shipment(&ship.order_id, &ship.lines, &ship.ship_to, now())?;
            Ok(guest_kit::json(200, &api::shipment_json(&shipment)))
        }
        (["shipments", id], Method::Get) => {
            let order_id = api::order_id(id)?;
            match shipping()?.get(&order_id)? {
                Some(shipment) => Ok(guest_kit::json(200, &api::shipment_json(&shipment))),
                None => {
                    Err(CommonError::NotFound(format!("no shipment for order {order_id}")).into())
                }
            }
        }
        (["shipments", id, "cancel"], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            let order_id = api::order_id(id)?;
            let shipment = match shipping()?.cancel(&order_id, now())? {
                CancelOutcome::Cancelled(shipment) => Some(api::shipment_json(&shipment)),
                CancelOutcome::NothingShipped => None,
            };
            Ok(guest_kit::json(
                200,
                &serde_json::json!({
                    "order_id": order_id.as_str(),
                    "status": "cancelled",
                    "shipment": shipment,
                }),
            ))
        }
        (["shipments", id, "status"], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            let order_id = api::order_id(id)?;
            let update = api::parse_status_update(&request.body)?;
            let shipment = shipping()?.update_status(&order_id, update, now())?;
            Ok(guest_kit::json(200, &api::shipment_json(&shipment)))
        }
        (["shipments", _], _) => Err(CommonError::MethodNotAllowed("GET").into()),
        (["shipments"] | ["shipments", _, "cancel" | "status"], _) => {
            Err(CommonError::MethodNotAllowed("POST").into())
        }
        _ => Err(CommonError::no_endpoint(SERVICE, path).into()),
    }
}

/// Shipments on the `default` database, tracking numbers derived with `tracking_seed`.
fn shipping() -> Result<Shipping<SpinSql>, ApiError> {
    let text = guest_kit::variable("tracking_seed").unwrap_or_else(|| "0".into());
    let seed = text.trim().parse::<u64>().map_err(|_| {
        ApiError::Settings(format!(
            "tracking_seed must be a whole number from 0 to {}, got a value that is not",
            u64::MAX
        ))
    })?;
    let sql = SpinSql::open_default().map_err(|source| ShippingError::Sql {
        operation: "open the database",
        source: orderly_sql::SchemaError::Statement(source),
    })?;
    Ok(Shipping::new(sql, TrackingSeed(seed)))
}
