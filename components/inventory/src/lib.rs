//! `inventory`: the stock service the fulfilment saga calls. Its routes, below its private
//! route (`http://inventory.spin.internal`) or its public one (`/internal/inventory`):
//!
//! - `POST /reservations` `{"order_id", "lines": [{"sku", "quantity"}]}`: reserves every line
//!   or none (409 `/problems/out-of-stock`); `POST /reservations/{id}/commit` ships them,
//!   `POST /reservations/{id}/release` gives them back; `GET /reservations/{id}`. All keyed by
//!   the order id and idempotent.
//! - `GET /stock`, `GET /stock/{sku}`: available, reserved, shipped, received and initial units.
//! - `POST /restock` `{"sku", "units"}` (admin): units received.
//! - `GET|POST /configure` (admin): fault injection on the reservation routes.
//! - `GET /health`.
//!
//! Every route sits behind the internal guard (`internal_token`); see `guest_kit::access`.
//! This crate only adapts HTTP to [`inventory_core`]: parse, decide, respond.

mod api;

use api::{ApiError, ReserveRequest, RestockRequest};
use catalog::Catalog;
use guest_kit::service::{self, CommonError};
use guest_kit::{Incoming, SpinSql};
use inventory_core::{Inventory, ReserveOutcome};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// The service name its fault configuration is kept under (`faults/inventory/...`).
const SERVICE: &str = "inventory";

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
    match (segments.as_slice(), &request.method) {
        (["stock"], Method::Get) => stock(),
        (["stock", sku], Method::Get) => stock_of(sku),
        (["restock"], Method::Post) => {
            guest_kit::access::admin(request).map_err(CommonError::Refused)?;
            request.require_json().map_err(CommonError::Refused)?;
            restock(&request.body)
        }
        (["reservations"], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            reserve(&request.body)
        }
        (["reservations", id], Method::Get) => {
            let order_id = api::order_id(id)?;
            match inventory()?.reservation(&order_id)? {
                Some(reservation) => Ok(guest_kit::json(200, &api::reservation_json(&reservation))),
                None => Err(
                    CommonError::NotFound(format!("no reservation for order {order_id}")).into(),
                ),
            }
        }
        (["reservations", id, action @ ("commit" | "release")], Method::Post) => {
            guest_kit::faults::json_call(SERVICE, request).map_err(CommonError::Refused)?;
            let order_id = api::order_id(id)?;
            let inventory = inventory()?;
            let reservation = if *action == "commit" {
                inventory.commit(&order_id)?
            } else {
                inventory.release(&order_id)?
            };
            Ok(guest_kit::json(200, &api::reservation_json(&reservation)))
        }
        (["stock"] | ["stock", _] | ["reservations", _], _) => {
            Err(CommonError::MethodNotAllowed("GET").into())
        }
        (["restock"] | ["reservations"] | ["reservations", _, "commit" | "release"], _) => {
            Err(CommonError::MethodNotAllowed("POST").into())
        }
        _ => Err(CommonError::no_endpoint(SERVICE, path).into()),
    }
}

fn reserve(body: &[u8]) -> Result<Response, ApiError> {
    let request = ReserveRequest::parse(body)?;
    match inventory()?.reserve(&request.order_id, &request.lines)? {
        ReserveOutcome::Reserved(reservation) => {
            Ok(guest_kit::json(200, &api::reservation_json(&reservation)))
        }
        ReserveOutcome::OutOfStock(shortage) => Err(ApiError::OutOfStock(shortage)),
    }
}

fn stock() -> Result<Response, ApiError> {
    let catalog = catalog()?;
    let levels = Inventory::new(open_sql()?, catalog.clone()).levels()?;
    let levels: Vec<_> = levels
        .iter()
        .map(|level| api::level_json(level, initial_stock(&catalog, level.sku.as_str())))
        .collect();
    Ok(guest_kit::json(200, &serde_json::json!({"stock": levels})))
}

fn stock_of(segment: &str) -> Result<Response, ApiError> {
    let name = guest_kit::percent_decode(segment);
    let unknown = || ApiError::from(CommonError::NotFound(format!("no stock of {name:?}")));
    let sku = orders_core::ProductName::new(&name).map_err(|_| unknown())?;
    let catalog = catalog()?;
    let level = match Inventory::new(open_sql()?, catalog.clone()).level(&sku) {
        Err(inventory_core::InventoryError::UnknownSku(_)) => return Err(unknown()),
        found => found?,
    };
    Ok(guest_kit::json(
        200,
        &api::level_json(&level, initial_stock(&catalog, level.sku.as_str())),
    ))
}

fn restock(body: &[u8]) -> Result<Response, ApiError> {
    let request = RestockRequest::parse(body)?;
    let catalog = catalog()?;
    let level =
        Inventory::new(open_sql()?, catalog.clone()).restock(&request.sku, request.units)?;
    Ok(guest_kit::json(
        200,
        &api::level_json(&level, initial_stock(&catalog, level.sku.as_str())),
    ))
}

fn initial_stock(catalog: &Catalog, sku: &str) -> Option<u32> {
    catalog.find(sku).map(|product| product.initial_stock)
}

fn inventory() -> Result<Inventory<SpinSql>, ApiError> {
    Ok(Inventory::new(open_sql()?, catalog()?))
}

fn open_sql() -> Result<SpinSql, ApiError> {
    SpinSql::open_default().map_err(|source| {
        ApiError::Inventory(inventory_core::InventoryError::Sql {
            operation: "open the database",
            source: orderly_sql::SchemaError::Statement(source),
        })
    })
}

/// The catalogue: the `catalog` variable's JSON when set, else the one shipped.
fn catalog() -> Result<Catalog, ApiError> {
    guest_kit::catalog().map_err(ApiError::Catalog)
}
