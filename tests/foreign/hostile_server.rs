//! A server that misbehaves, playing S3, Azure and GCS: an endless listing, an endless
//! error body, a `200` carrying an `<Error>`, escape sequences in its error codes,
//! messages and headers, and a body that dribbles. Every command of the binary ends with
//! a clear error naming the endpoint, and its peak memory stays within 64 MiB of the same
//! command's against a well-behaved answer.
//!
//! The server is plain blocking sockets, one thread a connection, one request a connection
//! (`Connection: close`): it stops writing when maskstore hangs up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support;

/// The provider a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    S3,
    Azure,
    Gcs,
}

impl Wire {
    pub const ALL: [Wire; 3] = [Wire::S3, Wire::Azure, Wire::Gcs];

    fn listing_root(self) -> &'static str {
        match self {
            Wire::S3 | Wire::Gcs => "ListBucketResult",
            Wire::Azure => "EnumerationResults",
        }
    }

    /// The code of a refusal by the bucket's policy.
    pub fn denied_code(self) -> &'static str {
        match self {
            Wire::S3 | Wire::Gcs => "AccessDenied",
            Wire::Azure => "AuthorizationPermissionMismatch",
        }
    }

    fn meta_header(self) -> &'static str {
        match self {
            Wire::S3 => "x-amz-meta-who",
            Wire::Azure => "x-ms-meta-who",
            Wire::Gcs => "x-goog-meta-who",
        }
    }
}

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Short, well-formed answers: empty listings, objects missing.
    Good,
    /// Listings without end; every other request a `500` with an error body without end.
    Endless,
    /// Every request a `403` with an error body without end.
    EndlessRefusal,
    /// Listings and writes (copies) answered `200` with an `<Error>` document.
    ErrorIn200,
    /// Escape sequences, C1 controls and bidi overrides in error codes, messages and
    /// metadata.
    Escapes,
    /// Listings that send a byte every 100 ms, forever.
    Dribble,
    /// S3 listings that name, whatever prefix was asked for, an object
    /// outside it (`mask/b/other.png`), beside a name object_store cannot hold (`mask/a//odd.png`, which
    /// maskstore lists on S3 with its own requests).
    Outside,
    /// Azure listings in Azure's order (UTF-16 code units, as Azure and Azurite sort:
    /// `😀` before `！`, the reverse of UTF-8's order), in two pages for object_store, the
    /// first ending with a folder marker, the second holding a name object_store cannot
    /// hold; maskstore's own listing (a SAS request) in one page.
    AzureOrder,
    /// S3 reads answered without an ETag (S3 documents one; object_store does not require
    /// it), and checksum HEADs answering the CRC32 of other bytes, as after the object was
    /// replaced between the two.
    NoEtag,
    /// S3 listings whose first page holds a name object_store cannot hold, and whose pages
    /// for maskstore's own listing (presigned) say more follow without a token for them.
    Stuck,
    /// S3 reads answered with an ETag and no checksum of maskstore's; checksum HEADs never
    /// answered.
    SilentHead,
}

/// An error code and message a terminal would obey if printed raw: set the window title,
/// clear the screen, forge a line, a C1 CSI, a right-to-left override.
pub const HOSTILE_CODE: &str = "Denied\u{1b}]0;owned\u{7}";
pub const HOSTILE_MESSAGE: &str =
    "no\r\nmaskstore: all objects verified\u{1b}[2J\u{9b}31m \u{202e}gpj.exe";
/// A header value (HTTP allows only visible ASCII and bytes from 0x80: a C1 CSI and a
/// bidi override as UTF-8).
pub const HOSTILE_HEADER: &str = "text/plain\u{9b}31m\u{202e}gpj.exe";

