//! No raw terminal control reaches a human-readable output from what a store holds or a
//! server says: content types, metadata names and values, checksums and etags another
//! tool stored, and a server's error codes and messages, are shown escaped by `stat`,
//! `ls --long`, `verify`, `get`, `sync` and `check` and in every error message. JSON output
//! keeps them exact.

use std::path::Path;

use super::hostile_server::{self, Act, HOSTILE_CODE, HOSTILE_MESSAGE, Hostile, Wire};
use crate::support::{self, text};

/// What another tool may store: a window-title OSC ended by BEL, a screen clear, a forged
/// line after CR LF, a C1 CSI and a right-to-left override.
const HOSTILE: &str =
    "x\u{1b}]0;owned\u{7}\u{1b}[2J\r\nmaskstore: all objects verified\u{9b}31m\u{202e}gpj.exe";

/// The characters that must never reach a terminal raw, with their names.
const CONTROLS: [(char, &str); 9] = [
    ('\u{1b}', "ESC"),
    ('\u{7}', "BEL"),
    ('\r', "CR"),
    ('\u{9b}', "C1 CSI"),
    ('\u{85}', "C1 NEL"),
    ('\u{202e}', "RLO"),
    ('\u{202d}', "LRO"),
    ('\u{2066}', "LRI"),
    ('\u{2067}', "RLI"),
];

/// Asserts that `output` (stdout and stderr of one run) holds no raw control: no ESC, BEL,
/// CR, C1 control or bidi override, whether as UTF-8 or as a lone byte, and no line forged
/// by a stored newline.
#[track_caller]
fn clean(output: &[u8], what: &str) {
    for byte in [0x1b, 0x07, b'\r'] {
        assert!(
            !output.contains(&byte),
            "{what}: a raw 0x{byte:02x} reached the output:\n{}",
            text(output)
        );
    }
    let shown = String::from_utf8_lossy(output);
    for (c, name) in CONTROLS {
        assert!(
            !shown.contains(c),
            "{what}: a raw {name} reached the output:\n{shown}"
        );
    }
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("maskstore: all objects verified")),
        "{what}: a stored newline forged a line:\n{shown}"
    );
}

/// Runs `maskstore ARGS` in `dir` with `vars` and checks both outputs; returns them.
#[track_caller]
fn run_clean(dir: &Path, args: &[&str], vars: &[(String, String)]) -> std::process::Output {
    let out = support::maskstore(dir, args, vars);
    let what = format!("maskstore {args:?}");
    clean(&out.stdout, &what);
    clean(&out.stderr, &what);
    out
}

/// A local store whose object `mask/a/hostile.png` carries the hostile text in its content
/// type and in a metadata name and value, as a tool writing the extended attribute would
/// leave them, and whose `mask/a/bad-sum.png` has a hostile stored checksum.
fn hostile_local_store() -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let vars = support::vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", "store"),
    ]);
    std::fs::write(dir.path().join("mask.png"), b"not really a png").unwrap();
    for key in ["mask/a/hostile.png", "mask/a/bad-sum.png"] {
        support::succeeded(&support::maskstore(
            dir.path(),
            &["put", "mask.png", key],
            &vars,
        ));
    }
    let attributes = |file: &str| dir.path().join("store").join("mask/a").join(file);
    let stored = serde_json::json!({
        "content_type": HOSTILE,
        "metadata": { HOSTILE: HOSTILE, "plain": HOSTILE },
    });
    xattr::set(
        attributes("hostile.png"),
        "user.maskstore.attributes",
        stored.to_string().as_bytes(),
    )
    .unwrap();
    let bad_sum = serde_json::json!({ "metadata": { "maskstore-checksum": HOSTILE } });
    xattr::set(
        attributes("bad-sum.png"),
        "user.maskstore.attributes",
        bad_sum.to_string().as_bytes(),
    )
    .unwrap();
    (dir, vars)
}

