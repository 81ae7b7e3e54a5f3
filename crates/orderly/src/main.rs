//! `orderly`: see the library for the command line.

// A fresh instance per request allocates and frees many small objects across threads;
// mimalloc handles that pattern markedly better than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orderly::run()
}