/// A hostile server on a free loopback port, stopped on drop.
pub struct Hostile {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    pub fn start(wire: Wire, act: Act) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream, wire, act));
                }
            }
        });
        Hostile { port, stop }
    }

    /// `http://127.0.0.1:<port>`: what every error must name.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[object_storage]` of a config pointing `wire` at this server.
    pub fn config(&self, wire: Wire) -> String {
        let endpoint = self.endpoint();
        let provider = match wire {
            Wire::S3 => format!(
                "provider = \"s3\"\nbucket_name = \"pacs-masks-test\"\nregion = \"us-east-1\"\n\
                 endpoint = \"{endpoint}\"\naccess_key = \"hostile-access\"\n\
                 secret_key = \"hostile-secret-key\"\n"
            ),
            Wire::Azure => format!(
                "provider = \"azure\"\naccount = \"hostile\"\ncontainer = \"pacs-masks-test\"\n\
                 endpoint = \"{endpoint}/hostile\"\naccount_key = \"aG9zdGlsZQ==\"\n"
            ),
            Wire::Gcs => format!(
                "provider = \"gcs\"\nbucket_name = \"pacs-masks-test\"\nendpoint = \"{endpoint}\"\n\
                 service_account_key_file = {:?}\n",
                gcs_key_file()
            ),
        };
        format!("[object_storage]\n{provider}request_timeout = 2\nmax_retries = 1\n")
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A service account key (a real RSA key: object_store signs its own tokens with it, so
/// the server is never asked for one).
fn gcs_key_file() -> String {
    std::env::var("MASKSTORE_TEST_FAKE_GCS_SERVICE_ACCOUNT_FILE")
        .expect("MASKSTORE_TEST_FAKE_GCS_SERVICE_ACCOUNT_FILE is set by scripts/test-servers")
}

/// Whether the GCS key these tests need is there (a skip outside CI, a failure in it).
pub fn available() -> bool {
    maskstore_testkit::servers::fake_gcs().is_some()
}

/// A request's method and target, its body read and dropped.
fn request(stream: &TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.take(1 << 20));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_string(), words.next()?.to_string());
    let mut length = 0u64;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    std::io::copy(&mut reader.take(length), &mut std::io::sink()).ok()?;
    Some((method, target))
}

/// Every request a server was sent: its port, method and target.
static SEEN: std::sync::Mutex<Vec<(u16, String, String)>> = std::sync::Mutex::new(Vec::new());

impl Hostile {
    /// The requests this server was sent, as `METHOD target`.
    pub fn seen(&self) -> Vec<String> {
        let seen = SEEN.lock().unwrap();
        let mine = seen.iter().filter(|(port, ..)| *port == self.port);
        mine.map(|(_, method, target)| format!("{method} {target}"))
            .collect()
    }
}

fn serve(mut stream: TcpStream, wire: Wire, act: Act) {
    let Some((method, target)) = request(&stream) else {
        return;
    };
    if let Ok(local) = stream.local_addr() {
        let seen = (local.port(), method.clone(), target.clone());
        SEEN.lock().unwrap().push(seen);
    }
    let listing = target.contains("list-type=") || target.contains("comp=list");
    let head = method == "HEAD";
    let root = wire.listing_root();
    let error = |code: &str, message: &str| {
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message>")
    };
    let _ = match act {
        Act::Good => good(&mut stream, wire, &method, listing),
        Act::Endless if listing => endless(
            &mut stream,
            200,
            &format!("<?xml version=\"1.0\"?><{root}><Name>b</Name>"),
            "<Contents><Key>mask/a</Key><Size>1</Size></Contents>",
        ),
        Act::Endless => endless(&mut stream, 500, &error("InternalError", ""), "x"),
        Act::EndlessRefusal => endless(&mut stream, 403, &error("AccessDenied", ""), "x"),
        Act::ErrorIn200 if listing || method == "PUT" => {
            let body = format!("{}</Error>", error(wire.denied_code(), "Access Denied"));
            answer(&mut stream, 200, "", body.as_bytes())
        }
        Act::Escapes if head => answer(&mut stream, 200, &hostile_headers(wire), b""),
        Act::Escapes => {
            let body = format!("{}</Error>", error(HOSTILE_CODE, HOSTILE_MESSAGE));
            answer(&mut stream, 403, "", body.as_bytes())
        }
        Act::Dribble if listing => dribble(&mut stream, root),
        Act::Outside if listing && wire == Wire::S3 => {
            let contents: String = ["mask/a/in.png", "mask/a//odd.png", "mask/b/other.png"]
                .iter()
                .map(|k| {
                    format!(
                        "<Contents><Key>{k}</Key><Size>1</Size>\
                     <LastModified>2026-12-07T00:00:00.000Z</LastModified><ETag>\"e\"</ETag>\
                     </Contents>"
                    )
                })
                .collect();
            let body = format!(
                "<?xml version=\"1.0\"?><{root}><Name>b</Name><IsTruncated>false</IsTruncated>\
                 {contents}</{root}>"
            );
            answer(&mut stream, 200, "", body.as_bytes())
        }
        Act::AzureOrder if listing => azure_order(&mut stream, &target),
        Act::SilentHead if wire == Wire::S3 && head => {
            std::thread::sleep(Duration::from_secs(120));
            Ok(())
        }
        Act::SilentHead if wire == Wire::S3 && method == "GET" && !listing => {
            // The body waits for the HEAD past the request timeout: object_store asks for
            // it again by range, answered as S3 does.
            let headers = "Last-Modified: Mon, 07 Dec 2026 00:00:00 GMT\r\nETag: \"e\"\r\n";
            let port = stream.local_addr().map(|a| a.port()).unwrap_or_default();
            let seen = SEEN.lock().unwrap();
            let gets = seen
                .iter()
                .filter(|(p, m, _)| *p == port && m == "GET")
                .count();
            drop(seen);
            if gets > 1 {
                let last = READ.len() - 1;
                let range = format!("{headers}Content-Range: bytes 0-{last}/{}\r\n", READ.len());
                answer(&mut stream, 206, &range, READ)
            } else {
                answer(&mut stream, 200, headers, READ)
            }
        }
        Act::Stuck if listing && wire == Wire::S3 => {
            let own = target.contains("X-Amz-Signature=");
            let contents: String = ["mask/a/1.png", "mask/a/2//odd.png"]
                .iter()
                .map(|k| {
                    format!(
                        "<Contents><Key>{k}</Key><Size>1</Size>\
                         <LastModified>2026-12-07T00:00:00.000Z</LastModified>\
                         <ETag>\"e\"</ETag></Contents>"
                    )
                })
                .collect();
            let body = format!(
                "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name>\
                 <IsTruncated>{own}</IsTruncated>{contents}</ListBucketResult>"
            );
            answer(&mut stream, 200, "", body.as_bytes())
        }
        Act::NoEtag if wire == Wire::S3 && !listing && (method == "GET" || head) => {
            let headers = "Last-Modified: Mon, 07 Dec 2026 00:00:00 GMT\r\n\
                           Content-Type: image/png\r\n\
                           x-amz-checksum-crc32: 0MjaJA==\r\n";
            if head {
                answer(&mut stream, 200, headers, b"")
            } else {
                answer(
                    &mut stream,
                    200,
                    "Last-Modified: Mon, 07 Dec 2026 00:00:00 GMT\r\n",
                    READ,
                )
            }
        }
        Act::ErrorIn200
        | Act::Dribble
        | Act::Outside
        | Act::AzureOrder
        | Act::NoEtag
        | Act::Stuck
        | Act::SilentHead => good(&mut stream, wire, &method, listing),
    };
}

