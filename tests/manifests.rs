//! Start-up errors: every broken manifest or runtime config names what, where and how to fix.

use orderly_tests::{TestApp, real_manifest, start_error};
use std::sync::Arc;

fn app_with(component: &str, extra: &str) -> String {
    format!(
        r#"
spin_manifest_version = 2
[application]
name = "broken"
[[trigger.http]]
route = "/probe/..."
component = "probe"
{extra}
[component.probe]
{component}
"#
    )
}

#[tokio::test]
async fn a_missing_wasm_file_says_how_to_build_it() {
    let error = start_error(&app_with(
        "source = \"target/nothing.wasm\"\n[component.probe.build]\ncommand = \"true\"",
        "",
    ))
    .await;
    assert!(error.contains("[component.probe] source"), "{error}");
    assert!(error.contains("nothing.wasm does not exist"), "{error}");
    assert!(error.contains("orderly build"), "{error}");
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, "not wasm").unwrap();
    let error = start_error(&app_with(
        &format!("source = {:?}", fake.display().to_string()),
        "",
    ))
    .await;
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );
    assert!(error.contains("wasm32-wasip2"), "{error}");
}

#[tokio::test]
async fn unconfigured_store_and_database_labels_are_named() {
    let error = start_error(&app_with(
        "source = \"{wasm}/probe.wasm\"\nkey_value_stores = [\"cache\"]\nsqlite_databases = [\"ledger\"]",
        "",
    ))
    .await;
    assert!(
        error.contains("unknown key-value store label `cache` (used by probe)"),
        "{error}"
    );
    assert!(error.contains("[key_value_store.cache]"), "{error}");
    assert!(
        error.contains("unknown SQLite database label `ledger`"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_routes_and_outbound_hosts_are_explained() {
    let error = start_error(&format!(
        "{}\n[[trigger.http]]\nroute = \"/a/.../b\"\ncomponent = \"probe\"",
        app_with(
            "source = \"{wasm}/probe.wasm\"\nallowed_outbound_hosts = [\"example.com\"]",
            ""
        )
    ))
    .await;
    assert!(
        error.contains("a wildcard may only end the route"),
        "{error}"
    );
    assert!(error.contains("does not contain a scheme"), "{error}");
}

#[tokio::test]
async fn syntax_and_schema_errors_point_at_the_line() {
    let error = start_error(&app_with(
        "source = \"{wasm}/probe.wasm\"\nkey_value_store = [\"default\"]",
        "",
    ))
    .await;
    assert!(error.contains("not a valid Spin manifest"), "{error}");
    assert!(error.contains("key_value_store"), "{error}");
    assert!(error.contains("line"), "{error}");
    let error = start_error("spin_manifest_version = 2\n[application\nname = \"x\"").await;
    assert!(error.contains("not a valid Spin manifest"), "{error}");
}

#[tokio::test]
async fn unsupported_runtime_config_is_refused() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(&config, "[llm_compute]\ntype = \"spin\"\n").unwrap();
    let result = TestApp::start_in(
        dir,
        &app_with("source = \"{wasm}/probe.wasm\"", ""),
        |options| options.runtime_config = Some(config),
    )
    .await;
    let error = result.err().expect("refused").to_string();
    assert!(error.contains("`llm_compute` is not supported"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_manifest_and_runtime_config_load() {
    let runtime_config =
        std::fs::read_to_string(orderly_tests::repo_root().join("runtime-config.toml")).unwrap();
    let app = TestApp::start_with_runtime_config(
        Arc::new(tempfile::tempdir().unwrap()),
        &real_manifest(),
        &runtime_config,
    )
    .await;
    assert_eq!(app.get("/external/health").await.status, 200);
    assert_eq!(app.get("/orders").await.status, 200);
    let dir = std::sync::Arc::clone(&app.dir);
    app.stop().await;
    assert!(dir.path().join(".spin/sqlite_key_value.db").is_file());
    assert!(dir.path().join(".spin/sqlite_db.db").is_file());
}
