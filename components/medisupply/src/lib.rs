//! `medisupply`: the MediSupply classroom seed's API, so its own scripts run unchanged against
//! Orderly. Every route is a thin adapter over Orderly's API, reached by service chaining:
//!
//! - `POST /create_order {"order_id", "product", "quantity"}` → `POST /orders` with the
//!   `order_id` as the Idempotency-Key (a repeat is not an error) → 200
//!   `{"message": "Order placed successfully!"}`; a missing or empty `order_id` is a 400.
//! - `GET /get_orders` → `{"orders": [[order_id, product, quantity, status], ...]}` with the
//!   seed's capitalised statuses (every page of `GET /orders`).
//! - `DELETE /clear_orders` → `DELETE /admin/orders`.
//! - `POST /set_failure_mode {"mode"}`, `GET /get_failure_mode` → the validator simulator.

use guest_kit::{Fetched, Incoming, Timeouts};
use http_problem::Problem;
use serde_json::{Value, json};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;
use std::time::Duration;

/// The largest request body accepted.
const MAX_BODY: usize = 16 * 1024;
/// The most orders `get_orders` returns (the seed lists them all; this keeps one answer sane).
const MAX_ORDERS: usize = 100_000;
/// How long a chained call may take.
const CHAINED: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    first_byte: Duration::from_secs(30),
    between_bytes: Duration::from_secs(30),
};

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    guest_kit::serve(request, out, MAX_BODY, route).await;
}

async fn route(request: &Incoming) -> Response {
    let result = match (request.path.as_str(), &request.method) {
        ("/create_order", Method::Post) => create_order(request).await,
        ("/get_orders", Method::Get) => get_orders().await,
        ("/clear_orders", Method::Delete | Method::Post) => clear_orders().await,
        ("/set_failure_mode", Method::Post) => set_failure_mode(request).await,
        ("/get_failure_mode", Method::Get) => chain(
            Method::Get,
            "http://external-sim.spin.internal/get_failure_mode",
            None,
        )
        .await
        .map(|answer| passthrough(&answer)),
        ("/create_order" | "/set_failure_mode", _) => Err(guest_kit::method_not_allowed("POST")),
        ("/get_orders" | "/get_failure_mode", _) => Err(guest_kit::method_not_allowed("GET")),
        ("/clear_orders", _) => Err(guest_kit::method_not_allowed("DELETE")),
        (other, _) => Err(guest_kit::not_found(format!("no endpoint {other}"))),
    };
    result.unwrap_or_else(|response| response)
}

async fn create_order(request: &Incoming) -> Result<Response, Response> {
    request.require_json()?;
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
        problem(
            400,
            "/problems/malformed-order",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let order_id = match body.get("order_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        _ => {
            return Err(problem(
                400,
                "/problems/missing-order-id",
                "order_id is required (a non-empty string): the seed's API uses it as the \
                 order's identity and idempotency key"
                    .into(),
            ));
        }
    };
    let answer = chain(
        Method::Post,
        "http://orders.spin.internal/",
        Some((order_id.as_str(), request.body.clone())),
    )
    .await?;
    match answer.status {
        202 => Ok(guest_kit::json(
            200,
            &json!({"message": "Order placed successfully!", "order_id": order_id}),
        )),
        _ => Err(passthrough(&answer)),
    }
}

async fn get_orders() -> Result<Response, Response> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            None => "http://orders.spin.internal/?limit=1000".to_owned(),
            Some(cursor) => format!(
                "http://orders.spin.internal/?limit=1000&after={}",
                guest_kit::percent_encode(cursor)
            ),
        };
        let answer = chain(Method::Get, &url, None).await?;
        if answer.status != 200 {
            return Err(passthrough(&answer));
        }
        let page: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| problem(502, "/problems/bad-upstream", e.to_string()))?;
        for order in page["orders"].as_array().into_iter().flatten() {
            rows.push(seed_row(order));
        }
        match page["next"].as_str() {
            Some(next) if rows.len() < MAX_ORDERS => after = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(guest_kit::json(200, &json!({ "orders": rows })))
}

/// `[order_id, product, quantity, Status]` as the seed lists an order: a one-line order's
/// product and quantity; several lines' products joined with `+` and their units summed.
fn seed_row(order: &Value) -> Value {
    let items = order["items"].as_array().cloned().unwrap_or_default();
    let product = items
        .iter()
        .filter_map(|item| item["product"].as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let quantity: u64 = items
        .iter()
        .filter_map(|item| item["quantity"].as_u64())
        .sum();
    let status = order["status"].as_str().unwrap_or_default();
    let mut label = status.to_owned();
    if let Some(first) = label.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    json!([order["id"], product, quantity, label])
}

async fn clear_orders() -> Result<Response, Response> {
    let answer = chain(Method::Delete, "http://admin.spin.internal/orders", None).await?;
    match answer.status {
        200 => Ok(guest_kit::json(
            200,
            &json!({"message": "All orders cleared successfully!"}),
        )),
        _ => Err(passthrough(&answer)),
    }
}

async fn set_failure_mode(request: &Incoming) -> Result<Response, Response> {
    request.require_json()?;
    let answer = chain(
        Method::Post,
        "http://external-sim.spin.internal/set_failure_mode",
        Some(("", request.body.clone())),
    )
    .await?;
    if answer.status != 200 {
        return Err(passthrough(&answer));
    }
    let config: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    Ok(guest_kit::json(
        200,
        &json!({
            "message": format!("Failure mode set to {}", config["mode"].as_str().unwrap_or("?")),
            "mode": config["mode"],
        }),
    ))
}

/// A service-chained call; `body` is (Idempotency-Key, JSON body) — an empty key sends none.
async fn chain(
    method: Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Fetched, Response> {
    let mut headers = Vec::new();
    let payload = match &body {
        Some((key, payload)) => {
            headers.push(("content-type", "application/json"));
            if !key.is_empty() {
                headers.push(("idempotency-key", *key));
            }
            payload.clone()
        }
        None => Vec::new(),
    };
    guest_kit::fetch(method, url, &headers, payload, CHAINED, 64 << 20)
        .await
        .map_err(|error| problem(502, "/problems/upstream", format!("{url}: {error}")))
}

/// The upstream answer, as it is.
fn passthrough(answer: &Fetched) -> Response {
    Response::builder()
        .status(answer.status)
        .header(
            "content-type",
            answer.header("content-type").unwrap_or("application/json"),
        )
        .body(answer.body.clone())
        .build()
}

fn problem(status: u16, kind: &str, detail: String) -> Response {
    let title = match status {
        400 => "Bad Request",
        502 => "Bad Gateway",
        _ => "Error",
    };
    guest_kit::problem(
        &Problem::new(status, title)
            .with_type(kind)
            .with_detail(detail),
    )
}