/// Headers of a HEAD answer with hostile metadata (a content type that is not ASCII is
/// refused by object_store before maskstore sees it).
fn hostile_headers(wire: Wire) -> String {
    format!(
        "Content-Type: image/png\r\n{}: {HOSTILE_HEADER}\r\nETag: \"e\"\r\n\
         Last-Modified: Mon, 07 Dec 2026 00:00:00 GMT\r\nx-ms-blob-type: BlockBlob\r\n",
        wire.meta_header()
    )
}

/// The bytes an [`Act::NoEtag`] read answers.
const READ: &[u8] = b"the object read";

/// See [`Act::AzureOrder`].
fn azure_order(stream: &mut TcpStream, target: &str) -> std::io::Result<()> {
    let (names, next): (&[&str], &str) = if target.contains("sig=") {
        (
            &[
                "mask/a/\u{1F600}.png",
                "mask/a/\u{1F600}/",
                "mask/a/\u{FF01}.png",
                "mask/a/\u{FF01}//odd.png",
            ],
            "",
        )
    } else if target.contains("marker=m1") {
        (&["mask/a/\u{FF01}.png", "mask/a/\u{FF01}//odd.png"], "")
    } else {
        (&["mask/a/\u{1F600}.png", "mask/a/\u{1F600}/"], "m1")
    };
    let blobs: String = names
        .iter()
        .map(|name| {
            format!(
                "<Blob><Name>{name}</Name><Properties>\
                 <Creation-Time>Mon, 07 Dec 2026 00:00:00 GMT</Creation-Time>\
                 <Last-Modified>Mon, 07 Dec 2026 00:00:00 GMT</Last-Modified>\
                 <Etag>0x8DE</Etag><Content-Length>{}</Content-Length>\
                 <Content-Type>image/png</Content-Type><BlobType>BlockBlob</BlobType>\
                 </Properties></Blob>",
                // A folder marker (a name ending in `/`) is empty.
                u8::from(!name.ends_with('/'))
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs>{blobs}</Blobs>\
         <NextMarker>{next}</NextMarker></EnumerationResults>"
    );
    answer(
        stream,
        200,
        "Content-Type: application/xml\r\n",
        body.as_bytes(),
    )
}

/// Empty listings, missing objects, accepted writes.
fn good(stream: &mut TcpStream, wire: Wire, method: &str, listing: bool) -> std::io::Result<()> {
    if listing {
        let body = match wire {
            Wire::S3 | Wire::Gcs => {
                "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount>\
                 <IsTruncated>false</IsTruncated></ListBucketResult>"
            }
            Wire::Azure => {
                "<?xml version=\"1.0\"?><EnumerationResults><Blobs /><NextMarker />\
                 </EnumerationResults>"
            }
        };
        return answer(stream, 200, "", body.as_bytes());
    }
    match method {
        "GET" | "HEAD" => {
            let code = match wire {
                Wire::Azure => "BlobNotFound",
                Wire::S3 | Wire::Gcs => "NoSuchKey",
            };
            let body = format!("<Error><Code>{code}</Code><Message>missing</Message></Error>");
            answer(stream, 404, "", body.as_bytes())
        }
        "DELETE" => answer(stream, 204, "", b""),
        _ => answer(stream, 200, "ETag: \"e\"\r\n", b"{}"),
    }
}

fn answer(stream: &mut TcpStream, status: u16, headers: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status} Hostile\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)
}

