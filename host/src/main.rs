//! The `toolhost` binary: parses the command line, runs one command, and maps
//! the outcome to an exit code (0 ok, 1 the call failed, 2 usage or config).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
