//! `orders`: accepts orders and serves them back. `POST /orders` stores a new order in SQLite
//! and answers 202 with its id at once (validation happens later, elsewhere);
//! `GET /orders/:id` returns one order; `GET /orders?status=...&limit=...` lists them.
//!
//! This crate only adapts HTTP to [`orders_core`] and SQLite: parse, decide, store, respond.

mod api;
mod store;

use api::ApiError;
use orders_core::{NewOrder, OrderId, OrderStatus, Timestamp};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use store::OrderStore;

/// Orders a list returns when the client does not say.
const DEFAULT_LIMIT: u32 = 100;
/// The most orders one list returns.
const MAX_LIMIT: u32 = 1000;

#[http_component]
fn handle(request: Request) -> Response {
    route(&request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    let path = guest_kit::path_info(request);
    match path.trim_end_matches('/') {
        "" => match request.method() {
            Method::Post => create(request),
            Method::Get => list(request.query()),
            _ => Err(ApiError::MethodNotAllowed("GET, POST")),
        },
        item => {
            let id = item.strip_prefix('/').unwrap_or(item);
            if id.contains('/') {
                return Err(ApiError::NotFound(format!("no resource at {path}")));
            }
            match request.method() {
                Method::Get => show(id),
                _ => Err(ApiError::MethodNotAllowed("GET")),
            }
        }
    }
}

fn create(request: &Request) -> Result<Response, ApiError> {
    let order = NewOrder::parse(request.body())?.accept(now(), entropy());
    OrderStore::open()?.insert(&order)?;
    let base = request
        .header("spin-component-route")
        .and_then(|value| value.as_str())
        .unwrap_or("/orders");
    let mut response = guest_kit::json(202, &order);
    response.set_header("location", format!("{base}/{}", order.id));
    Ok(response)
}

fn show(id: &str) -> Result<Response, ApiError> {
    let id = OrderId::parse(id).map_err(|_| ApiError::NotFound(format!("no order {id:?}")))?;
    match OrderStore::open()?.get(&id)? {
        Some(order) => Ok(guest_kit::json(200, &order)),
        None => Err(ApiError::NotFound(format!("no order {id}"))),
    }
}

fn list(query: &str) -> Result<Response, ApiError> {
    let mut status = None;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in guest_kit::query_pairs(query) {
        match key.as_str() {
            "status" => {
                status = Some(
                    value
                        .parse::<OrderStatus>()
                        .map_err(|e| ApiError::BadQuery {
                            parameter: "status",
                            detail: e.to_string(),
                        })?,
                )
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| ApiError::BadQuery {
                        parameter: "limit",
                        detail: format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    })?
            }
            _ => {}
        }
    }
    let orders = OrderStore::open()?.list(status, limit)?;
    Ok(guest_kit::json(
        200,
        &OrderList {
            count: orders.len(),
            orders,
        },
    ))
}

/// The body of `GET /orders`.
#[derive(serde::Serialize)]
struct OrderList {
    count: usize,
    orders: Vec<orders_core::Order>,
}

/// The wall clock, read here at the edge and handed to the domain.
fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(since_epoch.as_millis() as u64)
}

/// Random bits for new ids, from the host's `wasi:random`.
fn entropy() -> [u8; 10] {
    let bytes = wasi::random::random::get_random_bytes(10);
    let mut entropy = [0; 10];
    entropy.copy_from_slice(&bytes[..10]);
    entropy
}