#[test]
fn stored_content_types_metadata_and_checksums_are_shown_escaped_and_json_stays_exact() {
    let (dir, vars) = hostile_local_store();
    let dir = dir.path();
    let stat = run_clean(dir, &["stat", "mask/a/hostile.png"], &vars);
    let said = support::succeeded(&stat);
    assert!(
        said.contains("x\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r\\nmaskstore"),
        "the escaped text is shown: {said}"
    );
    run_clean(dir, &["ls", "--long", "mask/"], &vars);
    run_clean(dir, &["stat", "mask/a/bad-sum.png"], &vars);
    run_clean(dir, &["verify"], &vars);
    run_clean(dir, &["get", "mask/a/bad-sum.png", "out.png"], &vars);
    run_clean(dir, &["get", "mask/a/hostile.png", "out.png"], &vars);
    std::fs::write(
        dir.join("from.toml"),
        "[object_storage]\nprovider = \"local\"\nroot = \"store\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("to.toml"),
        "[object_storage]\nprovider = \"local\"\nroot = \"copy\"\n",
    )
    .unwrap();
    run_clean(
        dir,
        &["sync", "--from", "from.toml", "--to", "to.toml"],
        &[],
    );
    run_clean(dir, &["check"], &vars);

    let json = support::maskstore(dir, &["--json", "stat", "mask/a/hostile.png"], &vars);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["content_type"], HOSTILE, "JSON is exact");
    assert_eq!(value["metadata"][HOSTILE], HOSTILE, "JSON is exact");
}

#[test]
fn server_error_codes_messages_and_headers_are_shown_escaped_on_every_provider() {
    if !hostile_server::available() {
        return;
    }
    std::thread::scope(|scope| {
        for wire in Wire::ALL {
            scope.spawn(move || {
                let server = Hostile::start(wire, Act::Escapes);
                let dir = hostile_server::workspace(&server, wire);
                for args in hostile_server::COMMANDS {
                    let run = hostile_server::run(dir.path(), args);
                    let what = format!("{wire:?} {args:?}");
                    clean(run.stdout.as_bytes(), &what);
                    clean(run.stderr.as_bytes(), &what);
                    if args.contains(&"ls") && !args.contains(&"--long") {
                        // The refusal's code is shown, escaped.
                        assert!(
                            run.stderr.contains("Denied\\u{1b}]0;owned\\u{7}"),
                            "{what}: {}",
                            run.stderr
                        );
                    }
                }
            });
        }
    });
    // The text is hostile to begin with: the test would see it if it came through.
    assert!(HOSTILE_CODE.contains('\u{1b}') && HOSTILE_MESSAGE.contains('\r'));
}

/// Content types and metadata values written by the official clients, as a hostile or
/// careless pipeline would: each is shown escaped, or refused with an escaped message.
/// SeaweedFS and Azurite refuse a control character in a header (400), as HTTP says they
/// may; moto stores it; GCS takes any text in the JSON API's metadata (fake-gcs-server
/// refuses it in the content type).
#[test]
fn what_the_official_clients_store_is_shown_escaped() {
    if !super::writers_available() {
        return;
    }
    // boto3 refuses metadata that is not ASCII.
    let ascii: String = HOSTILE
        .replace("\r\n", " ")
        .chars()
        .filter(char::is_ascii)
        .collect();
    let prefix = format!("mask/esc-{:x}/", rand::random::<u32>());
    let mut stores = Vec::new();
    if let Some(moto) = maskstore_testkit::servers::moto() {
        super::python(
            "c = s3('MOTO'); c.put_object(Bucket=bucket('MOTO'), Key=sys.argv[1] + 'a.png', \
             Body=b'x', ContentType=sys.argv[2], Metadata={'who': sys.argv[2]})",
            &[&prefix, &ascii],
        );
        stores.push(("s3-moto", moto.app_env()));
    }
    if let Some(gcs) = maskstore_testkit::servers::fake_gcs() {
        super::python(
            "b = gcs().blob(sys.argv[1] + 'a.png'); b.metadata = {'who': sys.argv[2]}; \
             b.upload_from_string(b'x', content_type='image/png')",
            &[&prefix, HOSTILE],
        );
        stores.push(("gcs-fake", gcs.app_env()));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = format!("{prefix}a.png");
    for (name, env) in &stores {
        for args in [
            vec!["stat", key.as_str()],
            vec!["ls", "--long", prefix.as_str()],
            vec!["verify", "--prefix", prefix.as_str()],
            vec!["get", key.as_str(), "out.png"],
            vec!["rm", "--prefix", prefix.as_str(), "--yes"],
        ] {
            let out = support::maskstore(dir.path(), &args, env);
            clean(&out.stdout, &format!("{name} {args:?}"));
            clean(&out.stderr, &format!("{name} {args:?}"));
        }
    }
}
