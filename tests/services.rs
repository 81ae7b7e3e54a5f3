//! The inventory, payment and shipping services, black-box through the shipped spin.toml on
//! their public `/internal/<svc>` routes (and the private one, by service chaining): the
//! fulfilment saga's contract as `fulfilment::interpret` reads the answers, idempotency, stock
//! that never goes negative, the internal and admin guards, and fault injection.

use fulfilment::{OrderFacts, StepAnswer, interpret, request_for};
use http::Method;
use orderly_tests::{Reply, TestApp};
use orders_core::{NewOrder, Order, Timestamp};
use resilience::HttpAnswer;
use saga::{Action, Compensation, Service, Step};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One product with 5 units, so a test can run out of it.
const CATALOG: &str = r#"{"products": [
    {"name": "Widget", "min_quantity": 1, "max_quantity": 10, "price_cents": 100, "initial_stock": 5}
]}"#;

/// The real app with `variables` set (and the small catalogue).
async fn start(variables: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("catalog", CATALOG)];
    all.extend_from_slice(variables);
    TestApp::start_real_with(&all).await
}

/// POSTs JSON `body` to `path` with extra `headers`.
async fn post_with(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    app.send(Method::POST, path, &all, body).await
}

/// Asserts `reply` is a problem with `status` and `kind`, and returns its body.
fn problem(reply: &Reply, status: u16, kind: &str) -> serde_json::Value {
    reply.problem(status, kind)
}

/// What the saga makes of `reply`.
fn saga_reads(reply: &Reply) -> StepAnswer {
    interpret(
        Ok(HttpAnswer {
            status: reply.status,
            retry_after: reply.header("retry-after").map(str::to_owned),
            body: reply.body.to_vec(),
        }),
        0,
    )
}

fn order(body: &str) -> Order {
    NewOrder::parse(body.as_bytes())
        .expect("an order")
        .accept(Timestamp(1), [0; 10])
}

