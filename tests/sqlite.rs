//! SQLite databases: statements and results, isolation of abandoned transactions and of other
//! connection state between guests, no access to other files, concurrent writers,
//! persistence, labels and access control.

use futures::future::join_all;
use orderly_tests::{HttpClient, TestApp};
use serde_json::json;
use std::sync::Arc;

const SQL_APP: &str = r#"
spin_manifest_version = 2
[application]
name = "sql"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = "{wasm}/probe.wasm"
sqlite_databases = ["default", "audit"]
"#;

async fn start(dir: Arc<tempfile::TempDir>) -> TestApp {
    let audit = dir.path().join("audit.db");
    let config = format!(
        "[sqlite_database.audit]\ntype = \"spin\"\npath = {:?}\n",
        audit.display().to_string()
    );
    TestApp::start_with_runtime_config(dir, SQL_APP, &config).await
}

async fn sql(
    client: &HttpClient,
    db: &str,
    statement: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let body = json!({ "statement": statement, "params": params }).to_string();
    client
        .post(&format!("/probe/sql?db={db}"), &body)
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_round_trip_every_value_type() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    sql(
        &app,
        "default",
        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, n)",
        json!([]),
    )
    .await;
    let inserted = sql(
        &app,
        "default",
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        json!([7, 1.5, "text", null]),
    )
    .await;
    assert_eq!(inserted["changes"], 1, "{inserted}");
    assert_eq!(inserted["last_insert_rowid"], 1);
    let selected = sql(&app, "default", "SELECT i, r, s, n FROM t", json!([])).await;
    assert_eq!(selected["columns"], json!(["i", "r", "s", "n"]));
    assert_eq!(selected["rows"], json!([[7, 1.5, "text", null]]));
    let error = sql(&app, "default", "SELECT * FROM missing", json!([])).await;
    assert!(
        error["error"].as_str().unwrap().contains("no such table"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_separate_databases_and_others_are_denied() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(Arc::clone(&dir)).await;
    sql(&app, "audit", "CREATE TABLE audit (x)", json!([])).await;
    let in_default = sql(&app, "default", "SELECT * FROM audit", json!([])).await;
    assert!(
        in_default["error"]
            .as_str()
            .unwrap()
            .contains("no such table"),
        "{in_default}"
    );
    assert!(dir.path().join("audit.db").is_file());
    assert_eq!(
        sql(&app, "other", "SELECT 1", json!([])).await["error"],
        "Error::AccessDenied"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_transaction_is_rolled_back() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    sql(&app, "default", "CREATE TABLE t (x)", json!([])).await;
    assert_eq!(
        app.post("/probe/sql/abandon", "INSERT INTO t VALUES (1)")
            .await
            .json()["ran"],
        true
    );
    assert_eq!(
        sql(&app, "default", "SELECT count(*) FROM t", json!([])).await["rows"],
        json!([[0]])
    );
    let written = sql(&app, "default", "INSERT INTO t VALUES (2)", json!([])).await;
    assert_eq!(
        written["changes"], 1,
        "the database is not left locked: {written}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_guest_sets_on_its_connection_does_not_reach_the_next() {
    let app = start(Arc::new(tempfile::tempdir().unwrap())).await;
    let run = |statement: &'static str| sql(&app, "default", statement, json!([]));
    run("CREATE TABLE t (x)").await;

    run("PRAGMA foreign_keys = OFF").await;
    assert_eq!(run("PRAGMA foreign_keys").await["rows"], json!([[1]]));

    run("CREATE TEMP TABLE scratch (y)").await;
    let scratch = run("SELECT * FROM scratch").await;
    assert!(
        scratch["error"].as_str().unwrap().contains("no such table"),
        "{scratch}"
    );

    let inserted = run("INSERT INTO t VALUES (1)").await;
    assert_eq!(
        (&inserted["changes"], &inserted["last_insert_rowid"]),
        (&json!(1), &json!(1))
    );
    let selected = run("SELECT count(*) FROM t").await;
    assert_eq!(
        (&selected["changes"], &selected["last_insert_rowid"]),
        (&json!(0), &json!(0)),
        "a later guest starts as on a fresh connection: {selected}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_attach_or_write_other_files() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(Arc::clone(&dir)).await;
    let outside = dir.path().join("outside.db");
    for statement in [
        format!("ATTACH '{}' AS outside", outside.display()),
        format!("VACUUM INTO '{}'", outside.display()),
    ] {
        let refused = sql(&app, "default", &statement, json!([])).await;
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("too many attached databases"),
            "{statement}: {refused}"
        );
    }
    assert!(!outside.exists());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_land_and_survive_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(Arc::clone(&dir)).await;
    sql(&app, "default", "CREATE TABLE t (x INTEGER)", json!([])).await;
    let writers = (0..50).map(|i| {
        let client = app.client.clone();
        tokio::spawn(async move {
            sql(&client, "default", "INSERT INTO t VALUES (?)", json!([i])).await
        })
    });
    for written in join_all(writers).await {
        assert_eq!(written.unwrap()["changes"], 1);
    }
    app.stop().await;
    assert!(
        !dir.path().join(".spin/sqlite_db.db-wal").exists(),
        "a clean stop checkpoints the WAL"
    );
    let app = start(dir).await;
    assert_eq!(
        sql(&app, "default", "SELECT count(*), sum(x) FROM t", json!([])).await["rows"],
        json!([[50, 1225]])
    );
    app.stop().await;
}
