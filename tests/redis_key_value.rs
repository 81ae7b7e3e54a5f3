//! Redis-backed key-value stores (`type = "redis"`): the same guest APIs, and compare-and-swap
//! that never loses an update when two host processes share the store.

use orderly_tests::process::HostProcess;
use orderly_tests::redis_server::redis;
use orderly_tests::{TestApp, cas_and_increments_lose_nothing, manifest, unique};
use std::sync::Arc;

const ORDERLY: &str = env!("CARGO_BIN_EXE_orderly-under-test");

const KV_APP: &str = r#"
spin_manifest_version = 2
[application]
name = "redis-kv"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = "{wasm}/probe.wasm"
key_value_stores = ["default"]
"#;

fn runtime_config(url: &str) -> String {
    format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_work_on_a_redis_store() {
    let Some(redis) = redis() else { return };
    let app = TestApp::start_with_runtime_config(
        Arc::new(tempfile::tempdir().unwrap()),
        KV_APP,
        &runtime_config(&redis.url()),
    )
    .await;
    let (a, n) = (unique("a"), unique("n"));
    app.post(&format!("/probe/kv/set?label=default&key={a}"), "one")
        .await;
    assert_eq!(
        app.get(&format!("/probe/wasi-kv/get?label=default&key={a}"))
            .await
            .json()["value"],
        "one"
    );
    assert_eq!(
        app.get(&format!("/probe/kv/exists?label=default&key={a}"))
            .await
            .json()["value"],
        true
    );
    let keys = app.get("/probe/kv/keys?label=default").await.json();
    assert!(
        keys["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == &serde_json::json!(a)),
        "{keys}"
    );
    assert_eq!(
        app.post(
            &format!("/probe/wasi-kv/increment?label=default&key={n}&delta=5"),
            ""
        )
        .await
        .json()["value"],
        5
    );
    assert_eq!(
        app.post(
            &format!("/probe/wasi-kv/increment?label=default&key={n}&delta=2"),
            ""
        )
        .await
        .json()["value"],
        7
    );
    let refused = app
        .post(
            &format!("/probe/wasi-kv/increment?label=default&key={a}"),
            "",
        )
        .await
        .json();
    assert!(
        refused["error"].as_str().unwrap().contains("not a counter"),
        "{refused}"
    );
    app.post(&format!("/probe/kv/delete?label=default&key={a}"), "")
        .await;
    assert_eq!(
        app.get(&format!("/probe/kv/get?label=default&key={a}"))
            .await
            .json()["value"],
        serde_json::Value::Null
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_processes_sharing_a_redis_store_never_lose_an_update() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spin.toml"), manifest(KV_APP)).unwrap();
    std::fs::write(
        dir.path().join("runtime-config.toml"),
        runtime_config(&redis.url()),
    )
    .unwrap();
    let flags = ["--runtime-config-file", "runtime-config.toml"];
    let hosts = [
        HostProcess::start(ORDERLY, dir.path(), "state-one", &flags).await,
        HostProcess::start(ORDERLY, dir.path(), "state-two", &flags).await,
    ];
    // 8 workers × 25 = 200 on the counter, and 50 hits.
    cas_and_increments_lose_nothing(
        [&hosts[0].client, &hosts[1].client],
        &unique("counter"),
        &unique("hits"),
        8,
        25,
        50,
    )
    .await;
}
