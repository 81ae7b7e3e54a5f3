//! The fulfilment saga end to end, black-box through the shipped spin.toml with the real
//! inventory, payment and shipping services: a happy path, an order out of stock, and a
//! seeded mix of orders under random faults in every service at once, after which the saga's
//! invariants (`saga_audit`) must hold and every order must be final.

use futures::StreamExt as _;
use orderly_tests::saga::{CONFIRMED, create, order_until, pairs, saga_events};
use orderly_tests::{HttpClient, TestApp, services_at};
use saga_audit::audit::Audit;
use saga_audit::mix::{self, MixSettings};
use saga_audit::state::{self, CancelRequest, Reader, is_final};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Plenty of two products, little of two (they run out), and one dear enough to go over the
/// payment limit.
const CATALOG: &str = r#"{"products": [
    {"name": "Widget", "min_quantity": 1, "max_quantity": 10, "price_cents": 100, "initial_stock": 1000},
    {"name": "Gadget", "min_quantity": 1, "max_quantity": 10, "price_cents": 250, "initial_stock": 1000},
    {"name": "Rare", "min_quantity": 1, "max_quantity": 100, "price_cents": 500, "initial_stock": 150},
    {"name": "Limited", "min_quantity": 1, "max_quantity": 40, "price_cents": 300, "initial_stock": 100},
    {"name": "Luxury", "min_quantity": 1, "max_quantity": 50, "price_cents": 100000, "initial_stock": 1000}
]}"#;

/// The payment limit the app is given.
const PAYMENT_LIMIT_CENTS: u64 = 1_000_000;

/// Every service's fault controls.
const FAULT_ROUTES: [&str; 4] = [
    "/internal/inventory/configure",
    "/internal/payment/configure",
    "/internal/shipping/configure",
    "/external/configure",
];

/// The real app with the small catalogue and quick retries, its sagas run over its own
/// services.
async fn start() -> TestApp {
    let variables = [
        ("catalog", CATALOG.to_owned()),
        ("payment_limit_cents", PAYMENT_LIMIT_CENTS.to_string()),
        ("retry_base_ms", "20".to_owned()),
        ("retry_max_delay_ms", "200".to_owned()),
        ("budget_wait_ms", "100".to_owned()),
    ];
    TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), move |options| {
        let origin = options.variables["app_url"].clone();
        services_at(options, &origin);
        for (name, value) in variables {
            options.variables.insert(name.to_owned(), value);
        }
    })
    .await
}

/// Reads the app for `saga_audit`.
struct Client<'a>(&'a HttpClient);

impl Reader for Client<'_> {
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let reply = self.0.get(path).await;
        Ok((reply.status, reply.body.to_vec()))
    }
}

