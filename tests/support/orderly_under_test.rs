//! The `orderly` command, built into this package so tests can run it as a process
//! (`CARGO_BIN_EXE_orderly-under-test`).

fn main() -> std::process::ExitCode {
    orderly::run()
}
