//! The `wedge` command line, linked from the same library as `host/`'s
//! binary, so that this crate's end-to-end tests get its path from cargo
//! (`CARGO_BIN_EXE_wedge-e2e`) and run the real program as a child process.

fn main() -> std::process::ExitCode {
    wedge::cli::main()
}
