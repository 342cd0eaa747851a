//! What the binary shows: failures and their exit codes, JSON, progress bars.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use maskstore::{Error, ErrorKind};

/// The exit codes, as `--help` lists them; [`exit_code`] maps errors onto them.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other failure (backend error, data mismatch, conflict, failed condition; a
     server failed on its side, such as S3's 500 InternalError)
  2  usage or configuration error (bad flag, bad config value, invalid key or range,
     region mismatch)
  3  not found (key or bucket)
  4  credentials rejected, permission denied, clock skew, CORS refused
  5  backend unreachable or busy (no answer, or a 503 such as SlowDown after retries)
  6  corrupt: an object's bytes do not match its stored checksum (get, verify; sync
     when every failed copy was a corrupt source)";

/// A failure the binary reports: one sentence and an exit code.
pub(crate) struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: exit_code(&e),
            message: e.to_string(),
        }
    }
}

impl Failure {
    /// Prints the failure on stderr as one line, whatever a backend put in its message.
    pub(crate) fn report(&self) {
        let message: Vec<&str> = self.message.split_whitespace().collect();
        eprintln!("maskstore: {}", message.join(" "));
    }
}

/// The exit code for an error (see `EXIT_CODES`), from its kind.
pub(crate) fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::NotFound => 3,
        ErrorKind::Credentials | ErrorKind::PermissionDenied => 4,
        ErrorKind::InvalidInput | ErrorKind::InvalidRange | ErrorKind::Misconfigured => 2,
        ErrorKind::Unavailable => 5,
        ErrorKind::Corrupt => 6,
        ErrorKind::Conflict
        | ErrorKind::Precondition
        | ErrorKind::NotModified
        | ErrorKind::Unsupported
        | ErrorKind::Internal => 1,
    }
}

/// Prints a JSON value on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values always serialize")
    );
}

/// Transfers above this size get a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

/// A progress bar on stderr for a transfer of `len` bytes (a spinner when unknown), hidden
/// when stderr is not a terminal or the transfer is small.
pub(crate) fn progress(len: Option<u64>, label: &str) -> ProgressBar {
    let visible = std::io::stderr().is_terminal() && len.is_none_or(|n| n > PROGRESS_THRESHOLD);
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("a valid template"),
        ),
    };
    bar.set_message(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::EXIT_CODES;

    /// The `--help` line of exit code `code`, with its continuation lines.
    fn line(code: char) -> String {
        let start = format!("  {code}  ");
        let from = EXIT_CODES.find(&start).expect("the code is listed");
        let rest = &EXIT_CODES[from + start.len()..];
        let end = rest
            .find("\n  ")
            .filter(|&i| !rest[i..].starts_with("\n     "));
        rest[..end.unwrap_or(rest.len())].to_string()
    }

    #[test]
    fn the_help_names_what_each_code_covers_as_docs_cli_md_does() {
        assert!(line('1').contains("server failed"), "{}", line('1'));
        assert!(line('5').contains("busy"), "{}", line('5'));
        assert!(line('6').contains("sync"), "{}", line('6'));
    }
}
