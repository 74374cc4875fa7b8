//! The `wedge` binary; see the crate docs of `wedge` and `wedge --help`.

fn main() -> std::process::ExitCode {
    wedge::cli::main()
}