/// Order `id` once it is final (or as it is after `limit`).
async fn final_order(app: &HttpClient, id: &str, limit: Duration) -> Value {
    order_until(app, id, limit, |order| {
        is_final(order["status"].as_str().unwrap_or_default())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_fulfilled_through_the_real_services_and_one_out_of_stock_is_cancelled() {
    let app = start().await;
    create(
        &app,
        "happy",
        r#"{"order_id": "happy", "customer": "Ada", "items": [{"product": "Widget", "quantity": 3}]}"#,
    )
    .await;
    let order = final_order(&app, "happy", Duration::from_secs(30)).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(saga_events(&app, "happy").await, pairs(&CONFIRMED));
    let stock = app.get("/internal/inventory/stock/Widget").await.json();
    assert_eq!(
        (
            &stock["available"],
            &stock["reserved"],
            &stock["shipped"],
            &stock["initial"]
        ),
        (&json!(997), &json!(0), &json!(3), &json!(1000)),
        "{stock}"
    );
    let payment = app.get("/internal/payment/payments/happy").await.json();
    assert_eq!(payment["state"], "captured", "{payment}");
    assert_eq!(payment["charged_cents"], 300, "{payment}");
    let shipment = app.get("/internal/shipping/shipments/happy").await;
    assert_eq!(shipment.status, 200, "{}", shipment.text());
    let reservation = app
        .get("/internal/inventory/reservations/happy")
        .await
        .json();
    assert_eq!(reservation["state"], "committed", "{reservation}");

    create(
        &app,
        "short",
        r#"{"order_id": "short", "customer": "Ada", "items": [{"product": "Widget", "quantity": 1}, {"product": "Rare", "quantity": 100}, {"product": "Limited", "quantity": 40}, {"product": "Rare", "quantity": 51}]}"#,
    )
    .await;
    let order = final_order(&app, "short", Duration::from_secs(30)).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["reason"], "reserve_refused", "{order}");
    let detail = order["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("Rare: 151 requested, 150 available"),
        "{order}"
    );
    assert_eq!(
        saga_events(&app, "short").await,
        pairs(&[
            ("step_refused", "reserve"),
            ("cancelled", "reserve_refused"),
        ])
    );
    let payment = app.get("/internal/payment/payments/short").await;
    assert_eq!(
        payment.status,
        404,
        "nothing was charged: {}",
        payment.text()
    );
    for sku in ["Widget", "Rare", "Limited"] {
        let stock = app
            .get(&format!("/internal/inventory/stock/{sku}"))
            .await
            .json();
        assert_eq!(stock["reserved"], 0, "{stock}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_keeps_its_invariants_under_random_faults_in_every_service() {
    let app = start().await;
    for (n, path) in (0_u64..).zip(FAULT_ROUTES) {
        let faults =
            json!({"mode": "slow", "delay_ms": 1 + n, "failure_rate": 0.2, "seed": 40 + n});
        let reply = app.post(path, &faults.to_string()).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let catalog = catalog::Catalog::from_json(CATALOG).unwrap();
    let orders = mix::plan(
        &catalog,
        &MixSettings {
            seed: 9,
            orders: 160,
            cancel_fraction: 0.1,
            max_cancel_delay_ms: 100,
            payment_limit_cents: PAYMENT_LIMIT_CENTS,
            id_prefix: "audit".into(),
        },
    );
    let sent: Vec<(String, CancelRequest)> = futures::stream::iter(&orders)
        .map(|order| {
            let client = app.client.clone();
            async move {
                let reply = client.create_order(&order.id, &order.body()).await;
                assert_eq!(reply.status, 202, "{}: {}", order.id, reply.text());
                if !order.cancel {
                    return (order.id.clone(), CancelRequest::NotAsked);
                }
                tokio::time::sleep(Duration::from_millis(order.cancel_after_ms)).await;
                let reply = client
                    .post(&format!("/orders/{}/cancel", order.id), "")
                    .await;
                let answer = match reply.status {
                    202 => CancelRequest::Accepted,
                    409 => CancelRequest::Refused,
                    status => panic!("cancelling {}: {status} {}", order.id, reply.text()),
                };
                (order.id.clone(), answer)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for path in FAULT_ROUTES {
        let reply = app
            .post(path, r#"{"mode": "normal", "failure_rate": 0}"#)
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }

    let give_up = Instant::now() + Duration::from_secs(120);
    for (id, _) in &sent {
        let left = give_up.saturating_duration_since(Instant::now());
        final_order(&app, id, left).await;
    }
    let snapshot = state::snapshot(&Client(&app.client), &sent, Vec::new())
        .await
        .unwrap();
    let audit = Audit::of(&snapshot);
    let report = audit.markdown();
    assert!(audit.passed(), "{report}");
    // The mix reached every ending it was drawn for.
    let ended = |status: &str, reason: &str| {
        audit
            .outcomes
            .get(&(status.to_owned(), reason.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(ended("confirmed", "") > 0, "{report}");
    assert!(ended("cancelled", "reserve_refused") > 0, "{report}");
    assert!(ended("cancelled", "authorize_refused") > 0, "{report}");
    let accepted = sent
        .iter()
        .filter(|(_, answer)| *answer == CancelRequest::Accepted)
        .count();
    assert!(accepted > 0, "some cancellations were accepted: {sent:?}");
    app.stop().await;
}
