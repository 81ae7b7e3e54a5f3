//! `orderly`: see the library for the command line.

fn main() -> std::process::ExitCode {
    orderly::run()
}
