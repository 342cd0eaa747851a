//! The `maskstore` command line: the storage chores of the deployment guide, run through
//! the application's own config.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
