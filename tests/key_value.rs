//! Key-value stores: both guest APIs over one backend, access by label, atomic compare-and-swap
//! and increment under concurrency (in one host and across two), persistence, runtime config.

use futures::future::join_all;
use orderly_tests::{TestApp, cas_and_increments_lose_nothing};
use std::sync::Arc;

const KV_APP: &str = r#"
spin_manifest_version = 2
[application]
name = "kv"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = "{wasm}/probe.wasm"
key_value_stores = ["default", "memory"]
"#;

const RUNTIME_CONFIG: &str = r#"
[key_value_store.memory]
type = "spin"
"#;

async fn start(dir: Arc<tempfile::TempDir>) -> TestApp {
    TestApp::start_with_runtime_config(dir, KV_APP, RUNTIME_CONFIG).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_see_the_same_data() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    assert_eq!(
        app.post("/probe/kv/set?label=default&key=a", "one")
            .await
            .json()["value"],
        "ok"
    );
    assert_eq!(
        app.get("/probe/wasi-kv/get?label=default&key=a")
            .await
            .json()["value"],
        "one"
    );
    assert_eq!(
        app.get("/probe/kv/exists?label=default&key=a").await.json()["value"],
        true
    );
    app.post("/probe/kv/set?label=default&key=b", "two").await;
    assert_eq!(
        app.get("/probe/wasi-kv/list?label=default").await.json()["value"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(
        app.get("/probe/kv/keys?label=default").await.json()["value"],
        serde_json::json!(["a", "b"])
    );
    app.post("/probe/kv/delete?label=default&key=a", "").await;
    assert_eq!(
        app.get("/probe/kv/get?label=default&key=a").await.json()["value"],
        serde_json::Value::Null
    );
    let batch = app.get("/probe/wasi-kv/batch?label=default").await.json();
    assert_eq!(
        batch["value"]["got"],
        serde_json::json!([["b1", "1"], ["b2", "2"], ["b3", null]])
    );
    assert_eq!(batch["value"]["b1_after_delete"], false);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_not_granted_are_denied_and_stores_are_separate() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    assert_eq!(
        app.get("/probe/kv/get?label=secret&key=a").await.json()["error"],
        "Error::AccessDenied"
    );
    assert_eq!(
        app.get("/probe/wasi-kv/get?label=secret&key=a")
            .await
            .json()["error"],
        "Error::AccessDenied"
    );
    app.post("/probe/kv/set?label=memory&key=a", "in memory")
        .await;
    assert_eq!(
        app.get("/probe/kv/get?label=memory&key=a").await.json()["value"],
        "in memory"
    );
    assert_eq!(
        app.get("/probe/kv/get?label=default&key=a").await.json()["value"],
        serde_json::Value::Null
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_never_loses_an_update() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    // A CAS on a missing key is an unconditional write in Spin: seed the counter first.
    app.post("/probe/kv/set?label=default&key=counter", "0")
        .await;
    let workers = (0..8).map(|_| {
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .post(
                    "/probe/wasi-kv/cas-add?label=default&key=counter&times=25",
                    "",
                )
                .await
        })
    });
    for reply in join_all(workers).await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200);
        assert!(
            reply.json()["value"]["conflicts"].is_u64(),
            "{}",
            reply.text()
        );
    }
    assert_eq!(
        app.get("/probe/kv/get?label=default&key=counter")
            .await
            .json()["value"],
        "200"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sharing_a_store_never_lose_an_update() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let first = start(Arc::clone(&dir)).await;
    let second = start(Arc::clone(&dir)).await;
    // 8 workers × 20 = 160 on the counter, and 40 hits.
    cas_and_increments_lose_nothing([&first, &second], "shared", "hits", 8, 20, 40).await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_refuses_values_that_are_not_counters() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    assert_eq!(
        app.post("/probe/wasi-kv/increment?label=default&key=n&delta=5", "")
            .await
            .json()["value"],
        5
    );
    assert_eq!(
        app.post("/probe/wasi-kv/increment?label=default&key=n&delta=-2", "")
            .await
            .json()["value"],
        3
    );
    app.post("/probe/kv/set?label=default&key=text", "12").await;
    let error = app
        .post("/probe/wasi-kv/increment?label=default&key=text", "")
        .await
        .json();
    assert!(
        error["error"].as_str().unwrap().contains("not a counter"),
        "{error}"
    );
    // The store keeps working after the refusal (real Spin would be poisoned until restart).
    assert_eq!(
        app.post("/probe/wasi-kv/increment?label=default&key=n", "")
            .await
            .json()["value"],
        4
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart_but_memory_stores_do_not() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(Arc::clone(&dir)).await;
    app.post("/probe/kv/set?label=default&key=kept", "yes")
        .await;
    app.post("/probe/kv/set?label=memory&key=kept", "yes").await;
    app.stop().await;
    assert!(dir.path().join(".spin/sqlite_key_value.db").is_file());
    assert!(
        !dir.path().join(".spin/sqlite_key_value.db-wal").exists(),
        "a clean stop checkpoints the WAL"
    );
    let app = start(Arc::clone(&dir)).await;
    assert_eq!(
        app.get("/probe/kv/get?label=default&key=kept").await.json()["value"],
        "yes"
    );
    assert_eq!(
        app.get("/probe/kv/get?label=memory&key=kept").await.json()["value"],
        serde_json::Value::Null
    );
    app.stop().await;
}
