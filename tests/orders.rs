//! The orders component, black-box through the shipped spin.toml: fast acceptance, reads,
//! lists, and a problem body for every kind of bad input.

use futures::future::join_all;
use http::Method;
use orderly_tests::{TestApp, real_manifest};
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_accepted_and_served_back() {
    let app = TestApp::start_real().await;
    let created = app
        .post("/orders", r#"{"product": "Medicine A", "quantity": 10}"#)
        .await;
    assert_eq!(created.status, 202, "{}", created.text());
    let order = created.json();
    let id = order["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ord_"), "{id}");
    assert_eq!(order["status"], "pending");
    assert_eq!(
        created.header("location"),
        Some(format!("/orders/{id}").as_str())
    );
    let fetched = app.get(&format!("/orders/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), order);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_are_kept_and_duplicates_conflict() {
    let app = TestApp::start_real().await;
    let body = r#"{"order_id": "test-001", "product": "Medicine A", "quantity": 10}"#;
    assert_eq!(app.post("/orders", body).await.status, 202);
    let again = app.post("/orders", body).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["type"], "/problems/duplicate-order");
    assert_eq!(
        app.get("/orders/test-001").await.json()["product"],
        "Medicine A"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_status_and_limit() {
    let app = TestApp::start_real().await;
    for quantity in 1..=3 {
        app.post(
            "/orders",
            &format!(r#"{{"product": "Vaccine X", "quantity": {quantity}}}"#),
        )
        .await;
    }
    let all = app.get("/orders").await.json();
    assert_eq!(all["count"], 3);
    let quantities: Vec<u64> = all["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["quantity"].as_u64().unwrap())
        .collect();
    assert_eq!(quantities, [1, 2, 3], "oldest first");
    assert_eq!(
        app.get("/orders?status=pending&limit=2").await.json()["count"],
        2
    );
    assert_eq!(app.get("/orders?status=validated").await.json()["count"], 0);
    let bad = app.get("/orders?status=done").await;
    assert_eq!(
        (bad.status, bad.json()["parameter"].as_str()),
        (400, Some("status"))
    );
    let bad = app.get("/orders?limit=0").await;
    assert_eq!(
        (bad.status, bad.json()["parameter"].as_str()),
        (400, Some("limit"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_with_the_right_status() {
    let app = TestApp::start_real().await;
    let cases = [
        ("not json", 400, None),
        (
            r#"{"product": "x", "quantity": 1, "colour": "red"}"#,
            400,
            None,
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
            r#"{"order_id": "a/b", "product": "x", "quantity": 1}"#,
            422,
            Some("order_id"),
        ),
    ];
    for (body, status, field) in cases {
        let reply = app.post("/orders", body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.json()["field"].as_str(), field, "{body}");
    }
    assert_eq!(
        app.get("/orders?limit=1000").await.json()["count"],
        0,
        "nothing bad was stored"
    );
    let missing = app.get("/orders/ord_missing").await;
    assert_eq!(missing.status, 404);
    let wrong = app.send(Method::DELETE, "/orders/x", &[], "").await;
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET")));
    let wrong = app.send(Method::PUT, "/orders", &[], "").await;
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, POST"))
    );
    assert_eq!(app.get("/orders/a/b").await.status, 404);
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
                .post(
                    "/orders",
                    &format!(r#"{{"product": "Syringe Pack", "quantity": {}}}"#, i + 1),
                )
                .await;
            assert_eq!(reply.status, 202, "{}", reply.text());
            reply.json()["id"].as_str().unwrap().to_owned()
        })
    });
    let ids: HashSet<String> = join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.len(), 60, "ids are unique");
    app.stop().await;
    let app = TestApp::start_in(dir, &real_manifest(), |_| {})
        .await
        .unwrap();
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
