//! What other tools wrote: buckets and folders filled by the official SDKs and CLIs (boto3
//! and the AWS CLI on SeaweedFS and moto, `azure-storage-blob` on Azurite,
//! `google-cloud-storage` on fake-gcs-server), by `cp` on local disk, and servers that
//! misbehave. maskstore is strict in what it writes and tolerant and honest about what it
//! finds: every foreign thing is reported by name, escaped, and never blocks the rest.
//!
//! The writers are the real clients, driven through [`python`] with `clients.py` (installed
//! by `scripts/test-servers`).

mod checksums;
mod escapes;
mod hostile_server;
mod metadata;
mod names;

use std::process::Command;

/// Runs `code` in the test servers' Python with `clients.py` imported (`from clients
/// import *`), `args` as `sys.argv[1:]`, and returns its stdout; fails the test with its
/// stderr when it fails. Under `CI=true` a missing `MASKSTORE_TEST_PYTHON` fails.
#[track_caller]
pub fn python(code: &str, args: &[&str]) -> String {
    let interpreter = std::env::var("MASKSTORE_TEST_PYTHON").expect(
        "MASKSTORE_TEST_PYTHON is set by scripts/test-servers (run the suite with scripts/test)",
    );
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/foreign");
    let script = format!("import sys\nsys.path.insert(0, {here:?})\nfrom clients import *\n{code}");
    let out = Command::new(interpreter)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("the test servers' Python runs");
    assert!(
        out.status.success(),
        "the foreign writer failed:\n{}\n--- stderr\n{}",
        code,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the official clients are installed (the variables of `scripts/test-servers`):
/// `false` skips a foreign-writer test outside CI; under `CI=true` it fails instead.
pub fn writers_available() -> bool {
    let set = std::env::var("MASKSTORE_TEST_PYTHON").is_ok();
    if !set && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("MASKSTORE_TEST_PYTHON is not set; under CI=true run the suite with scripts/test");
    }
    if !set {
        eprintln!(
            "skipping a foreign-writer test: run scripts/test (it starts the servers and installs the clients)"
        );
    }
    set
}
