//! The `apisix-canary` binary: parse the command line, run it.

fn main() -> std::process::ExitCode {
    apisix_canary::cli::main()
}
