//! The `apisix-canary` binary: parse the command line, run it.

/// mimalloc rather than glibc's malloc: a review allocates and frees on whichever tokio
/// worker runs it, and glibc's arenas spent a fifth of `serve`'s CPU under load
/// (BENCHMARKS.md, "Webhook under load").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    apisix_canary::cli::main()
}