/// `start`, then `unit` over and over until the client hangs up (no length: the body
/// ends when the connection does, so it never does).
fn endless(stream: &mut TcpStream, status: u16, start: &str, unit: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status} Hostile\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n{start}"
    )?;
    let block = unit.repeat(65536 / unit.len());
    loop {
        stream.write_all(block.as_bytes())?;
    }
}

fn dribble(stream: &mut TcpStream, root: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 Hostile\r\nConnection: close\r\n\r\n<?xml version=\"1.0\"?><{root}>"
    )?;
    loop {
        stream.write_all(b" ")?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    /// Its peak resident size, KiB.
    pub peak_kib: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` in `dir` and returns how it ended and its peak memory: its
/// high-water mark (`VmHWM`, which only grows) read every few milliseconds until it exits,
/// so at most the last few milliseconds' growth goes unseen. A run past a minute is killed
/// and fails the test: the bound on time is what is under test, the minute only stops a
/// hang.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    let mut child = support::command(dir, args, &[])
        .stdout(std::fs::File::create(dir.join("out")).unwrap())
        .stderr(std::fs::File::create(dir.join("err")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("maskstore starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peak_kib = 0;
    let status = loop {
        peak_kib = peak_kib.max(high_water_kib(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("maskstore {args:?} still ran after a minute: its wait is unbounded");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    Run {
        code: status.code(),
        peak_kib,
        stdout: read("out"),
        stderr: read("err"),
    }
}

/// A running process's peak resident size so far, KiB.
fn high_water_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The commands under test, with the config at `config.toml` (and for `sync` a local
/// destination at `local.toml`).
pub const COMMANDS: [&[&str]; 8] = [
    &["--config", "config.toml", "ls"],
    &["--config", "config.toml", "ls", "--long"],
    &["--config", "config.toml", "verify"],
    &["--config", "config.toml", "stat", "mask/a.png"],
    &["--config", "config.toml", "get", "mask/a.png", "a.png"],
    &["sync", "--from", "config.toml", "--to", "local.toml"],
    &[
        "--config",
        "config.toml",
        "rm",
        "--prefix",
        "mask/",
        "--yes",
    ],
    &["--config", "config.toml", "check"],
];

/// A folder with the configs of `wire` on `server`.
pub fn workspace(server: &Hostile, wire: Wire) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), server.config(wire)).unwrap();
    std::fs::write(
        dir.path().join("local.toml"),
        "[object_storage]\nprovider = \"local\"\nroot = \"copy\"\n",
    )
    .unwrap();
    dir
}

/// Every command against `act` on every provider, with the same command against good
/// answers; `check` sees each pair.
fn against(
    act: Act,
    commands: &[&[&str]],
    check: impl Fn(Wire, &[&str], &Hostile, &Run, &Run) + Sync,
) {
    std::thread::scope(|scope| {
        for wire in Wire::ALL {
            let check = &check;
            scope.spawn(move || {
                let (good, bad) = (Hostile::start(wire, Act::Good), Hostile::start(wire, act));
                let (good_dir, bad_dir) = (workspace(&good, wire), workspace(&bad, wire));
                for args in commands {
                    let baseline = run(good_dir.path(), args);
                    let hostile = run(bad_dir.path(), args);
                    check(wire, args, &bad, &baseline, &hostile);
                }
            });
        }
    });
}

/// Asserts that `run` failed with a message naming `server`'s endpoint.
#[track_caller]
fn failed_naming(run: &Run, server: &Hostile, wire: Wire, args: &[&str]) {
    assert!(
        run.code.is_some_and(|c| c != 0),
        "{wire:?} {args:?} must fail: {run:?}"
    );
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains(&format!("127.0.0.1:{}", server.port)),
        "{wire:?} {args:?} must name the endpoint: {said}"
    );
}

#[test]
fn endless_bodies_end_every_command_with_an_error_naming_the_endpoint_in_bounded_memory() {
    if !available() {
        return;
    }
    const HEADROOM_KIB: i64 = 64 * 1024;
    against(Act::Endless, &COMMANDS, |wire, args, server, good, bad| {
        failed_naming(bad, server, wire, args);
        let above = bad.peak_kib - good.peak_kib;
        eprintln!(
            "{wire:?} {args:?}: peak {} KiB, {above} KiB above the same command on good \
             answers: {}",
            bad.peak_kib,
            bad.stderr.trim()
        );
        assert!(
            above < HEADROOM_KIB,
            "{wire:?} {args:?}: peak {} KiB, {above} KiB above idle: {bad:?}",
            bad.peak_kib
        );
        let said = &bad.stderr;
        if args.contains(&"ls") || args.contains(&"verify") {
            assert!(said.contains("longer than the 32 MiB"), "{said}");
            assert!(
                !said.contains("list-type") && !said.contains("comp=list"),
                "no query: {said}"
            );
        }
        if args.contains(&"get") {
            assert!(said.contains("500") && said.contains("64 KiB"), "{said}");
        }
    });
}

#[test]
fn an_endless_refusal_ends_at_its_bound_with_its_status() {
    if !available() {
        return;
    }
    let commands: [&[&str]; 2] = [COMMANDS[0], COMMANDS[4]];
    against(
        Act::EndlessRefusal,
        &commands,
        |wire, args, server, _, bad| {
            failed_naming(bad, server, wire, args);
            assert!(
                bad.stderr.contains("403 Forbidden") && bad.stderr.contains("64 KiB"),
                "{wire:?} {args:?}: {}",
                bad.stderr
            );
        },
    );
}

#[test]
fn a_listing_answered_200_with_an_error_document_is_that_error_not_an_empty_listing() {
    if !available() {
        return;
    }
    let commands: [&[&str]; 3] = [COMMANDS[0], COMMANDS[2], COMMANDS[6]];
    against(Act::ErrorIn200, &commands, |wire, args, _, good, bad| {
        assert_eq!(
            good.code,
            Some(0),
            "{wire:?} {args:?} on good answers: {good:?}"
        );
        assert_eq!(bad.code, Some(4), "{wire:?} {args:?}: {bad:?}");
        assert!(bad.stderr.contains(wire.denied_code()), "{}", bad.stderr);
    });
}

#[test]
fn a_dribbling_listing_ends_at_the_request_timeout() {
    if !available() {
        return;
    }
    let commands: [&[&str]; 1] = [COMMANDS[0]];
    against(Act::Dribble, &commands, |wire, args, server, _, bad| {
        failed_naming(bad, server, wire, args);
        assert_eq!(bad.code, Some(5), "unreachable in time: {bad:?}");
    });
}

/// S3 documents a copy answered `200` with an `<Error>` (the copy failed after the
/// answer started); object_store reads a success. GCS copies through its JSON API, whose
/// answer maskstore reads itself.
#[test]
fn a_copy_answered_200_with_an_error_document_is_that_error() {
    if !available() {
        return;
    }
    let commands: [&[&str]; 1] = [&["--config", "config.toml", "cp", "mask/a.png", "mask/b.png"]];
    against(Act::ErrorIn200, &commands, |wire, args, _, _, bad| {
        assert_ne!(bad.code, Some(0), "{wire:?} {args:?}: {bad:?}");
        if wire != Wire::Gcs {
            assert_eq!(bad.code, Some(4), "{wire:?} {args:?}: {bad:?}");
            assert!(bad.stderr.contains(wire.denied_code()), "{}", bad.stderr);
        }
    });
}

/// A listing that names objects outside the prefix asked for is the server's error: `rm
/// --prefix` deletes nothing outside its prefix, `ls` shows no such name.
#[test]
fn a_listing_naming_objects_outside_its_prefix_is_an_error_and_nothing_is_deleted() {
    if !available() {
        return;
    }
    let rm: &[&str] = &[
        "--config",
        "config.toml",
        "rm",
        "--prefix",
        "mask/a/",
        "--yes",
    ];
    let ls: &[&str] = &["--config", "config.toml", "ls", "mask/a/"];
    for wire in [Wire::S3] {
        let server = Hostile::start(wire, Act::Outside);
        let dir = workspace(&server, wire);
        for args in [rm, ls] {
            let run = run(dir.path(), args);
            let said = format!("{}{}", run.stdout, run.stderr);
            assert_eq!(run.code, Some(1), "{wire:?} {args:?}: {run:?}");
            assert!(
                !run.stdout.contains("other.png"),
                "{wire:?} {args:?}: {said}"
            );
            assert!(said.contains("outside"), "{wire:?} {args:?}: {said}");
        }
        let seen = server.seen();
        assert!(
            !seen
                .iter()
                .any(|r| r.starts_with("DELETE") || r.starts_with("POST")),
            "{wire:?}: nothing may be deleted: {seen:?}"
        );
    }
}

/// Azure has no "start after": after object_store stops on a name it cannot hold, the
/// listing starts over and leaves out what object_store listed. Azure sorts names by UTF-16
/// code units, not UTF-8 bytes, so what is left out is found by name, never by comparing
/// bytes: nothing is left out or listed twice.
#[test]
fn an_azure_listing_started_over_leaves_out_only_what_was_listed() {
    let server = Hostile::start(Wire::Azure, Act::AzureOrder);
    let dir = workspace(&server, Wire::Azure);
    let run = run(dir.path(), &["--config", "config.toml", "ls", "mask/a/"]);
    assert_eq!(run.code, Some(0), "{run:?} {:?}", server.seen());
    let listed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        listed,
        [
            "mask/a/\u{1F600}.png",
            "mask/a/\u{1F600}/  (foreign name)",
            "mask/a/\u{FF01}.png",
            "mask/a/\u{FF01}//odd.png  (foreign name)",
        ],
        "{run:?}"
    );
}

