//! Argument parsing, output and exit codes of the `maskstore` binary.

mod check;
mod config_show;
mod presign;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use maskstore::{Config, ConfigSource, Error};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other failure (backend error, data mismatch)
  2  usage or configuration error (bad flag, bad config value, invalid key)
  3  not found
  4  credentials rejected or permission denied
  5  backend unreachable";

/// maskstore: check and operate the mask storage the application's config selects.
#[derive(Debug, Parser)]
#[command(name = "maskstore", version, after_help = EXIT_CODES)]
struct Cli {
    /// Environment: reads config/<NAME>.toml (same as APP_ENV).
    #[arg(long, global = true, value_name = "NAME")]
    env: Option<String>,
    /// Read this config file instead of the config folder (APP_* variables still apply).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The config folder.
    #[arg(long, global = true, value_name = "DIR", default_value = "config")]
    config_dir: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the deployment guide's test procedure against the configured storage:
    /// list the prefix, put a probe object, read it back and compare, delete it.
    Check,
    /// Print a signed URL for one object (the URL on stdout, its expiry on stderr).
    Presign(presign::Args),
    /// Serve signed URLs of the local and memory providers over HTTP until Ctrl-C/SIGTERM.
    Serve,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every setting, secrets redacted, with where its value came from.
    Show,
}

/// A failure the binary reports: one sentence and an exit code.
pub(crate) struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NotFound { .. } => 3,
            Error::CredentialsRejected { .. } | Error::PermissionDenied { .. } => 4,
            Error::Unreachable { .. } => 5,
            Error::InvalidKey { .. }
            | Error::InvalidMetadata { .. }
            | Error::InvalidTtl { .. }
            | Error::Config { .. } => 2,
            _ => 1,
        };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maskstore: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("maskstore: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let config = load(&cli)?;
    match cli.command {
        Command::Config {
            command: ConfigCommand::Show,
        } => config_show::run(&config, cli.json),
        Command::Check => check::run(&config, cli.json).await,
        Command::Presign(args) => presign::run(&config, &args, cli.json).await,
        Command::Serve => serve::run(&config).await,
    }
}

fn load(cli: &Cli) -> Result<Config, Failure> {
    let source = ConfigSource {
        dir: Some(cli.config_dir.clone()),
        file: cli.config.clone(),
        environment: cli.env.clone(),
    };
    Ok(maskstore::load_config(&source)?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MASKSTORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// Prints a JSON value on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values always serialize")
    );
}