/// Sends the request the saga makes for `action`, to the service's public route, as the
/// fulfilment worker does.
async fn saga_call(app: &TestApp, action: Action, facts: OrderFacts<'_>) -> Reply {
    let request = request_for(action, facts).expect("a request");
    let service = match request.service {
        Service::Inventory => "inventory",
        Service::Payment => "payment",
        Service::Shipping => "shipping",
    };
    let body = String::from_utf8(request.body).expect("UTF-8");
    app.post(&format!("/internal/{service}{}", request.path), &body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_gets_done_refused_and_compensated_as_it_expects() {
    let app = start(&[]).await;
    let big = order(
        r#"{"order_id": "big", "customer": "Ada", "items": [{"product": "Widget", "quantity": 6}]}"#,
    );
    let facts = OrderFacts {
        order: &big,
        amount_cents: 600,
    };
    let refused = saga_call(&app, Action::Call(Step::Reserve), facts).await;
    problem(&refused, 409, "/problems/out-of-stock");
    assert_eq!(
        saga_reads(&refused),
        StepAnswer::Refused("Widget: 6 requested, 5 available".into())
    );

    let good = order(
        r#"{"order_id": "good", "customer": "Ada", "items": [{"product": "Widget", "quantity": 2}]}"#,
    );
    let facts = OrderFacts {
        order: &good,
        amount_cents: 200,
    };
    for step in [
        Step::Reserve,
        Step::Authorize,
        Step::Ship,
        Step::Capture,
        Step::Commit,
    ] {
        for attempt in 0..2 {
            let reply = saga_call(&app, Action::Call(step), facts).await;
            assert_eq!(
                saga_reads(&reply),
                StepAnswer::Done,
                "{step:?} attempt {attempt}: {}",
                reply.text()
            );
        }
    }
    let payment = app.get("/internal/payment/payments/good").await.json();
    assert_eq!(
        (payment["state"].as_str(), payment["charged_cents"].as_u64()),
        (Some("captured"), Some(200))
    );
    let shipment = app.get("/internal/shipping/shipments/good").await.json();
    assert_eq!(shipment["recipient"], "Ada");
    assert_eq!(shipment["lines"], json!([{"sku": "Widget", "quantity": 2}]));

    // Compensating a shipped order: the parcel has its label only, so it can be cancelled;
    // the charge is refunded; committed stock is not released (a refusal).
    let cancelled =
        order(r#"{"order_id": "undo", "items": [{"product": "Widget", "quantity": 1}]}"#);
    let facts = OrderFacts {
        order: &cancelled,
        amount_cents: 100,
    };
    for step in [Step::Reserve, Step::Authorize, Step::Ship, Step::Capture] {
        let reply = saga_call(&app, Action::Call(step), facts).await;
        assert_eq!(saga_reads(&reply), StepAnswer::Done, "{}", reply.text());
    }
    for compensation in Compensation::ALL {
        for _ in 0..2 {
            let reply = saga_call(&app, Action::Compensate(compensation), facts).await;
            assert_eq!(saga_reads(&reply), StepAnswer::Done, "{}", reply.text());
        }
    }
    let payment = app.get("/internal/payment/payments/undo").await.json();
    assert_eq!(
        (payment["state"].as_str(), payment["charged_cents"].as_u64()),
        (Some("refunded"), Some(0))
    );
    let stock = app.get("/internal/inventory/stock/Widget").await.json();
    assert_eq!(
        (
            stock["available"].as_u64(),
            stock["reserved"].as_u64(),
            stock["shipped"].as_u64()
        ),
        (Some(3), Some(0), Some(2))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_idempotent_and_stock_never_goes_negative() {
    let app = start(&[]).await;
    let reserve = |id: &str, quantity: u32| {
        json!({"order_id": id, "lines": [{"sku": "widget", "quantity": quantity}]}).to_string()
    };
    let level = async || app.get("/internal/inventory/stock/Widget").await.json();
    assert_eq!(
        level().await,
        json!({"sku": "Widget", "available": 5, "reserved": 0, "shipped": 0, "received": 5, "initial": 5})
    );
    for _ in 0..3 {
        let held = app
            .post("/internal/inventory/reservations", &reserve("o-1", 3))
            .await;
        assert_eq!(held.status, 200, "{}", held.text());
        assert_eq!(
            held.json(),
            json!({"order_id": "o-1", "state": "reserved", "lines": [{"sku": "Widget", "quantity": 3}]})
        );
    }
    assert_eq!(level().await["available"], 2);
    let short = app
        .post("/internal/inventory/reservations", &reserve("o-2", 3))
        .await;
    let body = problem(&short, 409, "/problems/out-of-stock");
    assert_eq!(
        (
            body["sku"].as_str(),
            body["requested"].as_u64(),
            body["available"].as_u64()
        ),
        (Some("Widget"), Some(3), Some(2))
    );
    let other_lines = app
        .post("/internal/inventory/reservations", &reserve("o-1", 1))
        .await;
    problem(&other_lines, 409, "/problems/reservation-conflict");
    for _ in 0..2 {
        let committed = app
            .post("/internal/inventory/reservations/o-1/commit", "{}")
            .await;
        assert_eq!(committed.json()["state"], "committed");
    }
    problem(
        &app.post("/internal/inventory/reservations/o-1/release", "{}")
            .await,
        409,
        "/problems/reservation-committed",
    );
    problem(
        &app.post("/internal/inventory/reservations/nobody/commit", "")
            .await,
        404,
        "/problems/unknown-reservation",
    );
    // A release before the reserve wins: the late reserve is refused.
    let early = app
        .post("/internal/inventory/reservations/late/release", "")
        .await;
    assert_eq!(early.json()["state"], "released");
    problem(
        &app.post("/internal/inventory/reservations", &reserve("late", 1))
            .await,
        409,
        "/problems/reservation-released",
    );
    let after = level().await;
    assert_eq!(
        (
            after["available"].as_u64(),
            after["reserved"].as_u64(),
            after["shipped"].as_u64()
        ),
        (Some(2), Some(0), Some(3))
    );

    let restocked = app
        .post(
            "/internal/inventory/restock",
            r#"{"sku": "Widget", "units": 4}"#,
        )
        .await;
    assert_eq!(
        (
            restocked.json()["available"].as_u64(),
            restocked.json()["received"].as_u64()
        ),
        (Some(6), Some(9))
    );
    let all = app.get("/internal/inventory/stock").await.json();
    assert_eq!(all["stock"][0]["available"], 6);
    assert_eq!(
        app.get("/internal/inventory/reservations/o-1").await.json()["state"],
        "committed"
    );

    problem(
        &app.post("/internal/inventory/reservations", "{").await,
        400,
        "/problems/malformed-request",
    );
    let bad = app
        .post(
            "/internal/inventory/reservations",
            r#"{"order_id": "o-9", "lines": [{"sku": "Widget", "quantity": 0}]}"#,
        )
        .await;
    assert_eq!(
        problem(&bad, 400, "/problems/invalid-field")["field"],
        "lines[0].quantity"
    );
    let unknown = app
        .post(
            "/internal/inventory/reservations",
            r#"{"order_id": "o-9", "lines": [{"sku": "Gold", "quantity": 1}]}"#,
        )
        .await;
    problem(&unknown, 422, "/problems/unknown-sku");
    assert_eq!(app.get("/internal/inventory/stock/Gold").await.status, 404);
    assert_eq!(app.get("/internal/inventory/nothing").await.status, 404);
    let wrong = app.get("/internal/inventory/reservations").await;
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_authorize_decline_capture_and_compensate() {
    let app = start(&[("payment_limit_cents", "50000")]).await;
    let authorize = |id: &str, cents: u64| {
        json!({"order_id": id, "amount_cents": cents, "customer": "Ada"}).to_string()
    };
    let first = app
        .post("/internal/payment/payments", &authorize("p-1", 2_400))
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = app
        .post("/internal/payment/payments", &authorize("p-1", 2_400))
        .await;
    assert_eq!(again.json(), first.json());
    assert_eq!(
        (
            first.json()["state"].as_str(),
            first.json()["card_last4"].as_str()
        ),
        (Some("authorized"), Some("4242"))
    );
    problem(
        &app.post("/internal/payment/payments", &authorize("p-1", 2_500))
            .await,
        409,
        "/problems/payment-conflict",
    );
    for _ in 0..2 {
        let captured = app
            .post("/internal/payment/payments/p-1/capture", "{}")
            .await;
        assert_eq!(
            (
                captured.json()["state"].as_str(),
                captured.json()["charged_cents"].as_u64()
            ),
            (Some("captured"), Some(2_400))
        );
    }
    for _ in 0..2 {
        let refunded = app
            .post("/internal/payment/payments/p-1/compensate", "{}")
            .await;
        assert_eq!(
            (
                refunded.json()["state"].as_str(),
                refunded.json()["refunded_cents"].as_u64(),
                refunded.json()["charged_cents"].as_u64()
            ),
            (Some("refunded"), Some(2_400), Some(0))
        );
    }

    app.post("/internal/payment/payments", &authorize("p-2", 100))
        .await;
    let voided = app
        .post("/internal/payment/payments/p-2/compensate", "")
        .await;
    assert_eq!(voided.json()["state"], "voided");
    problem(
        &app.post("/internal/payment/payments/p-2/capture", "").await,
        409,
        "/problems/illegal-transition",
    );
    problem(
        &app.post("/internal/payment/payments", &authorize("p-2", 100))
            .await,
        409,
        "/problems/payment-closed",
    );

    let over = app
        .post("/internal/payment/payments", &authorize("p-3", 50_001))
        .await;
    assert_eq!(
        problem(&over, 402, "/problems/payment-declined")["reason"],
        "amount_over_limit"
    );
    let card = app
        .post(
            "/internal/payment/payments",
            r#"{"order_id": "p-4", "amount_cents": 100, "customer": null, "card": "4000 0000 0000 0002"}"#,
        )
        .await;
    assert_eq!(
        problem(&card, 402, "/problems/payment-declined")["reason"],
        "card_declined"
    );
    assert_eq!(
        app.get("/internal/payment/payments/p-4").await.json()["state"],
        "declined"
    );
    let typo = app
        .post(
            "/internal/payment/payments",
            r#"{"order_id": "p-5", "amount_cents": 100, "card": "4242424242424241"}"#,
        )
        .await;
    assert_eq!(
        problem(&typo, 400, "/problems/invalid-field")["field"],
        "card"
    );
    problem(
        &app.post("/internal/payment/payments", r#"{"order_id": "p-6"}"#)
            .await,
        400,
        "/problems/malformed-request",
    );
    problem(
        &app.post("/internal/payment/payments/ghost/capture", "{}")
            .await,
        404,
        "/problems/unknown-payment",
    );
    assert_eq!(
        app.get("/internal/payment/payments/ghost").await.status,
        404
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipments_are_created_cancelled_and_tracked() {
    let app = start(&[("tracking_seed", "42")]).await;
    let ship = |id: &str| {
        json!({"order_id": id, "lines": [{"sku": "Widget", "quantity": 2}], "recipient": "Ada", "address": "1 Main St"})
            .to_string()
    };
    let created = app.post("/internal/shipping/shipments", &ship("s-1")).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let shipment = created.json();
    let tracking = shipment["tracking_number"].as_str().unwrap().to_owned();
    assert!(
        tracking.starts_with("OY") && tracking.len() == 21,
        "{tracking}"
    );
    assert!(
        shipment["label"]
            .as_str()
            .unwrap()
            .contains("Ship to: Ada, 1 Main St")
    );
    let again = app.post("/internal/shipping/shipments", &ship("s-1")).await;
    assert_eq!(again.json(), shipment);
    assert_eq!(
        app.get("/internal/shipping/shipments/s-1").await.json(),
        shipment
    );
    for _ in 0..2 {
        let cancelled = app
            .post("/internal/shipping/shipments/s-1/cancel", "{}")
            .await;
        assert_eq!(cancelled.json()["shipment"]["status"], "cancelled");
    }
    problem(
        &app.post("/internal/shipping/shipments", &ship("s-1")).await,
        409,
        "/problems/shipment-cancelled",
    );

    app.post("/internal/shipping/shipments", &ship("s-2")).await;
    let moving = app
        .post(
            "/internal/shipping/shipments/s-2/status",
            r#"{"status": "in_transit"}"#,
        )
        .await;
    assert_eq!(moving.json()["status"], "in_transit");
    problem(
        &app.post("/internal/shipping/shipments/s-2/cancel", "{}")
            .await,
        409,
        "/problems/too-late-to-cancel",
    );
    problem(
        &app.post(
            "/internal/shipping/shipments/s-1/status",
            r#"{"status": "delivered"}"#,
        )
        .await,
        409,
        "/problems/illegal-transition",
    );

    // Cancelled before it was ever created: recorded, so the late creation is refused.
    let early = app
        .post("/internal/shipping/shipments/s-3/cancel", "")
        .await;
    assert_eq!(
        early.json(),
        json!({"order_id": "s-3", "status": "cancelled", "shipment": null})
    );
    assert_eq!(
        app.get("/internal/shipping/shipments/s-3").await.status,
        404
    );
    problem(
        &app.post("/internal/shipping/shipments", &ship("s-3")).await,
        409,
        "/problems/shipment-cancelled",
    );
    let bad = app
        .post(
            "/internal/shipping/shipments",
            r#"{"order_id": "s-4", "lines": [], "recipient": null}"#,
        )
        .await;
    assert_eq!(
        problem(&bad, 400, "/problems/invalid-field")["field"],
        "lines"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_need_the_token_and_admin_routes_the_bearer() {
    let app = start(&[("internal_token", "inner-secret"), ("admin_token", "adm")]).await;
    let body = r#"{"order_id": "t-1", "lines": [{"sku": "Widget", "quantity": 1}]}"#;
    for path in [
        "/internal/inventory/reservations",
        "/internal/payment/payments/t-1/capture",
        "/internal/shipping/shipments/t-1/cancel",
    ] {
        problem(&app.post(path, body).await, 401, "/problems/internal-token");
        problem(
            &post_with(&app, path, &[("x-orderly-internal-token", "inner")], body).await,
            401,
            "/problems/internal-token",
        );
    }
    problem(
        &app.get("/internal/inventory/health").await,
        401,
        "/problems/internal-token",
    );
    let token = ("x-orderly-internal-token", "inner-secret");
    let reserved = post_with(&app, "/internal/inventory/reservations", &[token], body).await;
    assert_eq!(reserved.status, 200, "{}", reserved.text());

    // Admin controls need the bearer token as well.
    let configure = r#"{"mode": "down"}"#;
    let no_bearer = post_with(&app, "/internal/payment/configure", &[token], configure).await;
    problem(&no_bearer, 401, "/problems/admin-token");
    assert_eq!(no_bearer.header("www-authenticate"), Some("Bearer"));
    problem(
        &post_with(
            &app,
            "/internal/inventory/restock",
            &[token],
            r#"{"sku": "Widget", "units": 1}"#,
        )
        .await,
        401,
        "/problems/admin-token",
    );
    let bearer = ("authorization", "Bearer adm");
    let configured = post_with(
        &app,
        "/internal/payment/configure",
        &[token, bearer],
        configure,
    )
    .await;
    assert_eq!(configured.json()["mode"], "down");
    let restocked = post_with(
        &app,
        "/internal/inventory/restock",
        &[token, bearer],
        r#"{"sku": "Widget", "units": 1}"#,
    )
    .await;
    assert_eq!(restocked.json()["received"], 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_route_serves_chained_calls_without_the_token() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let manifest = format!(
        "{}\n{}",
        orderly_tests::real_manifest(),
        r#"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = "{wasm}/probe.wasm"
allowed_outbound_hosts = ["http://inventory.spin.internal"]
"#
    );
    let unused = format!("redis://{}", orderly_tests::free_address());
    let app = TestApp::start_in(dir, &manifest, |options| {
        for (name, value) in [
            ("internal_token", "inner-secret"),
            ("catalog", CATALOG),
            ("redis_url", unused.as_str()),
        ] {
            options.variables.insert(name.into(), value.into());
        }
    })
    .await
    .expect("the app starts");
    let fetched = app
        .get("/probe/fetch?url=http://inventory.spin.internal/stock/Widget")
        .await
        .json();
    assert_eq!(fetched["status"], 200, "{fetched}");
    let level: serde_json::Value = serde_json::from_str(fetched["body"].as_str().unwrap()).unwrap();
    assert_eq!(level["available"], 5);
    // The same path on the public route needs the token.
    problem(
        &app.get("/internal/inventory/stock/Widget").await,
        401,
        "/problems/internal-token",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_faults_fail_the_work_routes_only() {
    let app = start(&[]).await;
    let body = r#"{"order_id": "f-1", "amount_cents": 100, "customer": "Ada"}"#;
    let configured = app
        .post("/internal/payment/configure", r#"{"mode": "error"}"#)
        .await;
    assert_eq!(configured.json()["mode"], "error");
    let failed = app.post("/internal/payment/payments", body).await;
    problem(&failed, 500, "/problems/injected-fault");
    assert!(
        saga_reads(&failed).is_failure(),
        "{:?}",
        saga_reads(&failed)
    );
    assert_eq!(app.get("/internal/payment/health").await.status, 200);
    assert_eq!(
        app.get("/internal/payment/payments/f-1").await.status,
        404,
        "reads are not faulted; nothing was stored"
    );
    app.post("/internal/payment/set_failure_mode", r#"{"mode": "down"}"#)
        .await;
    problem(
        &app.post("/internal/payment/payments", body).await,
        503,
        "/problems/simulated-outage",
    );
    // Other services keep their own settings.
    let ship =
        r#"{"order_id": "f-1", "lines": [{"sku": "Widget", "quantity": 1}], "recipient": "Ada"}"#;
    assert_eq!(
        app.post("/internal/shipping/shipments", ship).await.status,
        200
    );

    // The Campus seed's form: a delay in seconds and a failure rate.
    let campus = app
        .post(
            "/internal/inventory/configure",
            r#"{"delay": 0.3, "failure_rate": 0}"#,
        )
        .await
        .json();
    assert_eq!(
        (campus["mode"].as_str(), campus["delay_ms"].as_u64()),
        (Some("slow"), Some(300))
    );
    let started = Instant::now();
    let slow = app
        .post(
            "/internal/inventory/reservations",
            r#"{"order_id": "f-1", "lines": [{"sku": "Widget", "quantity": 1}]}"#,
        )
        .await;
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert!(started.elapsed() >= Duration::from_millis(300));
    app.post(
        "/internal/shipping/configure",
        r#"{"delay": 0, "failure_rate": 1.0}"#,
    )
    .await;
    problem(
        &app.post("/internal/shipping/shipments/f-1/cancel", "{}")
            .await,
        500,
        "/problems/injected-fault",
    );
    assert_eq!(
        app.get("/internal/shipping/shipments/f-1").await.json()["status"],
        "label_created",
        "the failed cancel changed nothing"
    );
    app.stop().await;
}
