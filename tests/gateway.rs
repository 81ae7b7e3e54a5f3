//! The gateway (`/api/...`, `/mesh/...`), black-box: orders and the services through service
//! chaining, the per-client rate limit (shared by two hosts on one Redis store), request ids
//! and trace context, the headers it passes on, the admin and internal guards, the `/mesh/*`
//! views, and the problems it answers when a service is unreachable or slow.

use http::Method;
use orderly_tests::process::HostProcess;
use orderly_tests::redis_server::redis;
use orderly_tests::{Reply, TestApp, manifest, unique};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const ORDERLY: &str = env!("CARGO_BIN_EXE_orderly-under-test");

/// The gateway alone, with the probe fixture standing in for `inventory` and `admin` (it
/// answers any path with the headers it received; `/sleep?ms=` sleeps) and no other service.
const PROBED: &str = r#"
spin_manifest_version = 2
[application]
name = "gateway-probed"
[variables]
rate_limit = { default = "100" }
rate_limit_burst = { default = "100" }
gateway_timeout_ms = { default = "5000" }
admin_token = { default = "" }
[[trigger.http]]
route = "/api/..."
component = "gateway"
[[trigger.http]]
route = "/mesh/..."
component = "gateway"
[component.gateway]
source = "{wasm}/gateway.wasm"
key_value_stores = ["default"]
allowed_outbound_hosts = ["http://orders.spin.internal", "http://inventory.spin.internal", "http://admin.spin.internal"]
[component.gateway.variables]
rate_limit = "{{ rate_limit }}"
rate_limit_burst = "{{ rate_limit_burst }}"
gateway_timeout_ms = "{{ gateway_timeout_ms }}"
admin_token = "{{ admin_token }}"
[[trigger.http]]
route = { private = true }
component = "inventory"
[component.inventory]
source = "{wasm}/probe.wasm"
[[trigger.http]]
route = { private = true }
component = "admin"
[component.admin]
source = "{wasm}/probe.wasm"
"#;

async fn start_probed(variables: &[(&str, &str)]) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let variables: Vec<(String, String)> = variables
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    TestApp::start_in(dir, PROBED, move |options| {
        options.variables.extend(variables)
    })
    .await
    .unwrap_or_else(|e| panic!("start failed: {e}"))
}

