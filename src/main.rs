//! The `dryci` command line; all logic lives in `dryci::cli`.

fn main() -> std::process::ExitCode {
    dryci::cli::main(std::env::args_os())
}
