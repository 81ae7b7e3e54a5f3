//! The orders API, black-box through the shipped spin.toml: fast acceptance with idempotency
//! keys, reads, timelines, pages, and a problem body for every kind of bad input.

use futures::future::join_all;
use http::Method;
use orderly_tests::{Reply, TestApp, passed_validation, validated_count};
use std::collections::HashSet;
use std::sync::Arc;

const MEDICINE: &str = r#"{"product": "Medicine A", "quantity": 10}"#;

fn order_id(reply: &Reply) -> String {
    reply.json()["order"]["id"]
        .as_str()
        .expect("an order id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_accepted_at_once_then_validated_once() {
    let app = TestApp::start_real().await;
    let created = app.create_order("first", MEDICINE).await;
    assert_eq!(created.status, 202, "{}", created.text());
    let body = created.json();
    let id = order_id(&created);
    assert!(id.starts_with("ord_"), "{id}");
    assert_eq!(body["order"]["status"], "processing");
    assert_eq!(body["order"]["items"][0]["product"], "Medicine A");
    assert_eq!(
        created.header("location"),
        Some(format!("/orders/{id}").as_str())
    );
    let order = app.settled_order(&id).await;
    assert!(passed_validation(&order["status"]), "{order}");
    assert_eq!(
        app.validation_kinds(&id).await,
        ["accepted", "attempt", "validated"]
    );
    let events = app.get(&format!("/orders/{id}/events")).await.json();
    assert_eq!(events["events"][1]["outcome"], "valid");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_products_are_rejected_with_the_validators_reason() {
    let app = TestApp::start_real().await;
    let created = app
        .create_order(
            "gold",
            r#"{"items": [{"product": "Medicine A", "quantity": 1}, {"product": "Gold", "quantity": 1}]}"#,
        )
        .await;
    let order = app.settled_order(&order_id(&created)).await;
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["reason"], "unknown_product");
    assert!(
        order["detail"].as_str().unwrap().contains("Gold"),
        "{order}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_follow_the_draft() {
    let app = TestApp::start_real().await;
    let missing = app
        .send(
            Method::POST,
            "/orders",
            &[("content-type", "application/json")],
            MEDICINE,
        )
        .await;
    assert_eq!(
        (missing.status, missing.json()["type"].as_str()),
        (400, Some("/problems/missing-idempotency-key"))
    );
    let first = app.create_order("same-key", MEDICINE).await;
    assert_eq!(first.status, 202);
    // The same request again, spelt differently: the first answer, replayed.
    let again = app
        .create_order(
            "same-key",
            r#"{ "items": [ { "quantity": 10, "product": "Medicine A" } ] }"#,
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    let other = app
        .create_order("same-key", r#"{"product": "Medicine A", "quantity": 11}"#)
        .await;
    assert_eq!(
        (other.status, other.json()["type"].as_str()),
        (422, Some("/problems/idempotency-key-reused"))
    );
    let long = "k".repeat(256);
    let too_long = app.create_order(&long, MEDICINE).await;
    assert_eq!(
        (too_long.status, too_long.json()["type"].as_str()),
        (400, Some("/problems/invalid-idempotency-key"))
    );
    assert_eq!(app.create_order(&long[..255], MEDICINE).await.status, 202);
    let quoted = app.create_order("\"sf-string\"", MEDICINE).await;
    assert_eq!(quoted.status, 202);
    let listed = app.get("/orders?limit=100").await.json();
    assert_eq!(listed["count"], 3, "one order per key: {listed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_are_kept_and_another_key_cannot_reuse_them() {
    let app = TestApp::start_real().await;
    let body = r#"{"order_id": "test-001", "customer": "ward 7", "product": "Medicine A", "quantity": 10}"#;
    assert_eq!(app.create_order("k1", body).await.status, 202);
    let again = app.create_order("k2", body).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["type"], "/problems/duplicate-order");
    let order = app.get("/orders/test-001").await.json();
    assert_eq!(order["customer"], "ward 7");
    assert_eq!(order["items"][0]["product"], "Medicine A");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_status_and_page_through_every_order() {
    let app = TestApp::start_real().await;
    for quantity in 1..=5 {
        let product = if quantity == 5 { "Gold" } else { "Vaccine X" };
        app.create_order(
            &format!("page-{quantity}"),
            &format!(
                r#"{{"order_id": "p{quantity}", "product": "{product}", "quantity": {quantity}}}"#
            ),
        )
        .await;
    }
    for id in ["p1", "p2", "p3", "p4", "p5"] {
        app.settled_order(id).await;
    }
    let mut seen = Vec::new();
    let mut path = "/orders?limit=2".to_owned();
    loop {
        let page = app.get(&path).await.json();
        for order in page["orders"].as_array().unwrap() {
            seen.push(order["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/orders?limit=2&after={}", next.replace(':', "%3A"));
            }
            None => break,
        }
    }
    assert_eq!(seen, ["p1", "p2", "p3", "p4", "p5"], "oldest first");
    // Validated orders go on to fulfilment, where one short of stock is cancelled.
    let stats = app.get("/admin/stats").await.json();
    let undone =
        ["cancelling", "cancelled"].map(|status| stats["orders"][status].as_u64().unwrap_or(0));
    assert_eq!(
        validated_count(&stats) + undone.iter().sum::<u64>(),
        4,
        "{stats}"
    );
    assert_eq!(app.get("/orders?status=rejected").await.json()["count"], 1);
    for (query, parameter) in [
        ("status=pending", "status"),
        ("limit=0", "limit"),
        ("after=garbage", "after"),
    ] {
        let bad = app.get(&format!("/orders?{query}")).await;
        assert_eq!(
            (bad.status, bad.json()["parameter"].as_str()),
            (400, Some(parameter)),
            "{query}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_with_the_right_status_and_stores_nothing() {
    let app = TestApp::start_real().await;
    let cases = [
        ("not json", 400, None),
        (r#"["id", "Medicine A", 5]"#, 400, None),
        ("", 400, None),
        (
            r#"{"product": "x", "quantity": 1, "colour": "red"}"#,
            422,
            Some("colour"),
        ),
        (r#"{"quantity": 1}"#, 422, Some("product")),
        (r#"{"product": "x", "quantity": 0}"#, 422, Some("quantity")),
        (
            r#"{"product": "x", "quantity": 1001}"#,
            422,
            Some("quantity"),
        ),
        (
            r#"{"product": "x", "quantity": "2"}"#,
            422,
            Some("quantity"),
        ),
        (
            r#"{"product": "x", "quantity": 1.5}"#,
            422,
            Some("quantity"),
        ),
        (
            "{\"product\": \"Medicine\u{202E}A\", \"quantity\": 1}",
            422,
            Some("product"),
        ),
        (
            r#"{"order_id": "a/b", "product": "x", "quantity": 1}"#,
            422,
            Some("order_id"),
        ),
        (
            r#"{"order_id": "..", "product": "x", "quantity": 1}"#,
            422,
            Some("order_id"),
        ),
        (
            r#"{"order_id": ".", "product": "x", "quantity": 1}"#,
            422,
            Some("order_id"),
        ),
        (r#"{"items": []}"#, 422, Some("items")),
        (
            r#"{"items": [{"product": "x"}]}"#,
            422,
            Some("items[0].quantity"),
        ),
    ];
    for (index, (body, status, field)) in cases.into_iter().enumerate() {
        let reply = app.create_order(&format!("bad-{index}"), body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.json()["field"].as_str(), field, "{body}");
    }
    // Not JSON by its content type: a cross-site form post is refused.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let reply = app
            .send(
                Method::POST,
                "/orders",
                &[("content-type", content_type), ("idempotency-key", "form")],
                MEDICINE,
            )
            .await;
        assert_eq!(reply.status, 415, "{content_type}");
    }
    let oversized = format!(
        r#"{{"product": "x", "quantity": 1, "customer": "{}"}}"#,
        "c".repeat(70_000)
    );
    let reply = app.create_order("big", &oversized).await;
    assert_eq!(
        (reply.status, reply.json()["type"].as_str()),
        (413, Some("/problems/body-too-large"))
    );
    assert_eq!(
        app.get("/orders?limit=1000").await.json()["count"],
        0,
        "nothing bad was stored"
    );
    assert_eq!(app.get("/orders/ord_missing").await.status, 404);
    assert_eq!(app.get("/orders//").await.status, 404);
    assert_eq!(app.get("/orders/a/b").await.status, 404);
    assert_eq!(app.get("/orders/a/events/x").await.status, 404);
    let wrong = app.send(Method::DELETE, "/orders/x", &[], "").await;
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET")));
    let wrong = app.send(Method::PUT, "/orders", &[], "").await;
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, POST"))
    );
    let health = app.get("/orders/health").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("healthy"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_are_all_kept_across_a_restart() {
    let app = TestApp::start_real().await;
    let dir = Arc::clone(&app.dir);
    let posts = (0..60).map(|i| {
        let client = app.client.clone();
        tokio::spawn(async move {
            let reply = client
                .create_order(
                    &format!("restart-{i}"),
                    &format!(r#"{{"product": "Syringe Pack", "quantity": {}}}"#, i + 1),
                )
                .await;
            assert_eq!(reply.status, 202, "{}", reply.text());
            order_id(&reply)
        })
    });
    let ids: HashSet<String> = join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.len(), 60, "ids are unique");
    app.stop().await;
    let app = TestApp::start_real_in(dir, |_| {}).await;
    let listed = app.get("/orders?limit=1000").await.json();
    let listed: HashSet<String> = listed["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    app.stop().await;
}
