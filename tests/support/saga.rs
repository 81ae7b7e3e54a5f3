//! What the fulfilment saga's tests (`fulfilment`, `saga`, `notification`) share: orders
//! created and awaited, their saga events, and fake inventory, payment and shipping services.

use crate::native_server::RecordingServer;
use crate::{HttpClient, Reply};
use orderly_host::LoadOptions;
use serde_json::Value;
use std::time::Duration;

/// The internal token [`wire_services`] gives the app, which it must send to the services.
pub const TOKEN: &str = "test-internal-token";

/// The saga events (kind, outcome) of an order that went through every step.
pub const CONFIRMED: [(&str, &str); 5] = [
    ("step_done", "reserve"),
    ("step_done", "authorize"),
    ("step_done", "ship"),
    ("step_done", "capture"),
    ("confirmed", "commit"),
];

/// Fake services, for a [`RecordingServer`]: every request done, except reserving
/// `Medicine B` (out of stock) and shipping to `Far Away` (refused).
pub fn fake_services(path: &str, body: &[u8]) -> (u16, String) {
    let body = String::from_utf8_lossy(body);
    if path == "/internal/inventory/reservations" && body.contains("Medicine B") {
        let problem = r#"{"type": "/problems/out-of-stock", "title": "Conflict", "detail": "Medicine B: 0 left"}"#;
        return (409, problem.into());
    }
    if path == "/internal/shipping/shipments" && body.contains("Far Away") {
        let problem = r#"{"type": "/problems/undeliverable", "title": "Unprocessable Content", "detail": "no courier goes there"}"#;
        return (422, problem.into());
    }
    (200, "{}".into())
}

/// Puts the app's services at `server`, sets the internal token ([`TOKEN`]), and makes
/// retries quick.
pub fn wire_services(options: &mut LoadOptions, server: &RecordingServer) {
    crate::services_at(options, &format!("http://{}", server.address));
    for (name, value) in [
        ("internal_token", TOKEN),
        ("retry_base_ms", "20"),
        ("retry_max_delay_ms", "200"),
    ] {
        options.variables.insert(name.to_owned(), value.to_owned());
    }
}

/// Creates order `id` from `body` (202 expected).
pub async fn create(client: &HttpClient, id: &str, body: &str) {
    let reply = client.create_order(id, body).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
}

/// Order `id` (one `Medicine A`), created with the validator down so that it stays pending,
/// then cancelled: the cancel's reply (202 expected).
pub async fn cancel_pending(client: &HttpClient, id: &str) -> Reply {
    let mode = client
        .post("/external/configure", r#"{"mode": "down"}"#)
        .await;
    assert_eq!(mode.status, 200, "{}", mode.text());
    create(
        client,
        id,
        &format!(r#"{{"order_id": "{id}", "product": "Medicine A", "quantity": 1}}"#),
    )
    .await;
    let cancelled = client.post(&format!("/orders/{id}/cancel"), "").await;
    assert_eq!(cancelled.status, 202, "{}", cancelled.text());
    cancelled
}

/// Order `id` once `done` accepts it (or as it is after `limit`).
pub async fn order_until(
    client: &HttpClient,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/orders/{id}");
    client
        .wait_for(limit, async |c| c.get(&path).await.json(), done)
        .await
}

/// Order `id` once its status is `wanted` (or as it is after 30 s).
pub async fn order_when(client: &HttpClient, id: &str, wanted: &str) -> Value {
    order_until(client, id, Duration::from_secs(30), |order| {
        order["status"] == wanted
    })
    .await
}

/// Order `id`'s events from its validation on, as (kind, outcome).
pub async fn saga_events(client: &HttpClient, id: &str) -> Vec<(String, String)> {
    let events = client.get(&format!("/orders/{id}/events")).await.json();
    let pairs: Vec<(String, String)> = events["events"]
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|event| {
            let text = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("outcome"))
        })
        .collect();
    let validated = pairs
        .iter()
        .position(|(kind, _)| kind == "validated")
        .unwrap_or_else(|| panic!("{id} was validated: {pairs:?}"));
    pairs[validated + 1..].to_vec()
}

/// `expected` (kind, outcome) pairs, owned, to compare with [`saga_events`].
pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(kind, outcome)| ((*kind).to_owned(), (*outcome).to_owned()))
        .collect()
}