/// A checksum HEAD that cannot be pinned to the version read (the read had no ETag to send
/// as If-Match) may describe another version: such an object reads unverified, never
/// corrupt.
#[test]
fn a_read_without_an_etag_is_never_called_corrupt_by_a_later_versions_checksum() {
    let server = Hostile::start(Wire::S3, Act::NoEtag);
    let dir = workspace(&server, Wire::S3);
    let run = run(
        dir.path(),
        &["--config", "config.toml", "get", "mask/a.png", "a.png"],
    );
    assert_eq!(run.code, Some(0), "{run:?} {:?}", server.seen());
    assert_eq!(std::fs::read(dir.path().join("a.png")).unwrap(), READ);
    assert!(run.stderr.contains("was not verified"), "{run:?}");
}

/// A listing page that says more follow but gives no token for them is the server's
/// error: a part of a listing never passes for all of it (`verify` would check part,
/// `sync --delete` would delete what the rest holds at the destination).
#[test]
fn a_listing_that_says_more_follow_without_a_token_is_an_error_not_the_whole() {
    let server = Hostile::start(Wire::S3, Act::Stuck);
    let dir = workspace(&server, Wire::S3);
    let run = run(dir.path(), &["--config", "config.toml", "ls", "mask/a/"]);
    assert_ne!(run.code, Some(0), "{run:?} {:?}", server.seen());
    assert!(
        run.stderr
            .contains("says more follow but gives no new place to ask from"),
        "{run:?}"
    );
}

/// A checksum HEAD the server never answers ends at the request timeout, tried as often as
/// `max_retries` allows, and the object reads unverified.
#[test]
fn a_checksum_head_never_answered_ends_within_the_configured_tries() {
    let server = Hostile::start(Wire::S3, Act::SilentHead);
    let dir = workspace(&server, Wire::S3);
    let started = Instant::now();
    let run = run(
        dir.path(),
        &["--config", "config.toml", "get", "mask/a.png", "a.png"],
    );
    eprintln!("get took {:?}", started.elapsed());
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("was not verified"), "{run:?}");
    let heads = server
        .seen()
        .iter()
        .filter(|r| r.starts_with("HEAD"))
        .count();
    // request_timeout = 2, max_retries = 1 in the config: two tries.
    assert_eq!(heads, 2, "{:?}", server.seen());
}
