//! Synchronous orders (`POST /api/orders?mode=sync`, and the Campus seed's `POST /order`),
//! black-box through the shipped spin.toml with the app's own services: validated, reserved
//! and paid inside the request (201), or the cascaded error with what was done undone, and the
//! fulfilment worker carrying on afterwards.

use http::Method;
use orderly_tests::{HttpClient, Reply, TestApp, services_at};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Widgets to run out of, a dear product to decline, the Campus seed's burgers, and plenty of
/// something cheap.
const CATALOG: &str = r#"{"products": [
    {"name": "Plenty", "min_quantity": 1, "max_quantity": 10, "price_cents": 100, "initial_stock": 1000},
    {"name": "Widget", "min_quantity": 1, "max_quantity": 10, "price_cents": 100, "initial_stock": 5},
    {"name": "Pricey", "min_quantity": 1, "max_quantity": 10, "price_cents": 5000, "initial_stock": 10},
    {"name": "Burger", "min_quantity": 1, "max_quantity": 100, "price_cents": 899, "initial_stock": 3}
]}"#;

/// The real app, its services on itself, authorizations over 10.00 declined, and `variables`.
async fn start(variables: &[(&str, &str)]) -> TestApp {
    let variables: Vec<(String, String)> = [("catalog", CATALOG), ("payment_limit_cents", "1000")]
        .iter()
        .chain(variables)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        let origin = options.variables["app_url"].clone();
        services_at(options, &origin);
        options.variables.extend(variables);
    })
    .await
}

/// A synchronous order of `quantity` × `product` through the gateway, under key `key`.
async fn order(client: &HttpClient, key: &str, product: &str, quantity: u32) -> Reply {
    let body = json!({"order_id": key, "items": [{"product": product, "quantity": quantity}]});
    client
        .send(
            Method::POST,
            "/api/orders?mode=sync",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            &body.to_string(),
        )
        .await
}

/// `product`'s (available, reserved) units.
async fn stock(client: &HttpClient, product: &str) -> (u64, u64) {
    let level = client
        .get(&format!("/internal/inventory/stock/{product}"))
        .await
        .json();
    let units = |name: &str| level[name].as_u64().unwrap_or_else(|| panic!("{level}"));
    (units("available"), units("reserved"))
}

/// Order `id` once `done` accepts it (or as it is after 20 s).
async fn order_when(client: &HttpClient, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/orders/{id}");
    client
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get(&path).await.json(),
            done,
        )
        .await
}

