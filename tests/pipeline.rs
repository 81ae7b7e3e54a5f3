//! The order pipeline, black-box through the shipped spin.toml: orders accepted whatever the
//! validator does, none lost while it is down, the fleet-wide breaker (errors, slowness, one
//! probe at a time), dead letters and their replay, the health monitor, the metrics, the
//! MediSupply seed's own API, and a hung Redis.

use futures::future::join_all;
use orderly_host::{LoadOptions, RedisMode};
use orderly_tests::native_server::{ScriptedServer, black_hole};
use orderly_tests::redis_server::{private_redis, publish};
use orderly_tests::{HttpClient, TestApp, passed_validation, validated_count};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Short breaker and retry times, so that outages and recoveries take moments.
fn quick(options: &mut LoadOptions) {
    for (name, value) in [
        ("breaker_open_ms", "200"),
        ("breaker_open_max_ms", "400"),
        ("retry_base_ms", "20"),
        ("retry_max_delay_ms", "200"),
        ("budget_wait_ms", "50"),
        ("poison_limit", "2"),
    ] {
        options.variables.insert(name.to_owned(), value.to_owned());
    }
}

async fn set_mode(client: &HttpClient, body: &str) {
    let reply = client.post("/external/configure", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn stats(client: &HttpClient) -> Value {
    client.get("/admin/stats").await.json()
}

async fn breaker(client: &HttpClient) -> Value {
    client.get("/admin/breaker").await.json()
}

/// Creates `count` orders at once (keys `<prefix>-<n>`); returns their ids.
async fn create_many(client: &HttpClient, prefix: &str, count: usize) -> Vec<String> {
    let posts = (0..count).map(|n| {
        let client = client.clone();
        let key = format!("{prefix}-{n}");
        tokio::spawn(async move {
            let reply = client
                .create_order(&key, r#"{"product": "Medicine A", "quantity": 2}"#)
                .await;
            assert_eq!(reply.status, 202, "{}", reply.text());
            reply.json()["order"]["id"].as_str().unwrap().to_owned()
        })
    });
    join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Waits until no order is processing; returns the final stats.
async fn drained(client: &HttpClient, limit: Duration) -> Value {
    let stats = client
        .wait_for(
            limit,
            async |c| stats(c).await,
            |s| s["orders"]["processing"] == 0,
        )
        .await;
    assert_eq!(stats["orders"]["processing"], 0, "not drained: {stats}");
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_whatever_the_validator_does() {
    let app = TestApp::start_real().await;
    for (n, mode) in [
        r#"{"mode": "normal"}"#,
        r#"{"mode": "slow", "delay_ms": 500}"#,
        r#"{"mode": "down"}"#,
        r#"{"mode": "error"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        set_mode(&app, mode).await;
        let reply = app
            .create_order(
                &format!("mode-{n}"),
                r#"{"product": "Medicine A", "quantity": 1}"#,
            )
            .await;
        assert_eq!(reply.status, 202, "{mode}: {}", reply.text());
        assert_eq!(reply.json()["order"]["status"], "processing");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_order_is_lost_or_decided_twice_while_the_validator_is_down() {
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), quick).await;
    set_mode(&app, r#"{"mode": "down"}"#).await;
    let ids = create_many(&app, "outage", 50).await;
    let open = app
        .wait_for(
            Duration::from_secs(20),
            async |c| breaker(c).await,
            |b| b["state"] == "open",
        )
        .await;
    assert_eq!(open["state"], "open", "{open}");
    // While down, orders wait with their next attempt and last error visible.
    let waiting = app
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get(&format!("/orders/{}", ids[0])).await.json(),
            |order| order["validation"]["last_error"].is_string(),
        )
        .await;
    assert_eq!(waiting["status"], "processing", "{waiting}");
    assert!(
        waiting["validation"]["next_attempt_at"].is_string(),
        "{waiting}"
    );
    assert_eq!(stats(&app).await["orders"]["failed"], 0);
    set_mode(&app, r#"{"mode": "normal"}"#).await;
    let stats = drained(&app, Duration::from_secs(60)).await;
    assert_eq!(validated_count(&stats), 50, "{stats}");
    let closed = app
        .wait_for(
            Duration::from_secs(20),
            async |c| breaker(c).await,
            |b| b["state"] == "closed",
        )
        .await;
    assert_eq!(closed["state"], "closed", "{closed}");
    let mut deferred = 0;
    for id in &ids {
        let kinds = app.event_kinds(id).await;
        let decisions = kinds
            .iter()
            .filter(|k| ["validated", "rejected", "failed"].contains(&k.as_str()))
            .count();
        assert_eq!(decisions, 1, "{id}: {kinds:?}");
        let validation = app.validation_kinds(id).await;
        assert_eq!(
            validation.last().map(String::as_str),
            Some("validated"),
            "{kinds:?}"
        );
        deferred += usize::from(validation.iter().any(|k| k == "deferred"));
    }
    assert!(
        deferred > 0,
        "some orders were deferred by the open circuit"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_circuit_lets_exactly_one_probe_through_at_a_time() {
    // 50 workers at once need a real Redis (doorbells) and 64 drainer slots: every woken
    // worker then competes for the half-open circuit's one probe.
    let Some(redis) = private_redis() else { return };
    let url = redis.url();
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        quick(options);
        options.variables.insert("redis_url".into(), url.clone());
        options
            .variables
            .insert("worker_drainers".into(), "64".into());
        options.redis_mode = RedisMode::Server;
    })
    .await;
    set_mode(&app, r#"{"mode": "error"}"#).await;
    create_many(&app, "trip", 50).await;
    app.wait_for(
        Duration::from_secs(20),
        async |c| breaker(c).await,
        |b| b["state"] == "open",
    )
    .await;
    // Let the calls in flight when it tripped land: no job is leased any more.
    app.wait_for(
        Duration::from_secs(20),
        async |c| stats(c).await,
        |s| s["jobs_leased"] == 0,
    )
    .await;
    let half_opened = |b: &Value| -> u64 {
        b["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["to"] == "half_open")
            .map(|t| t["count"].as_u64().unwrap())
            .sum()
    };
    let calls = async |c: &HttpClient| {
        c.get("/external/stats").await.json()["calls"]
            .as_u64()
            .unwrap()
    };
    let (calls_before, half_before) = (calls(&app).await, half_opened(&breaker(&app).await));
    // Three seconds of bursts: 50 doorbells every 50 ms, so that 50 workers run at once
    // whenever the circuit's open time ends (every 200 to 400 ms here).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        for _ in 0..50 {
            publish(&url, "orderly-jobs", br#"{"wake": "backlog"}"#);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (calls_after, half_after) = (calls(&app).await, half_opened(&breaker(&app).await));
    let periods = half_after - half_before;
    let calls_made = calls_after - calls_before;
    assert!(
        periods >= 3,
        "the circuit half-opened several times: {periods}"
    );
    // One call per half-open period; a probe sent just before the first reading or just after
    // the last one may fall on either side of it.
    assert!(
        calls_made <= periods + 1 && calls_made + 1 >= periods,
        "{calls_made} calls in {periods} half-open periods"
    );
    assert_eq!(
        stats(&app).await["dead_letters"],
        0,
        "backlog doorbells are not poison"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_open_the_circuit_too() {
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        quick(options);
        for (name, value) in [
            ("breaker_slow_call_ms", "100"),
            ("breaker_slow_call_rate", "0.5"),
            ("breaker_min_calls", "4"),
            ("breaker_consecutive_failures", "1000"),
        ] {
            options.variables.insert(name.to_owned(), value.to_owned());
        }
    })
    .await;
    set_mode(&app, r#"{"mode": "slow", "delay_ms": 300}"#).await;
    create_many(&app, "slow", 8).await;
    let open = app
        .wait_for(
            Duration::from_secs(20),
            async |c| breaker(c).await,
            |b| b["state"] == "open",
        )
        .await;
    assert_eq!(open["state"], "open", "{open}");
    assert_eq!(open["last_reason"]["kind"], "slow_call_rate", "{open}");
    set_mode(&app, r#"{"mode": "normal"}"#).await;
    let stats = drained(&app, Duration::from_secs(60)).await;
    assert_eq!(stats["orders"]["validated"], 8, "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_answers_dead_letter_the_job_and_a_replay_finishes_it() {
    let validator = ScriptedServer::start(200, "<html>maintenance</html>").await;
    let origin = format!("http://{}", validator.address);
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        quick(options);
        options
            .variables
            .insert("validator_url".into(), format!("{origin}/validate"));
        options.variables.insert("validator_origin".into(), origin);
    })
    .await;
    let created = app
        .create_order(
            "poison",
            r#"{"order_id": "poison-1", "product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(created.status, 202);
    let dlq = app
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get("/admin/dlq").await.json(),
            |d| d["count"] == 1,
        )
        .await;
    let entry = &dlq["dead_letters"][0];
    assert_eq!(entry["source"], "job", "{dlq}");
    assert_eq!(entry["order_id"], "poison-1");
    assert!(
        entry["reason"].as_str().unwrap().contains("unreadable"),
        "{entry}"
    );
    let order = app.get("/orders/poison-1").await.json();
    assert_eq!(order["status"], "processing", "{order}");
    assert_eq!(order["validation"]["dead_lettered"], true, "{order}");
    // The rest still flows: a refusal (4xx) fails its order at once, without a retry.
    validator.answer(422, r#"{"title": "unprocessable"}"#);
    let refused = app
        .create_order(
            "refused",
            r#"{"order_id": "refused-1", "product": "Medicine A", "quantity": 1}"#,
        )
        .await;
    assert_eq!(refused.status, 202);
    let failed = app.settled_order("refused-1").await;
    assert_eq!(
        (failed["status"].as_str(), failed["reason"].as_str()),
        (Some("failed"), Some("validator_refused")),
        "{failed}"
    );
    // Fixed: replay the dead job.
    validator.answer(200, r#"{"verdict": "valid", "order_id": "poison-1"}"#);
    let id = entry["id"].as_i64().unwrap();
    let replayed = app.post(&format!("/admin/dlq/{id}/replay"), "").await;
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    let order = app.settled_order("poison-1").await;
    assert!(passed_validation(&order["status"]), "{order}");
    let kinds = app.event_kinds("poison-1").await;
    assert!(
        kinds.contains(&"dead_lettered".to_owned()) && kinds.contains(&"replayed".to_owned()),
        "{kinds:?}"
    );
    assert_eq!(
        app.post(&format!("/admin/dlq/{id}/replay"), "")
            .await
            .status,
        409
    );
    assert_eq!(app.get("/admin/dlq").await.json()["count"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_go_to_the_dead_letter_queue_and_never_block_the_rest() {
    let Some(redis) = private_redis() else { return };
    let url = redis.url();
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        options.variables.insert("redis_url".into(), url.clone());
        options.redis_mode = RedisMode::Server;
    })
    .await;
    assert_eq!(publish(&url, "orderly-jobs", b"not json"), 1);
    assert_eq!(
        publish(&url, "orderly-jobs", br#"{"order_id": "nobody"}"#),
        1
    );
    let ids = create_many(&app, "flow", 5).await;
    let dlq = app
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get("/admin/dlq").await.json(),
            |d| d["count"] == 2,
        )
        .await;
    let reasons: Vec<&str> = dlq["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("malformed doorbell")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("nobody")), "{reasons:?}");
    assert_eq!(dlq["dead_letters"][0]["source"], "message");
    drained(&app, Duration::from_secs(30)).await;
    for id in &ids {
        assert_eq!(
            app.validation_kinds(id).await.last().map(String::as_str),
            Some("validated")
        );
    }
    // A replayed message is published again (and, still malformed, dead-lettered again).
    let id = dlq["dead_letters"][1]["id"].as_i64().unwrap();
    let replayed = app.post(&format!("/admin/dlq/{id}/replay"), "").await;
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    app.wait_for(
        Duration::from_secs(20),
        async |c| c.get("/admin/dlq").await.json(),
        |d| d["count"] == 2 && d["dead_letters"][0]["id"].as_i64() != Some(id),
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_delays_no_answer_and_loses_no_order() {
    let hung = black_hole().await;
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        options
            .variables
            .insert("redis_url".into(), format!("redis://{hung}"));
        options.redis_mode = RedisMode::Server;
    })
    .await;
    let body = r#"{"order_id": "hung-1", "product": "Medicine A", "quantity": 1}"#;
    let first = app.create_order("hung-key", body).await;
    assert_eq!(first.status, 202, "{}", first.text());
    // The first request is still ringing the doorbell (Redis does not answer), but it answered
    // and its key is complete: a retry gets the same answer.
    let retry = app.create_order("hung-key", body).await;
    assert_eq!(retry.status, 202, "{}", retry.text());
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // No doorbell arrives, yet the sweeper validates the order.
    let order = app.settled_order("hung-1").await;
    assert_eq!(order["status"], "validated", "{order}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_create_one_order_and_get_its_answer_or_409() {
    let app = TestApp::start_real().await;
    let body = r#"{"order_id": "twin-1", "product": "Medicine A", "quantity": 1}"#;
    let replies = join_all((0..20).map(|_| {
        let client = app.client.clone();
        tokio::spawn(async move { client.create_order("twin-key", body).await })
    }))
    .await;
    let replies: Vec<_> = replies.into_iter().map(Result::unwrap).collect();
    let created: Vec<_> = replies
        .iter()
        .filter(|r| r.status == 202 && r.header("idempotent-replayed").is_none())
        .collect();
    assert_eq!(created.len(), 1, "one request created the order");
    for reply in &replies {
        match reply.status {
            202 => assert_eq!(reply.body, created[0].body, "a replay is the first answer"),
            409 => {
                assert_eq!(reply.json()["type"], "/problems/idempotency-key-in-flight");
                assert!(reply.header("retry-after").is_some());
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    let listed = app.get("/orders?limit=100").await.json();
    assert_eq!(listed["count"], 1, "{listed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_tells_the_four_modes_apart() {
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        options
            .variables
            .insert("monitor_degraded_ms".into(), "200".into());
    })
    .await;
    // Never "no data": the first request probes.
    let first = app.get("/health_status").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["services"]["orders"]["status"], "healthy");
    // The worker counts as up once its first sweep (cron, every second) left a heartbeat.
    let swept = app
        .wait_for(
            Duration::from_secs(10),
            async |c| c.get("/health_status?refresh=true").await.json(),
            |r| r["services"]["validator"]["status"] == "healthy",
        )
        .await;
    assert_eq!(
        swept["services"]["validator"]["status"], "healthy",
        "{swept}"
    );
    for (mode, expected) in [
        (r#"{"mode": "normal"}"#, "healthy"),
        (r#"{"mode": "slow", "delay_ms": 400}"#, "degraded"),
        (r#"{"mode": "error"}"#, "unhealthy"),
        (r#"{"mode": "down"}"#, "down"),
    ] {
        set_mode(&app, mode).await;
        let report = app.get("/health_status?refresh=true").await.json();
        assert_eq!(
            report["services"]["external-validator"]["status"], expected,
            "{mode}: {report}"
        );
        assert_eq!(report["status"], expected, "the worst service: {report}");
        for service in ["orders", "admin", "database", "redis"] {
            assert_eq!(
                report["services"][service]["status"], "healthy",
                "{service}: {report}"
            );
        }
        assert!(report["breaker"]["state"].is_string());
        assert!(report["queue"]["due"].is_u64());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_orders_calls_and_the_breaker() {
    let app = TestApp::start_real().await;
    create_many(&app, "metrics", 3).await;
    drained(&app, Duration::from_secs(30)).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    for line in [
        "orderly_orders{status=\"validated\"} 3",
        "orderly_validator_calls_total{outcome=\"valid\"} 3",
        "orderly_breaker_state{breaker=\"external-validator\",state=\"closed\"} 1",
        "orderly_order_validation_duration_seconds_count 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_medisupply_seed_scripts_run_unchanged() {
    let app = TestApp::start_real().await;
    // What its scripts/load_test.py --orders 5 --mode normal does.
    assert_eq!(
        app.send(http::Method::DELETE, "/clear_orders", &[], "")
            .await
            .status,
        200
    );
    let mode = app.post("/set_failure_mode", r#"{"mode": "normal"}"#).await;
    assert_eq!(mode.status, 200, "{}", mode.text());
    assert_eq!(app.get("/get_failure_mode").await.json()["mode"], "normal");
    for n in 0..5 {
        let body = format!(
            r#"{{"order_id": "simple-test-{n:08x}", "product": "Test Product", "quantity": 5}}"#
        );
        let reply = app.post("/create_order", &body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["message"], "Order placed successfully!");
        // A repeat is not an error.
        assert_eq!(app.post("/create_order", &body).await.status, 200);
    }
    let listed = app
        .wait_for(
            Duration::from_secs(30),
            async |c| c.get("/get_orders").await.json(),
            |l| {
                l["orders"].as_array().is_some_and(|rows| {
                    rows.len() == 5 && rows.iter().all(|r| passed_validation(&r[3]))
                })
            },
        )
        .await;
    let first = &listed["orders"][0];
    assert_eq!(
        first.as_array().map(|row| &row[..3]),
        Some(
            &serde_json::json!(["simple-test-00000000", "Test Product", 5])
                .as_array()
                .unwrap()[..]
        ),
        "{listed}"
    );
    assert!(passed_validation(&first[3]), "{listed}");
    for bad in [
        r#"{"product": "Test Product", "quantity": 5}"#,
        r#"{"order_id": "", "product": "x", "quantity": 1}"#,
    ] {
        let reply = app.post("/create_order", bad).await;
        assert_eq!(
            (reply.status, reply.json()["type"].as_str()),
            (400, Some("/problems/missing-order-id")),
            "{bad}"
        );
    }
    assert_eq!(app.get("/health").await.json()["status"], "healthy");
    assert_eq!(
        app.get("/health_status").await.json()["services"]["orders"]["status"],
        "healthy"
    );
    assert_eq!(
        app.send(http::Method::DELETE, "/clear_orders", &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        app.get("/get_orders").await.json()["orders"],
        serde_json::json!([])
    );
    app.stop().await;
}
