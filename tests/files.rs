//! `files` mounts: a component reads the folders mounted for it, read-only, and nothing else;
//! a mount whose source is not a folder stops start-up.

use orderly_tests::{TestApp, start_error};
use std::sync::Arc;

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "files"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = "{wasm}/probe.wasm"
files = [{ source = "assets", destination = "/assets" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_reads_the_mounted_folder_and_nothing_else() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/hello.txt"), "hello").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let app = TestApp::start_in(Arc::clone(&dir), APP, |_| {})
        .await
        .unwrap();
    for _ in 0..3 {
        let read = app.get("/probe/file?path=/assets/hello.txt").await.json();
        assert_eq!(read["content"], "hello", "{read}");
    }
    for outside in ["/assets/../secret.txt", "/secret.txt", "/etc/hostname"] {
        let read = app.get(&format!("/probe/file?path={outside}")).await.json();
        assert!(read["error"].is_string(), "{outside}: {read}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_that_is_not_a_folder_stops_start_up() {
    let error = start_error(APP).await;
    assert!(error.contains("[component.probe] files"), "{error}");
    assert!(error.contains("is not a folder"), "{error}");
}
