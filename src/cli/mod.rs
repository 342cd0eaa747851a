//! Argument parsing and dispatch of the `maskstore` binary; what it prints and its exit
//! codes are in `output`.

mod check;
mod config_show;
mod cors_check;
mod download;
mod objects;
mod output;
mod policy;
mod presign;
mod serve;
mod sync;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use maskstore::{Config, ConfigSource};

use output::{EXIT_CODES, Failure};

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
    /// Read APP_* settings from this .env file (same as APP_ENV_FILE; default: ./.env when
    /// there is one). Real environment variables win over it; it wins over config files.
    #[arg(long, global = true, value_name = "FILE")]
    env_file: Option<PathBuf>,
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
    /// Run the deployment guide's test procedure against the configured storage (list the
    /// prefix, put a probe object, read it back and compare, delete it) and diagnose what
    /// fails.
    Check {
        /// Also send a CORS preflight for a browser upload from this origin.
        #[arg(long, value_name = "ORIGIN")]
        cors: Option<String>,
    },
    /// List the keys under PREFIX (default: the configured prefix), streaming.
    Ls {
        /// A full key prefix, such as mask/1.2.840.1/.
        prefix: Option<String>,
        /// Also show size, last modified, etag and content type (a HEAD per object).
        #[arg(long, short)]
        long: bool,
    },
    /// Show what is stored about KEY: size, etag, last modified, content type, metadata.
    Stat {
        /// The full object key (mask/…).
        key: String,
    },
    /// Upload FILE (or - for stdin) to KEY, streaming.
    Put {
        /// The file to upload, or - for stdin.
        source: String,
        /// The full object key (mask/…).
        key: String,
        /// The content type (default: from the mask extension, else application/octet-stream).
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// User metadata to store with it (repeatable): lowercase name, printable ASCII value
        /// without leading or trailing spaces.
        #[arg(long = "meta", value_name = "NAME=VALUE")]
        meta: Vec<String>,
    },
    /// Download KEY to FILE (default: its file name, here), or - for stdout.
    Get {
        /// The full object key (mask/…).
        key: String,
        /// Where to write it, or - for stdout.
        target: Option<String>,
        /// Do not wait for the file to reach the disk before linking it into place: as
        /// fast as cp, but a power loss soon after can leave it empty or cut short (a
        /// failed or killed download still leaves nothing).
        #[arg(long)]
        no_sync: bool,
        /// Do not verify the stored checksum (forensics on an object reported corrupt).
        #[arg(long)]
        no_verify: bool,
    },
    /// Re-read every object under --prefix (default: the configured prefix) and check it
    /// against its stored checksum (maskstore's own, else the provider's: S3 flexible
    /// checksums, GCS crc32c/md5, Azure Content-MD5); lists corrupt and unverified keys.
    /// Exits 6 when any is corrupt (or, with --require-checksum, unverified).
    Verify {
        /// A full key prefix, such as mask/1.2.840.1/.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Objects read at once.
        #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// Also fail (exit 6) on objects no checksum can verify (none stored, or only a
        /// composite one): for a nightly scrub; config object_storage.require_checksum.
        #[arg(long)]
        require_checksum: bool,
    },
    /// Delete KEYs, or everything under --prefix (listed first; asks unless --yes).
    Rm {
        /// Full object keys.
        #[arg(required_unless_present = "prefix")]
        keys: Vec<String>,
        /// Delete every object under this full key prefix.
        #[arg(long, value_name = "PREFIX", conflicts_with = "keys")]
        prefix: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Copy an object within the store.
    Cp {
        /// Source key.
        from: String,
        /// Destination key.
        to: String,
    },
    /// Move an object within the store.
    Mv {
        /// Source key.
        from: String,
        /// Destination key.
        to: String,
    },
    /// Copy every object under a prefix from one configured store to another, skipping
    /// what is already there.
    Sync(sync::Args),
    /// Print the IAM policy, CORS rules, lifecycle rule or monitoring documents (S3 request metrics, CloudWatch alarms, Prometheus rules) an operator applies with the provider's CLI (aws, az or gcloud) or Prometheus.
    Policy {
        /// Which document.
        #[arg(value_enum)]
        document: policy::Document,
    },
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
            failure.report();
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Each command loads only the configs it uses: sync reads its --from and --to alone,
    // so a broken default environment does not stop it.
    let source = ConfigSource {
        dir: Some(cli.config_dir.clone()),
        file: cli.config.clone(),
        environment: cli.env.clone(),
        env_file: cli.env_file.clone(),
    };
    let config = || -> Result<Config, Failure> { Ok(maskstore::load_config(&source)?) };
    let storage =
        || -> Result<maskstore::Storage, Failure> { Ok(maskstore::Storage::connect(&config()?)?) };
    // Commands that only read never create a local root: a mistyped one is an error.
    let existing = || -> Result<maskstore::Storage, Failure> {
        Ok(maskstore::Storage::connect_existing(&config()?)?)
    };
    match cli.command {
        Command::Config {
            command: ConfigCommand::Show,
        } => config_show::run(&config()?, cli.json),
        Command::Check { cors } => check::run(&config()?, cors.as_deref(), cli.json).await,
        Command::Ls { prefix, long } => {
            objects::ls(&existing()?, prefix.as_deref(), long, cli.json).await
        }
        Command::Stat { key } => objects::stat(&existing()?, &key, cli.json).await,
        Command::Put {
            source,
            key,
            content_type,
            meta,
        } => {
            let metadata = objects::parse_metadata(&meta)?;
            objects::put(&storage()?, &source, &key, content_type, metadata, cli.json).await
        }
        Command::Get {
            key,
            target,
            no_sync,
            no_verify,
        } => {
            let durability = if no_sync {
                download::Durability::Unsynced
            } else {
                download::Durability::Synced
            };
            let storage = existing()?;
            let storage = if no_verify {
                storage.without_verification()
            } else {
                storage
            };
            objects::get(&storage, &key, target.as_deref(), durability, cli.json).await
        }
        Command::Verify {
            prefix,
            concurrency,
            require_checksum,
        } => {
            let config = config()?;
            let require = require_checksum || config.object_storage.require_checksum;
            verify::run(
                &maskstore::Storage::connect_existing(&config)?,
                prefix.as_deref(),
                concurrency.into(),
                require,
                cli.json,
            )
            .await
        }
        Command::Rm { keys, prefix, yes } => {
            objects::rm(&storage()?, &keys, prefix.as_deref(), yes, cli.json).await
        }
        Command::Cp { from, to } => {
            objects::copy_or_move(&storage()?, &from, &to, false, cli.json).await
        }
        Command::Mv { from, to } => {
            objects::copy_or_move(&storage()?, &from, &to, true, cli.json).await
        }
        Command::Sync(args) => sync::run(&source, &args, cli.json).await,
        Command::Policy { document } => policy::run(&config()?, document),
        Command::Presign(args) => presign::run(&config()?, &args, cli.json).await,
        Command::Serve => serve::run(&config()?).await,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MASKSTORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person's terminal: never into a file, a pipe or a log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}
