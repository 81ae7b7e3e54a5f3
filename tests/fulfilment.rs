//! Fulfilment, black-box through the shipped spin.toml: the real fulfilment worker (.wasm)
//! runs validated orders' sagas over fake inventory, payment and shipping services (a native
//! server standing in at the `*_url` variables), and customers cancel orders.

use orderly_tests::TestApp;
use orderly_tests::native_server::{Recorded, RecordingServer};
use orderly_tests::saga::{
    CONFIRMED, TOKEN, cancel_pending, create, fake_services, order_when, pairs, saga_events,
    wire_services,
};
use serde_json::Value;
use std::sync::Arc;

/// The shipped app with its services at `server`, the internal token set, and quick retries.
async fn start_with(server: &RecordingServer) -> TestApp {
    TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        wire_services(options, server)
    })
    .await
}

/// The paths `server` was asked for about order `id`, in order.
fn paths_for(requests: &[Recorded], id: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|request| {
            request.path.contains(id) || String::from_utf8_lossy(&request.body).contains(id)
        })
        .map(|request| request.path.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validated_order_is_fulfilled_through_the_services_with_the_token() {
    let server = RecordingServer::start(fake_services).await;
    let app = start_with(&server).await;
    create(
        &app,
        "ful-1",
        r#"{"order_id": "ful-1", "customer": "Ada", "product": "Medicine A", "quantity": 2}"#,
    )
    .await;
    let order = order_when(&app, "ful-1", "confirmed").await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["fulfilment"]["saga"]["phase"], "confirmed", "{order}");
    assert_eq!(saga_events(&app, "ful-1").await, pairs(&CONFIRMED));
    let requests = server.requests();
    assert_eq!(
        paths_for(&requests, "ful-1"),
        [
            "/internal/inventory/reservations",
            "/internal/payment/payments",
            "/internal/shipping/shipments",
            "/internal/payment/payments/ful-1/capture",
            "/internal/inventory/reservations/ful-1/commit",
        ]
    );
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("x-orderly-internal-token")
                .and_then(|value| value.to_str().ok()),
            Some(TOKEN),
            "{}",
            request.path
        );
    }
    let authorize: Value = serde_json::from_slice(&requests[1].body).unwrap();
    let price = catalog::Catalog::standard()
        .find("Medicine A")
        .unwrap()
        .price_cents;
    assert_eq!(
        authorize,
        serde_json::json!({"order_id": "ful-1", "amount_cents": 2 * price, "customer": "Ada"})
    );
    // Too late to cancel.
    let refused = app.post("/orders/ful-1/cancel", "").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    let problem = refused.json();
    assert_eq!(problem["type"], "/problems/cannot-cancel", "{problem}");
    assert_eq!(problem["status"], "confirmed", "{problem}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_steps_cancel_the_order_and_undo_what_was_done() {
    let server = RecordingServer::start(fake_services).await;
    let app = start_with(&server).await;
    create(
        &app,
        "ful-stock",
        r#"{"order_id": "ful-stock", "product": "Medicine B", "quantity": 1}"#,
    )
    .await;
    create(
        &app,
        "ful-ship",
        r#"{"order_id": "ful-ship", "customer": "Far Away", "product": "Medicine A", "quantity": 1}"#,
    )
    .await;
    let stock = order_when(&app, "ful-stock", "cancelled").await;
    assert_eq!(
        (stock["status"].as_str(), stock["reason"].as_str()),
        (Some("cancelled"), Some("reserve_refused")),
        "{stock}"
    );
    assert_eq!(stock["detail"], "Medicine B: 0 left", "{stock}");
    assert_eq!(
        saga_events(&app, "ful-stock").await,
        pairs(&[
            ("step_refused", "reserve"),
            ("cancelled", "reserve_refused"),
        ])
    );
    let ship = order_when(&app, "ful-ship", "cancelled").await;
    assert_eq!(ship["reason"], "ship_refused", "{ship}");
    assert_eq!(ship["fulfilment"]["saga"]["phase"], "cancelled", "{ship}");
    assert_eq!(
        saga_events(&app, "ful-ship").await,
        pairs(&[
            ("step_done", "reserve"),
            ("step_done", "authorize"),
            ("step_refused", "ship"),
            ("compensated", "cancel_shipment"),
            ("compensated", "refund_payment"),
            ("cancelled", "ship_refused"),
        ])
    );
    let requests = server.requests();
    assert_eq!(
        paths_for(&requests, "ful-stock"),
        [
            "/internal/inventory/reservations",
            "/internal/inventory/reservations/ful-stock/release",
        ]
    );
    assert_eq!(
        paths_for(&requests, "ful-ship"),
        [
            "/internal/inventory/reservations",
            "/internal/payment/payments",
            "/internal/shipping/shipments",
            "/internal/shipping/shipments/ful-ship/cancel",
            "/internal/payment/payments/ful-ship/compensate",
            "/internal/inventory/reservations/ful-ship/release",
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_answers_by_where_the_order_is() {
    // The services are unreachable (see `TestApp::start_real_in`): validated orders wait.
    let app = TestApp::start_real().await;
    let bad = app.post("/orders/not*an*id/cancel", "").await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["type"], "/problems/invalid-order-id");
    assert_eq!(app.post("/orders/nobody/cancel", "").await.status, 404);
    assert_eq!(app.get("/orders/nobody/cancel").await.status, 405);
    // A validated order: its saga undoes what it may have done (the release is retried).
    create(
        &app,
        "cancel-validated",
        r#"{"order_id": "cancel-validated", "product": "Medicine A", "quantity": 1}"#,
    )
    .await;
    order_when(&app, "cancel-validated", "validated").await;
    let accepted = app.post("/orders/cancel-validated/cancel", "").await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let body = accepted.json();
    assert_eq!(body["id"], "cancel-validated", "{body}");
    assert!(body["fulfilment"]["cancel_requested"].is_string(), "{body}");
    let undoing = order_when(&app, "cancel-validated", "cancelling").await;
    assert_eq!(undoing["status"], "cancelling", "{undoing}");
    assert_eq!(
        undoing["fulfilment"]["saga"]["next"], "release_stock",
        "{undoing}"
    );
    assert_eq!(
        app.post("/orders/cancel-validated/cancel", "").await.status,
        202
    );
    // A pending order is cancelled at once.
    let body = cancel_pending(&app, "cancel-pending").await.json();
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("cancelled"), Some("cancelled_by_customer")),
        "{body}"
    );
    assert!(body["validation"].is_null(), "no validation job: {body}");
    // A final order cannot be cancelled.
    app.post("/external/configure", r#"{"mode": "normal"}"#)
        .await;
    create(
        &app,
        "cancel-rejected",
        r#"{"order_id": "cancel-rejected", "product": "Nothing Like It", "quantity": 1}"#,
    )
    .await;
    let rejected = order_when(&app, "cancel-rejected", "rejected").await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    let refused = app.post("/orders/cancel-rejected/cancel", "").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["status"], "rejected");
    // A validation call still out when the order was cancelled may land later (recorded as an
    // attempt), but it decides nothing.
    let kinds = app.event_kinds("cancel-pending").await;
    assert_eq!(
        kinds.iter().filter(|kind| *kind == "cancelled").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|kind| kind == "validated" || kind == "rejected"),
        "{kinds:?}"
    );
    app.stop().await;
}
