//! The HTTP trigger: Spin routing and headers, private routes, errors, fresh instances, output
//! logs and graceful shutdown, driven from outside with the probe component.

use http::Method;
use orderly_tests::TestApp;
use std::time::{Duration, Instant};

const ROUTES: &str = r#"
spin_manifest_version = 2
[application]
name = "routing"
version = "1.2.3"

[[trigger.http]]
route = "/..."
component = "fallback"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[[trigger.http]]
route = "/users/:user_id"
component = "by-id"
[[trigger.http]]
route = "/users/me"
component = "me"
[[trigger.http]]
route = { private = true }
component = "hidden"

[component.fallback]
source = "{wasm}/probe.wasm"
[component.probe]
source = "{wasm}/probe.wasm"
environment = { GREETING = "hello" }
[component.by-id]
source = "{wasm}/probe.wasm"
[component.me]
source = "{wasm}/probe.wasm"
[component.hidden]
source = "{wasm}/probe.wasm"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_specific_route_wins() {
    let app = TestApp::start(ROUTES).await;
    let matched = |reply: orderly_tests::Reply| {
        reply.json()["spin-matched-route"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(matched(app.get("/users/me").await), "/users/me");
    assert_eq!(matched(app.get("/users/42").await), "/users/:user_id");
    assert_eq!(matched(app.get("/users/42/").await), "/users/:user_id");
    assert_eq!(matched(app.get("/probe/headers").await), "/probe/...");
    assert_eq!(matched(app.get("/anything/else").await), "/...");
    assert_eq!(matched(app.get("/users/42/orders").await), "/...");
    let capture = app.get("/users/42").await.json();
    assert_eq!(capture["spin-path-match-user-id"], "42");
    assert_eq!(capture["spin-path-info"], "");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_see_spins_request_headers() {
    let app = TestApp::start(ROUTES).await;
    let reply = app
        .send(
            Method::GET,
            "/probe/headers?x=1&y=2",
            &[("x-custom", "kept"), ("spin-client-addr", "6.6.6.6:6")],
            "",
        )
        .await;
    assert_eq!(reply.status, 200);
    let headers = reply.json();
    let authority = app.base.trim_start_matches("http://");
    assert_eq!(
        headers["spin-full-url"],
        format!("http://{authority}/probe/headers?x=1&y=2")
    );
    assert_eq!(headers["spin-path-info"], "/headers");
    assert_eq!(headers["spin-matched-route"], "/probe/...");
    assert_eq!(headers["spin-raw-component-route"], "/probe/...");
    assert_eq!(headers["spin-component-route"], "/probe");
    assert_eq!(headers["spin-base-path"], "/");
    assert_eq!(headers["x-custom"], "kept");
    let client = headers["spin-client-addr"].as_str().unwrap();
    assert!(
        client.starts_with("127.0.0.1:"),
        "a client cannot spoof its address: {client}"
    );
    assert!(
        headers.get("host").is_none(),
        "Spin hides the host header: {headers}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_components_and_unknown_paths_are_not_reachable() {
    let app = TestApp::start(
        r#"
spin_manifest_version = 2
[application]
name = "private"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[[trigger.http]]
route = { private = true }
component = "hidden"
[component.probe]
source = "{wasm}/probe.wasm"
[component.hidden]
source = "{wasm}/probe.wasm"
"#,
    )
    .await;
    for path in ["/hidden", "/hidden/headers", "/", "/probex"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.json()["status"], 404);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_spin_endpoints_answer() {
    let app = TestApp::start(ROUTES).await;
    let health = app.get("/.well-known/spin/health").await;
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));
    let info = app.get("/.well-known/spin/info").await.json();
    assert_eq!(info["name"], "routing");
    assert_eq!(info["version"], "1.2.3");
    assert_eq!(app.get("/.well-known/spin/other").await.status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_component_gets_a_500_problem_and_the_host_carries_on() {
    let app = TestApp::start(ROUTES).await;
    let reply = app
        .send(
            Method::GET,
            "/probe/trap",
            &[("x-request-id", "trace-me")],
            "",
        )
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(reply.header("x-request-id"), Some("trace-me"));
    assert_eq!(reply.json()["request_id"], "trace-me");
    assert_eq!(app.get("/probe/echo").await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_runs_in_a_fresh_instance() {
    let app = TestApp::start(ROUTES).await;
    for _ in 0..3 {
        assert_eq!(app.get("/probe/count").await.json(), 1);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_body_environment_and_request_ids_reach_the_component() {
    let app = TestApp::start(ROUTES).await;
    let echo = app.send(Method::PUT, "/probe/echo", &[], "payload").await;
    assert_eq!(echo.json()["method"], "PUT");
    assert_eq!(echo.json()["body"], "payload");
    assert!(echo.header("x-request-id").is_some_and(|id| !id.is_empty()));
    assert_eq!(app.get("/probe/env?name=GREETING").await.json(), "hello");
    assert_eq!(
        app.get("/users/me/env").await.status,
        404,
        "/users/me is exact"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_output_is_logged_per_component() {
    let app = TestApp::start(ROUTES).await;
    assert_eq!(app.get("/probe/print?text=hello%20logs").await.status, 200);
    let logs = app.dir.path().join(".spin/logs");
    let stdout = std::fs::read_to_string(logs.join("probe_stdout.txt")).unwrap();
    let stderr = std::fs::read_to_string(logs.join("probe_stderr.txt")).unwrap();
    assert!(stdout.contains("hello logs\n"), "{stdout}");
    assert!(stderr.contains("err: hello logs\n"), "{stderr}");
    app.stop().await;
}

/// Waits until the probe has printed `line` at least `times` times (its stdout log file).
async fn printed(app: &TestApp, line: &str, times: usize) {
    let log = app.dir.path().join(".spin/logs/probe_stdout.txt");
    let seen = app
        .wait_for(
            Duration::from_secs(30),
            async |_| {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .matches(line)
                    .count()
            },
            |count| *count >= times,
        )
        .await;
    assert!(seen >= times, "the probe printed {line:?} {seen} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = TestApp::start(ROUTES).await;
    let client = app.client.clone();
    let slow = tokio::spawn(async move { client.get("/probe/sleep?ms=700").await });
    printed(&app, "sleep started", 1).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    app.stop().await;
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["slept_ms"],
        700,
        "the request in flight completed"
    );
    let refused = tokio::net::TcpStream::connect(&address).await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_components_do_not_starve_other_requests() {
    let app = TestApp::start(ROUTES).await;
    // One busy guest per worker thread: without preemption nothing else could run.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let client = app.client.clone();
            tokio::spawn(async move {
                client.get("/probe/busy?ms=1500").await;
                Instant::now()
            })
        })
        .collect();
    printed(&app, "busy started", 2).await;
    let quick = app.get("/probe/echo").await;
    let answered = Instant::now();
    assert_eq!(quick.status, 200);
    for task in busy {
        assert!(
            task.await.unwrap() > answered,
            "the quick request waited for a busy one to finish"
        );
    }
    app.stop().await;
}
