//! Variables: component templates over application variables, overrides, and the errors a
//! guest sees for names it may not read.

use orderly_tests::{TestApp, start_error};
use std::sync::Arc;

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "vars"
[variables]
region = { default = "eu" }
api_key = { required = true, secret = true }
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = "{wasm}/probe.wasm"
[component.probe.variables]
endpoint = "https://{{ region }}.example.com/{{ api_key }}"
plain = "literal"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_read_their_variables() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_in(dir, APP, |options| {
        options.variables.insert("api_key".into(), "k3y".into());
    })
    .await
    .unwrap();
    let value = |name: &str| {
        let path = format!("/probe/variables?name={name}");
        let client = app.client.clone();
        async move { client.get(&path).await.json() }
    };
    assert_eq!(
        value("endpoint").await["value"],
        "https://eu.example.com/k3y"
    );
    assert_eq!(value("plain").await["value"], "literal");
    let undefined = value("region").await["error"].as_str().unwrap().to_owned();
    assert!(
        undefined.starts_with("Error::Undefined"),
        "app variables are not component variables: {undefined}"
    );
    let invalid = value("Not-Valid").await["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(invalid.starts_with("Error::InvalidName"), "{invalid}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_variable_stops_start_up() {
    let error = start_error(APP).await;
    assert!(error.contains("`api_key` is required"), "{error}");
    assert!(error.contains("SPIN_VARIABLE_API_KEY"), "{error}");
    assert!(error.contains("--variable api_key="), "{error}");
}
