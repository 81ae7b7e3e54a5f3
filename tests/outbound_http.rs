//! Outbound HTTP: the allow-list, service chaining to (private) components, timeouts, and pooled
//! connections.

use orderly_tests::{TestApp, native_server};
use std::time::{Duration, Instant};

fn chaining_app(allowed: &str) -> String {
    format!(
        r#"
spin_manifest_version = 2
[application]
name = "outbound"
[variables]
upstream = {{ default = "127.0.0.1:1" }}
[[trigger.http]]
route = "/probe/..."
component = "probe"
[[trigger.http]]
route = {{ private = true }}
component = "hidden"
[component.probe]
source = "{{wasm}}/probe.wasm"
allowed_outbound_hosts = {allowed}
[component.hidden]
source = "{{wasm}}/probe.wasm"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_chaining_reaches_a_private_component_in_process() {
    let app = TestApp::start(&chaining_app(r#"["http://hidden.spin.internal"]"#)).await;
    let reply = app
        .get("/probe/fetch?url=http://hidden.spin.internal/headers%3Fa=1")
        .await
        .json();
    assert_eq!(reply["status"], 200, "{reply}");
    let seen: serde_json::Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["spin-client-addr"], "0.0.0.0:0");
    assert_eq!(seen["spin-matched-route"], "/...");
    assert_eq!(seen["spin-path-info"], "/headers");
    assert_eq!(seen["spin-component-route"], "");
    assert_eq!(seen["spin-full-url"], "http://localhost/headers?a=1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_allow_list_are_denied() {
    let server = native_server::serve("from native", Duration::ZERO).await;
    let app = TestApp::start(&chaining_app(r#"["http://hidden.spin.internal"]"#)).await;
    let external = app
        .get(&format!("/probe/fetch?url=http://{server}/"))
        .await
        .json();
    assert_eq!(
        external["error"], "ErrorCode::HttpRequestDenied",
        "{external}"
    );
    let other = app
        .get("/probe/fetch?url=http://probe.spin.internal/")
        .await
        .json();
    assert_eq!(other["error"], "ErrorCode::HttpRequestDenied", "{other}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_are_reached_and_may_use_variables() {
    let server = native_server::serve("from native", Duration::ZERO).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_in(
        dir,
        &chaining_app(r#"["http://{{ upstream }}", "http://*.spin.internal"]"#),
        |options| {
            options
                .variables
                .insert("upstream".into(), server.to_string());
        },
    )
    .await
    .unwrap();
    let reply = app
        .get(&format!("/probe/fetch?url=http://{server}/x"))
        .await
        .json();
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"], "from native");
    let missing = app
        .get("/probe/fetch?url=http://nobody.spin.internal/")
        .await
        .json();
    assert_eq!(
        missing["error"], "ErrorCode::DestinationNotFound",
        "{missing}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_timeouts_are_honoured() {
    let slow = native_server::serve("late", Duration::from_secs(3)).await;
    let allowed = format!(r#"["http://{slow}", "http://hidden.spin.internal"]"#);
    let app = TestApp::start(&chaining_app(&allowed)).await;
    for url in [
        format!("http://{slow}/"),
        "http://hidden.spin.internal/sleep%3Fms=3000".to_owned(),
    ] {
        let started = Instant::now();
        let reply = app
            .get(&format!("/probe/fetch?timeout_ms=200&url={url}"))
            .await
            .json();
        assert_eq!(
            reply["error"], "ErrorCode::ConnectionReadTimeout",
            "{url}: {reply}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url} took {:?}",
            started.elapsed()
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_are_reused_across_instances() {
    let server = native_server::CountingServer::start("pooled").await;
    let allowed = format!(r#"["http://{}"]"#, server.address);
    let app = TestApp::start(&chaining_app(&allowed)).await;
    // Every request to the app runs a fresh instance; they share the app's connections.
    for _ in 0..5 {
        let reply = app
            .get(&format!("/probe/fetch?url=http://{}/", server.address))
            .await
            .json();
        assert_eq!(reply["body"], "pooled", "{reply}");
    }
    assert_eq!(server.connections(), 1);
    app.stop().await;
}
