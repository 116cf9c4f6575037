//! The `weir` binary. The command line is the library's ([`weir::cli`]), so that everything it
//! uses can stay private to the crate.

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
