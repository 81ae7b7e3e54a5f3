//! The external validator simulator, black-box through the shipped spin.toml: verdicts, fault
//! modes, seeded replay, and configuration shared by every instance.

use orderly_tests::TestApp;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_orders_against_the_catalog() {
    let app = TestApp::start_real().await;
    let valid = app
        .post(
            "/external/validate",
            r#"{"order_id": "o1", "product": "Medicine A", "quantity": 10}"#,
        )
        .await;
    assert_eq!(valid.status, 200);
    assert_eq!(valid.json()["verdict"], "valid");
    assert_eq!(valid.json()["order_id"], "o1");
    let unknown = app
        .post(
            "/external/validate",
            r#"{"product": "Gold", "quantity": 1}"#,
        )
        .await
        .json();
    assert_eq!(
        (unknown["verdict"].as_str(), unknown["reason"].as_str()),
        (Some("rejected"), Some("unknown_product"))
    );
    let too_many = app
        .post(
            "/external/validate",
            r#"{"product": "Vaccine X", "quantity": 51}"#,
        )
        .await
        .json();
    assert_eq!(too_many["reason"], "quantity_out_of_range");
    let several = app
        .post(
            "/external/validate",
            r#"{"order_id": "o2", "items": [{"product": "Test Product", "quantity": 5}, {"product": "burger", "quantity": 2}]}"#,
        )
        .await
        .json();
    assert_eq!(several["verdict"], "valid");
    let malformed = app.post("/external/validate", "{").await;
    assert_eq!(
        (malformed.status, malformed.header("content-type")),
        (400, Some("application/problem+json"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_change_what_validate_and_health_answer() {
    let app = TestApp::start_real().await;
    assert_eq!(
        app.get("/external/health").await.json()["status"],
        "healthy"
    );

    let configured = app
        .post(
            "/external/configure",
            r#"{"mode": "slow", "delay_ms": 300}"#,
        )
        .await
        .json();
    assert_eq!(
        (configured["mode"].as_str(), configured["delay_ms"].as_u64()),
        (Some("slow"), Some(300))
    );
    let started = Instant::now();
    let slow = app
        .post(
            "/external/validate",
            r#"{"product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(slow.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        app.get("/external/health").await.json()["status"],
        "degraded"
    );

    app.post("/external/set_failure_mode", r#"{"mode": "down"}"#)
        .await;
    let down = app
        .post(
            "/external/validate",
            r#"{"product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(
        (down.status, down.json()["type"].as_str()),
        (503, Some("/problems/simulated-outage"))
    );
    assert_eq!(app.get("/external/health").await.status, 503);

    app.post("/external/configure", r#"{"mode": "error"}"#)
        .await;
    let error = app
        .post(
            "/external/validate",
            r#"{"product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(
        (error.status, error.json()["type"].as_str()),
        (500, Some("/problems/injected-fault"))
    );
    assert_eq!(
        app.get("/external/health").await.json()["status"],
        "failing"
    );

    app.post("/external/configure", r#"{"mode": "normal"}"#)
        .await;
    let shown = app.get("/external/configure").await.json();
    assert_eq!(
        (shown["mode"].as_str(), shown["delay_ms"].as_u64()),
        (Some("normal"), Some(300))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_failures_replay_exactly_from_the_seed() {
    let app = TestApp::start_real().await;
    let run = |client: orderly_tests::HttpClient| async move {
        client
            .post(
                "/external/configure",
                r#"{"failure_rate": 0.4, "seed": 1234}"#,
            )
            .await;
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(
                client
                    .post(
                        "/external/validate",
                        r#"{"product": "Medicine B", "quantity": 3}"#,
                    )
                    .await
                    .status,
            );
        }
        statuses
    };
    let first = run(app.client.clone()).await;
    let second = run(app.client.clone()).await;
    assert_eq!(first, second);
    let failures = first.iter().filter(|s| **s == 500).count();
    assert!((3..=24).contains(&failures), "about 40% fail: {first:?}");
    assert!(first.iter().all(|s| *s == 200 || *s == 500));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_and_changes_nothing() {
    let app = TestApp::start_real().await;
    let cases = [
        (r#"{"mode": "flaky"}"#, 422, Some("mode")),
        (r#"{"failure_rate": 2}"#, 422, Some("failure_rate")),
        (r#"{"delay_ms": 600000}"#, 422, Some("delay_ms")),
        ("{}", 400, None),
        ("nope", 400, None),
        (r#"{"mode": "down", "colour": 1}"#, 400, None),
    ];
    for (body, status, field) in cases {
        let reply = app.post("/external/configure", body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(reply.json()["field"].as_str(), field, "{body}");
    }
    assert_eq!(
        app.get("/external/configure").await.json()["mode"],
        "normal"
    );
    assert_eq!(app.get("/external/nope").await.status, 404);
    let form = app
        .send(
            http::Method::POST,
            "/external/configure",
            &[("content-type", "application/x-www-form-urlencoded")],
            r#"{"mode": "down"}"#,
        )
        .await;
    assert_eq!(form.status, 415, "a cross-site form cannot switch the mode");
    let wrong = app.get("/external/validate").await;
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campus_body_sets_delay_and_failure_rate() {
    let app = TestApp::start_real().await;
    let configured = app
        .post(
            "/external/configure",
            r#"{"delay": 0.3, "failure_rate": 0}"#,
        )
        .await;
    assert_eq!(configured.status, 200, "{}", configured.text());
    assert_eq!(
        (
            configured.json()["mode"].as_str(),
            configured.json()["delay_ms"].as_u64()
        ),
        (Some("slow"), Some(300))
    );
    let started = Instant::now();
    let slow = app
        .post(
            "/external/validate",
            r#"{"product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(slow.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    app.post("/external/configure", r#"{"delay": 0, "failure_rate": 1}"#)
        .await;
    assert_eq!(
        app.get("/external/get_failure_mode").await.json()["mode"],
        "normal"
    );
    let started = Instant::now();
    let failing = app
        .post(
            "/external/validate",
            r#"{"product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(
        (failing.status, failing.json()["type"].as_str()),
        (500, Some("/problems/injected-fault"))
    );
    assert!(started.elapsed() < Duration::from_millis(300), "no delay");

    let mixed = app
        .post("/external/configure", r#"{"delay": 1, "mode": "down"}"#)
        .await;
    assert_eq!(
        (mixed.status, mixed.json()["field"].as_str()),
        (422, Some("delay"))
    );
    app.stop().await;
}