/// Asserts `reply` is a problem with `status` and `kind` that carries a request id.
fn problem(reply: &Reply, status: u16, kind: &str) -> Value {
    assert!(
        reply.header("x-request-id").is_some(),
        "{:?}",
        reply.headers
    );
    reply.problem(status, kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_go_through_the_gateway_with_request_ids_and_trace_context() {
    let app = TestApp::start_real_with(&[]).await;
    let created = app
        .send(
            Method::POST,
            "/api/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "gw-1"),
                ("x-request-id", "client-req-1"),
            ],
            r#"{"order_id": "gw-1", "items": [{"product": "Medicine A", "quantity": 10}]}"#,
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.text());
    assert_eq!(created.json()["order"]["id"], "gw-1");
    assert_eq!(created.header("x-request-id"), Some("client-req-1"));
    assert_eq!(created.header("ratelimit-limit"), Some("100"));
    assert_eq!(created.header("ratelimit-remaining"), Some("99"));
    let traceparent = created.header("traceparent").expect("a traceparent");
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    assert!(traceparent.starts_with("00-"), "{traceparent}");

    // A replay is the first answer again (the idempotency key went through).
    let replayed = app
        .send(
            Method::POST,
            "/api/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "gw-1"),
            ],
            r#"{"order_id": "gw-1", "items": [{"product": "Medicine A", "quantity": 10}]}"#,
        )
        .await;
    assert_eq!(replayed.status, 202, "{}", replayed.text());

    let read = app.get("/api/orders/gw-1").await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["id"], "gw-1");
    let generated = read.header("x-request-id").expect("a generated request id");
    assert!(!generated.is_empty() && generated != "client-req-1");
    assert_ne!(
        app.get("/api/orders/gw-1").await.header("x-request-id"),
        Some(generated),
        "each request gets its own id"
    );
    let listed = app.get("/api/orders?limit=5").await;
    assert_eq!(listed.json()["orders"][0]["id"], "gw-1");
    // The legacy public path still answers.
    assert_eq!(app.get("/orders/gw-1").await.status, 200);

    let stock = app.get("/api/inventory/stock").await;
    assert_eq!(stock.status, 200, "{}", stock.text());
    assert!(
        stock.json()["stock"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    let medicine = app.get("/api/inventory/stock/Medicine%20A").await.json();
    assert_eq!(medicine["sku"], "Medicine A");
    let payment = app.get("/api/payments/nobody").await;
    assert_eq!(payment.status, 404, "{}", payment.text());
    assert_eq!(payment.json()["detail"], "no payment for order nobody");

    let missing = app.get("/api/nothing/here").await;
    let body = problem(&missing, 404, "/problems/no-route");
    assert_eq!(body["status"], 404);
    problem(
        &app.post("/api/inventory/reservations", "{}").await,
        404,
        "/problems/no-route",
    );
    let wrong = app.post("/api/inventory/stock", "{}").await;
    problem(&wrong, 405, "/problems/method-not-allowed");
    assert_eq!(wrong.header("allow"), Some("GET"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_is_limited_after_its_burst_and_health_never_is() {
    let app = TestApp::start_real_with(&[("rate_limit", "3"), ("rate_limit_burst", "3")]).await;
    for remaining in ["2", "1", "0"] {
        let allowed = app.get("/api/inventory/stock").await;
        assert_eq!(allowed.status, 200, "{}", allowed.text());
        assert_eq!(allowed.header("ratelimit-remaining"), Some(remaining));
    }
    let refused = app.get("/api/inventory/stock").await;
    let body = problem(&refused, 429, "/problems/rate-limited");
    assert!(
        body["retry_after_secs"].as_u64().is_some_and(|s| s >= 1),
        "{body}"
    );
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.header("ratelimit-limit"), Some("3"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert!(refused.header("ratelimit-reset").is_some());
    // Unknown routes count too, so probing for routes is limited like the rest.
    problem(
        &app.get("/api/nothing").await,
        429,
        "/problems/rate-limited",
    );

    // Each API key is a client of its own; an address cannot pose as another.
    let client = app.client.clone();
    let with = |key: &'static str| {
        let client = client.clone();
        async move {
            client
                .send(
                    Method::GET,
                    "/api/inventory/stock",
                    &[("x-api-key", key)],
                    "",
                )
                .await
                .status
        }
    };
    for _ in 0..3 {
        assert_eq!(with("key-one").await, 200);
    }
    assert_eq!(with("key-one").await, 429);
    assert_eq!(with("key-two").await, 200);
    let spoofed = app
        .send(
            Method::GET,
            "/api/inventory/stock",
            &[("x-forwarded-for", "203.0.113.9")],
            "",
        )
        .await;
    assert_eq!(
        spoofed.status, 429,
        "x-forwarded-for is not trusted by default"
    );

    for _ in 0..10 {
        let health = app.get("/api/health").await;
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["status"], "healthy");
        assert_eq!(health.header("ratelimit-limit"), None);
        assert!(health.header("x-request-id").is_some());
    }
    assert_eq!(app.get("/mesh/route-info").await.status, 200);

    // The counters are written after each answer: wait for the last ones (the route-info
    // request's too: 10 health, 10 stock, 1 unmatched, 1 route-info).
    let stats = app
        .wait_for(
            Duration::from_secs(10),
            async |client| client.get("/mesh/traffic-stats").await.json(),
            |stats| {
                stats["by_route"]["health"]["requests"] == 10
                    && stats["total_requests"]
                        .as_u64()
                        .is_some_and(|total| total >= 22)
            },
        )
        .await;
    assert_eq!(stats["rate_limited"], 4, "{stats}");
    assert_eq!(
        stats["by_route"]["inventory-stock"]["by_status"]["429"], 3,
        "{stats}"
    );
    assert_eq!(
        stats["by_route"]["inventory-stock"]["by_status"]["200"], 7,
        "{stats}"
    );
    assert_eq!(
        stats["by_route"]["unmatched"]["by_status"]["429"], 1,
        "{stats}"
    );
    assert!(stats["total_requests"].as_u64().unwrap() >= 22, "{stats}");
    assert!(stats["latency_ms"]["p50"].is_u64(), "{stats}");
    assert!(stats["latency_ms"]["p99"].is_u64(), "{stats}");
    assert!(stats["per_minute"][0]["requests"].is_u64(), "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_refuse_outsiders_and_admin_routes_need_the_token() {
    let app = TestApp::start_real_with(&[
        ("internal_token", "inner-secret"),
        ("admin_token", "adm-secret"),
    ])
    .await;
    for path in [
        "/internal/inventory/health",
        "/internal/inventory/stock",
        "/internal/inventory/configure",
        "/internal/inventory/reservations/o-1",
        "/internal/payment/health",
        "/internal/payment/payments/o-1",
        "/internal/payment/configure",
        "/internal/shipping/health",
        "/internal/shipping/shipments/o-1",
        "/internal/shipping/configure",
    ] {
        problem(&app.get(path).await, 401, "/problems/internal-token");
        let wrong = app
            .send(
                Method::POST,
                path,
                &[("x-orderly-internal-token", "guess")],
                "{}",
            )
            .await;
        problem(&wrong, 401, "/problems/internal-token");
    }
    // The gateway reaches them by chaining, without the token.
    assert_eq!(app.get("/api/inventory/stock").await.status, 200);

    let bearer = [("authorization", "Bearer adm-secret")];
    let no_token = app.get("/api/admin/stats").await;
    problem(&no_token, 401, "/problems/admin-token");
    let wrong = app
        .send(
            Method::GET,
            "/api/admin/stats",
            &[("authorization", "Bearer nope")],
            "",
        )
        .await;
    problem(&wrong, 401, "/problems/admin-token");
    let stats = app.send(Method::GET, "/api/admin/stats", &bearer, "").await;
    assert_eq!(stats.status, 200, "{}", stats.text());

    let configure = r#"{"mode": "down"}"#;
    let json = ("content-type", "application/json");
    let refused = app
        .send(Method::POST, "/api/payment/configure", &[json], configure)
        .await;
    problem(&refused, 401, "/problems/admin-token");
    let configured = app
        .send(
            Method::POST,
            "/api/payment/configure",
            &[json, bearer[0]],
            configure,
        )
        .await;
    assert_eq!(configured.status, 200, "{}", configured.text());
    assert_eq!(configured.json()["mode"], "down");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_allowed_headers_go_downstream() {
    let app = start_probed(&[]).await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let secrets = [
        ("x-orderly-internal-token", "inner-secret"),
        ("authorization", "Bearer user-secret"),
        ("x-api-key", "api-secret"),
        ("cookie", "session=1"),
        ("accept", "application/json"),
        ("idempotency-key", "key-1"),
        ("x-request-id", "trace-me-1"),
        ("traceparent", caller),
    ];
    // The probe answers 404 with the headers it received; the gateway relays it as it is.
    let seen = app
        .send(Method::GET, "/api/inventory/stock", &secrets, "")
        .await;
    assert_eq!(seen.status, 404, "{}", seen.text());
    let seen = seen.json();
    for gone in [
        "x-orderly-internal-token",
        "authorization",
        "x-api-key",
        "cookie",
    ] {
        assert!(seen.get(gone).is_none(), "{gone} was forwarded: {seen}");
    }
    assert_eq!(seen["accept"], "application/json");
    assert_eq!(seen["idempotency-key"], "key-1");
    assert_eq!(seen["x-request-id"], "trace-me-1");
    let sent = seen["traceparent"].as_str().expect("a traceparent");
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(!sent.contains("00f067aa0ba902b7"), "a child span: {sent}");
    assert_eq!(seen["spin-client-addr"], "0.0.0.0:0", "by service chaining");

    // Admin routes do pass the Authorization header on (loopback, no admin_token set).
    let admin = app
        .send(Method::GET, "/api/admin/headers", &secrets, "")
        .await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    let admin = admin.json();
    assert_eq!(admin["authorization"], "Bearer user-secret");
    assert!(admin.get("x-orderly-internal-token").is_none(), "{admin}");

    // One log line per request, after the answer: method, path, status, latency, request id,
    // and a hash of the client's key, never a secret.
    let log = app.dir.path().join(".spin/logs/gateway_stdout.txt");
    let lines = app
        .wait_for(
            Duration::from_secs(10),
            async |_| std::fs::read_to_string(&log).unwrap_or_default(),
            |text| text.lines().count() >= 2,
        )
        .await;
    let first = lines.lines().next().expect("a log line");
    assert!(
        first.starts_with("gateway GET /api/inventory/stock 404 ")
            && first.contains("ms request_id=trace-me-1 client=")
            && first
                .contains("route=inventory-stock traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{first}"
    );
    for secret in ["inner-secret", "user-secret", "api-secret", "session=1"] {
        assert!(!lines.contains(secret), "{secret} logged: {lines}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_services_are_503_and_slow_ones_504() {
    let app = start_probed(&[("gateway_timeout_ms", "300")]).await;
    let unreachable = app.get("/api/orders/o-1").await;
    let body = problem(&unreachable, 503, "/problems/upstream-unavailable");
    assert_eq!(body["service"], "orders");
    let slow = app.get("/api/admin/sleep?ms=3000").await;
    let body = problem(&slow, 504, "/problems/upstream-timeout");
    assert_eq!(body["service"], "admin");
    let quick = app.get("/api/admin/sleep?ms=10").await;
    assert_eq!(quick.json()["slept_ms"], 10);

    let status = app.get("/mesh/service-status").await;
    assert_eq!(status.status, 200, "{}", status.text());
    let status = status.json();
    assert_eq!(status["status"], "down", "{status}");
    assert_eq!(status["services"]["orders"]["status"], "down");
    assert!(
        status["services"]["orders"]["error"].is_string(),
        "{status}"
    );
    assert_eq!(status["services"]["admin"]["http_status"], 404, "{status}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_views_show_routes_limits_and_service_status() {
    let app = TestApp::start_real_with(&[]).await;
    let info = app.get("/mesh/route-info").await.json();
    assert_eq!(
        info["rate_limit"],
        json!({"limit": 100, "period_secs": 60, "burst": 100,
               "keyed_by": "x-api-key, else the client address (x-forwarded-for only from trusted_proxies)"})
    );
    assert_eq!(info["upstream_timeout_ms"], 5000);
    let routes = info["routes"].as_array().expect("routes");
    let orders = routes
        .iter()
        .find(|route| route["id"] == "orders")
        .expect("the orders route");
    assert_eq!(
        orders,
        &json!({"id": "orders", "route": "/api/orders/...", "methods": "GET, POST",
                "upstream": "http://orders.spin.internal/...", "access": "public", "rate_limited": true})
    );
    assert!(routes.iter().any(|route| route["access"] == "admin"));

    let status = app.get("/mesh/service-status").await.json();
    assert_eq!(status["status"], "healthy", "{status}");
    for service in [
        "orders",
        "inventory",
        "payment",
        "shipping",
        "admin",
        "notifications",
    ] {
        let entry = &status["services"][service];
        assert_eq!(entry["status"], "up", "{service}: {status}");
        assert_eq!(entry["http_status"], 200, "{service}: {status}");
        assert!(entry["latency_ms"].is_u64(), "{service}: {status}");
    }
    let stats = app.get("/mesh/traffic-stats").await.json();
    for field in [
        "window_minutes",
        "total_requests",
        "rate_limited",
        "server_errors",
    ] {
        assert!(stats[field].is_u64(), "{field}: {stats}");
    }
    assert!(stats["success_rate"].is_number(), "{stats}");
    assert!(
        stats["by_route"].is_object() && stats["by_status"].is_object(),
        "{stats}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sharing_a_redis_store_enforce_one_limit() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spin.toml"), manifest(PROBED)).unwrap();
    std::fs::write(
        dir.path().join("runtime-config.toml"),
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let flags = [
        "--runtime-config-file",
        "runtime-config.toml",
        "--variable",
        "rate_limit=4",
        "--variable",
        "rate_limit_burst=4",
    ];
    let hosts = [
        HostProcess::start(ORDERLY, dir.path(), "state-one", &flags).await,
        HostProcess::start(ORDERLY, dir.path(), "state-two", &flags).await,
    ];
    // A key of this run's own: a shared server keeps earlier runs' state.
    let key = unique("fleet-client");
    let mut statuses = Vec::new();
    for host in hosts.iter().cycle().take(8) {
        let reply = host
            .client
            .send(
                Method::GET,
                "/api/inventory/stock",
                &[("x-api-key", &key)],
                "",
            )
            .await;
        statuses.push(reply.status);
    }
    // The probe answers 404: allowed requests reach it, refused ones are 429.
    assert_eq!(statuses, [404, 404, 404, 404, 429, 429, 429, 429]);
}
