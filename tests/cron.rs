//! The cron trigger: runs on schedule, and skips (and logs) a run that would overlap the last.

use orderly_tests::{TestApp, logs, unique};
use std::time::{Duration, SystemTime};

fn cron_app(name: &str, component: &str, work_ms: u64) -> String {
    format!(
        r#"
spin_manifest_version = 2
[application]
name = "cron"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[[trigger.cron]]
component = "{component}"
cron_expression = "* * * * * *"
[component.probe]
source = "{{wasm}}/probe.wasm"
key_value_stores = ["default"]
[component.{component}]
source = "{{wasm}}/ticker.wasm"
key_value_stores = ["default"]
[component.{component}.variables]
name = "{name}"
work_ms = "{work_ms}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_component_runs_on_schedule() {
    let name = unique("every-second");
    let app = TestApp::start(&cron_app(&name, "ticker", 0)).await;
    let ticks = app
        .wait_for(
            Duration::from_secs(20),
            async |c| c.counter(&format!("{name}:ticks")).await,
            |n| *n >= 3,
        )
        .await;
    assert!(
        ticks >= 3,
        "three runs of a once-a-second schedule: {ticks}"
    );
    let stamp = app
        .get(&format!("/probe/kv/get?label=default&key={name}:timestamp"))
        .await
        .json();
    let stamp: u64 = stamp["value"].as_str().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(stamp) < 60,
        "the event carries the Unix time in seconds: {stamp} vs {now}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_run_is_skipped_and_logged_not_stacked() {
    let logs = logs::capture();
    let name = unique("slow");
    let component = format!("ticker-{}", name.replace('-', ""));
    // Each run takes 2.5 s on a once-a-second schedule: two of every three ticks overlap.
    let app = TestApp::start(&cron_app(&name, &component, 2500)).await;
    let ticks = app
        .wait_for(
            Duration::from_secs(30),
            async |c| c.counter(&format!("{name}:ticks")).await,
            |n| *n >= 2,
        )
        .await;
    assert!(ticks >= 2, "{ticks}");
    let max = app
        .get(&format!(
            "/probe/kv/get?label=default&key={name}:max-running"
        ))
        .await
        .json();
    assert_eq!(max["value"], "1", "never two runs at once");
    let skipped = logs.lines_with(&["cron run skipped", &component]);
    assert!(skipped.len() >= 2, "skips are logged: {skipped:?}");
    app.stop().await;
}
