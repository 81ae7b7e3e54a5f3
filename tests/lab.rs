//! The lab against the real app in the host: `orderly lab load` for a couple of seconds, then
//! `orderly lab verify` on its run folder, as a user runs them (the commands parsed from their
//! arguments). The history must hold every attempt, and the verification must find every
//! acknowledged order final, none duplicated, and the saga's invariants intact.

use clap::Parser;
use orderly_lab::LabCommand;
use orderly_tests::{TestApp, services_at};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `orderly lab` as the command line parses it.
#[derive(Parser)]
struct Lab {
    #[command(subcommand)]
    command: LabCommand,
}

/// Runs `orderly lab <args>` on a thread of its own (the lab makes its own runtime).
async fn lab(args: Vec<String>) -> anyhow::Result<()> {
    let command = Lab::try_parse_from(std::iter::once("lab".to_owned()).chain(args))?.command;
    tokio::task::spawn_blocking(move || orderly_lab::run(command)).await?
}

/// The one run folder under `out/runs`.
fn run_folder(out: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .expect("a runs folder")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().expect("one run")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("a report")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_verifies_clean_against_the_real_app() {
    let app = TestApp::start_real_in(Arc::new(tempfile::tempdir().unwrap()), |options| {
        let origin = options.variables["app_url"].clone();
        services_at(options, &origin);
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let out_path = out.path().display().to_string();
    let load = [
        "load",
        "--base-url",
        &app.base,
        "--out",
        &out_path,
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--warmup-seconds",
        "0",
    ];
    lab(load.iter().map(|arg| (*arg).to_owned()).collect())
        .await
        .expect("the load runs");
    let folder = run_folder(out.path());
    let report = json(&folder.join("report.json"));
    let acknowledged = report["findings"]["figures"]["acknowledged"]
        .as_f64()
        .expect("a count");
    assert!(acknowledged >= 1.0, "{report}");
    let history = std::fs::read_to_string(folder.join("history.jsonl")).unwrap();
    assert_eq!(
        history.lines().count() as f64,
        acknowledged,
        "no warm-up and no errors: one attempt per acknowledged order"
    );

    let verify = [
        "verify",
        &folder.display().to_string(),
        "--base-url",
        &app.base,
    ];
    lab(verify.iter().map(|arg| (*arg).to_owned()).collect())
        .await
        .expect("the run verifies");
    let verdict = json(&folder.join("verify/report.json"));
    assert_eq!(verdict["verdict"], "pass", "{verdict}");
    let figures = &verdict["findings"]["figures"];
    assert_eq!(figures["ok"], acknowledged, "{verdict}");
    assert_eq!(figures["lost"], 0.0, "{verdict}");
    assert_eq!(figures["duplicated"], 0.0, "{verdict}");
    assert!(
        std::fs::read_to_string(folder.join("verify/report.md"))
            .unwrap()
            .contains("## Invariants")
    );
    app.stop().await;
}
