//! Builds the components under test (the real ones and the test fixtures) for wasm32-wasip2,
//! with the same release profile `spin build` uses, into `target/test-components`. A separate
//! target folder keeps this nested cargo from waiting on the lock the outer one holds.

use std::path::PathBuf;
use std::process::Command;

const PACKAGES: [&str; 20] = [
    "orders",
    "external-sim",
    "validator",
    "validation-sweeper",
    "fulfilment-worker",
    "fulfilment-sweeper",
    "notification",
    "notification-sweeper",
    "notifications",
    "monitor",
    "monitor-refresh",
    "admin",
    "medisupply",
    "inventory",
    "payment",
    "shipping",
    "gateway",
    "probe",
    "subscriber",
    "ticker",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("test-components");
    for watched in [
        "components",
        "tests/components",
        "crates/orders-core",
        "crates/simulator-core",
        "crates/faults",
        "crates/catalog",
        "crates/guest-kit-core",
        "crates/ledger",
        "crates/pipeline",
        "crates/fulfilment",
        "crates/notification-core",
        "crates/saga",
        "crates/checkout",
        "crates/resilience",
        "crates/monitor-core",
        "crates/problem",
        "crates/inventory-core",
        "crates/payment-core",
        "crates/shipping-core",
        "crates/sql",
        "crates/gateway-core",
        "crates/trace-context",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target);
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    // Flags meant for the outer (native) build must not leak into the wasm build.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .expect("cannot run cargo to build the test components");
    assert!(
        status.success(),
        "building the test components failed; run `cargo build --release --target wasm32-wasip2 -p {}` to see why (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)",
        PACKAGES.join(" -p ")
    );
    let wasm_dir = target.join("wasm32-wasip2").join("release");
    println!(
        "cargo:rustc-env=ORDERLY_TEST_WASM_DIR={}",
        wasm_dir.display()
    );
    println!(
        "cargo:rustc-env=ORDERLY_TEST_CACHE_DIR={}",
        target.join("compiled").display()
    );
    println!("cargo:rustc-env=ORDERLY_REPO_ROOT={}", root.display());
}
