//! The `orderly` command from the outside: exit codes and the messages a user sees.

use std::path::Path;
use std::process::{Command, Output};

fn orderly(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orderly"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("SPIN_VARIABLE_API_KEY");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("orderly runs")
}

fn failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn app_dir(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spin.toml"), manifest).unwrap();
    dir
}

const NEEDS_KEY: &str = r#"
spin_manifest_version = 2
[application]
name = "cli"
[variables]
api_key = { required = true }
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "missing.wasm"
[component.web.variables]
key = "{{ api_key }}"
[component.web.build]
command = "echo building"
"#;

#[test]
fn without_a_manifest_it_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let error = failure(&orderly(dir.path(), &["up"], &[]));
    assert!(error.contains("cannot read spin.toml"), "{error}");
    assert!(error.contains("pass -f"), "{error}");
}

#[test]
fn a_broken_manifest_is_explained_with_its_line() {
    let dir = app_dir(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[component.web]\nsorce = \"a.wasm\"\n",
    );
    let error = failure(&orderly(dir.path(), &["up"], &[]));
    assert!(error.contains("not a valid Spin manifest"), "{error}");
    assert!(error.contains("sorce"), "{error}");
    assert!(error.contains("line 5"), "{error}");
}

#[test]
fn required_variables_come_from_the_environment_or_the_command_line() {
    let dir = app_dir(NEEDS_KEY);
    let error = failure(&orderly(dir.path(), &["up"], &[]));
    assert!(error.contains("`api_key` is required"), "{error}");
    for (args, env) in [
        (vec!["up"], vec![("SPIN_VARIABLE_API_KEY", "k")]),
        (vec!["up", "--variable", "api_key=k"], vec![]),
    ] {
        let error = failure(&orderly(dir.path(), &args, &env));
        assert!(!error.contains("is required"), "{error}");
        assert!(
            error.contains("missing.wasm does not exist"),
            "the next check runs: {error}"
        );
        assert!(error.contains("orderly build"), "{error}");
    }
}

#[test]
fn build_runs_the_commands_and_reports_failures() {
    let dir = app_dir(NEEDS_KEY);
    let built = orderly(dir.path(), &["build"], &[]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(String::from_utf8_lossy(&built.stdout).contains("building"));
    assert!(String::from_utf8_lossy(&built.stdout).contains("Finished building 1 component(s)"));

    let failing = app_dir(&NEEDS_KEY.replace("echo building", "exit 3"));
    let error = failure(&orderly(failing.path(), &["build", "-f", "spin.toml"], &[]));
    assert!(error.contains("building `web`: `exit 3` failed"), "{error}");
}

#[test]
fn a_folder_may_be_given_instead_of_the_manifest() {
    let dir = app_dir(NEEDS_KEY);
    let elsewhere = tempfile::tempdir().unwrap();
    let error = failure(&orderly(
        elsewhere.path(),
        &["up", "-f", dir.path().to_str().unwrap()],
        &[],
    ));
    assert!(error.contains("`api_key` is required"), "{error}");
}

#[test]
fn a_bad_runtime_config_is_refused() {
    let dir = app_dir(NEEDS_KEY);
    std::fs::write(
        dir.path().join("rc.toml"),
        "[key_value_store.default]\ntype = \"cosmos\"\n",
    )
    .unwrap();
    let error = failure(&orderly(
        dir.path(),
        &[
            "up",
            "--variable",
            "api_key=k",
            "--runtime-config-file",
            "rc.toml",
        ],
        &[],
    ));
    assert!(error.contains("[key_value_store.default]"), "{error}");
    assert!(error.contains("cosmos"), "{error}");
}