async fn configure_inventory(client: &HttpClient, settings: Value) {
    let reply = client
        .post("/internal/inventory/configure", &settings.to_string())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_order_is_paid_in_the_request_and_confirmed_afterwards() {
    let app = start(&[]).await;
    let paid = order(&app, "sync-1", "Widget", 2).await;
    assert_eq!(paid.status, 201, "{}", paid.text());
    assert_eq!(paid.header("location"), Some("/orders/sync-1"));
    let body = paid.json();
    assert_eq!(body["order"]["status"], "paid", "{body}");
    // Reserved, or already committed by the worker.
    assert_eq!(stock(&app, "Widget").await.0, 3);
    // The fulfilment worker ships, captures and commits it.
    let confirmed = order_when(&app, "sync-1", |order| order["status"] == "confirmed").await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(stock(&app, "Widget").await, (3, 0));
    // The same request again is answered from the order, and changes nothing.
    let replayed = order(&app, "sync-1", "Widget", 2).await;
    assert_eq!(replayed.status, 201, "{}", replayed.text());
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.json()["order"]["id"], "sync-1");
    assert_eq!(stock(&app, "Widget").await, (3, 0));
    // Out of stock: 409, and nothing is reserved.
    let refused = order(&app, "sync-2", "Widget", 4).await;
    let problem = refused.problem(409, "/problems/out-of-stock");
    assert_eq!(problem["status"], "cancelled", "{problem}");
    assert_eq!(stock(&app, "Widget").await, (3, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_takes_a_sync_order_s_jobs_while_the_workers_drain_async_orders() {
    let app = start(&[]).await;
    // Async orders keep the validation and fulfilment workers draining while each sync order
    // is accepted, validated and reserved: its jobs are held by the request from the moment
    // they exist, so it is answered 201, never 202 because a worker took its job.
    for round in 0..8 {
        let mut busy = tokio::task::JoinSet::new();
        for n in 0..4 {
            let client = app.client.clone();
            busy.spawn(async move {
                let key = format!("async-{round}-{n}");
                let body =
                    json!({"order_id": key, "items": [{"product": "Plenty", "quantity": 1}]});
                let headers = [
                    ("content-type", "application/json"),
                    ("idempotency-key", key.as_str()),
                ];
                let reply = client
                    .send(Method::POST, "/api/orders", &headers, &body.to_string())
                    .await;
                assert_eq!(reply.status, 202, "{}", reply.text());
            });
        }
        let key = format!("sync-{round}");
        let paid = order(&app, &key, "Plenty", 1).await;
        assert_eq!(paid.status, 201, "{key}: {}", paid.text());
        // Paid, or already carried further by the fulfilment worker it handed the job to.
        let status = paid.json()["order"]["status"].clone();
        assert!(
            ["paid", "shipped", "confirmed"].contains(&status.as_str().unwrap_or_default()),
            "{key}: {status}"
        );
        while let Some(done) = busy.join_next().await {
            done.unwrap();
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_releases_the_reservation_before_answering() {
    let app = start(&[]).await;
    let declined = order(&app, "dear-1", "Pricey", 1).await;
    let problem = declined.problem(402, "/problems/payment-declined");
    assert_eq!(
        (
            problem["status"].as_str(),
            problem["order"]["reason"].as_str()
        ),
        (Some("cancelled"), Some("authorize_refused")),
        "{problem}"
    );
    assert_eq!(stock(&app, "Pricey").await, (10, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_inventory_is_503_and_leaks_nothing() {
    let app = start(&[]).await;
    configure_inventory(&app, json!({"mode": "error"})).await;
    let failed = order(&app, "fail-1", "Widget", 1).await;
    failed.problem(503, "/problems/dependency-unavailable");
    assert_eq!(stock(&app, "Widget").await, (5, 0));
    // Its release waits for the inventory; then the order is cancelled.
    configure_inventory(&app, json!({"mode": "normal"})).await;
    let cancelled = order_when(&app, "fail-1", |order| order["status"] == "cancelled").await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["reason"], "reserve_unavailable", "{cancelled}");
    assert_eq!(stock(&app, "Widget").await, (5, 0));
    // The same request again is answered as the first was: 503, not a timeout.
    let replayed = order(&app, "fail-1", "Widget", 1).await;
    replayed.problem(503, "/problems/dependency-unavailable");
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_inventory_is_504_and_the_late_reservation_is_released() {
    let app = start(&[("sync_deadline_ms", "600")]).await;
    configure_inventory(&app, json!({"mode": "slow", "delay_ms": 2000})).await;
    let started = Instant::now();
    let slow = order(&app, "slow-1", "Widget", 2).await;
    let waited = started.elapsed();
    slow.problem(504, "/problems/dependency-timeout");
    assert!(
        waited < Duration::from_millis(1_800),
        "answered after {waited:?}"
    );
    // The reservation lands after the caller gave up; the fulfilment worker releases it.
    let cancelled = order_when(&app, "slow-1", |order| order["status"] == "cancelled").await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let settled = app
        .wait_for(
            Duration::from_secs(10),
            async |c| stock(c, "Widget").await,
            |level| *level == (5, 0),
        )
        .await;
    assert_eq!(settled, (5, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campus_seed_s_order_is_a_sync_order() {
    let app = start(&[]).await;
    let placed = app.post("/order", r#"{"item": "burger", "qty": 1}"#).await;
    assert_eq!(placed.status, 201, "{}", placed.text());
    let body = placed.json();
    assert_eq!(
        (&body["item"], &body["qty"], &body["status"]),
        (&json!("burger"), &json!(1), &json!("paid")),
        "{body}"
    );
    assert!(body["order_id"].is_string(), "{body}");
    assert_eq!(stock(&app, "Burger").await.0, 2);
    let sold_out = app.post("/order", r#"{"item": "burger", "qty": 3}"#).await;
    assert_eq!(sold_out.status, 409, "{}", sold_out.text());
    let body = sold_out.json();
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(stock(&app, "Burger").await.0, 2);
    app.stop().await;
}
