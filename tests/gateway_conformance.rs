//! One table of requests, two servers: the gateway on local disk and S3 presigned URLs on
//! SeaweedFS must answer ranges, conditional reads and writes, HEAD and their edge cases
//! with the same status and the same relevant headers (`Content-Range`, `Content-Length`).
//! The expected answer is AWS S3's documented one (RFC 9110 where S3 documents nothing);
//! where SeaweedFS answers otherwise the row says so in `seaweedfs`, and the test checks
//! that SeaweedFS still answers that way (so a fix there is noticed, too).

use std::time::Duration;

use maskstore::{ObjectKey, SignOptions, SignedMethod, Storage};
use maskstore_testkit::servers;

use crate::support::Serve;

const SECRET: &str = "gateway-conformance-test-signing-secret-0123";
/// A date before any row's object was stored, and one after.
const PAST: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
const FUTURE: &str = "Fri, 01 Jan 2100 00:00:00 GMT";
/// The object most rows read: 10 bytes.
const BODY: &[u8] = b"0123456789";

/// Where a row's request goes.
enum Target {
    Gateway(Serve),
    S3 { storage: Storage, prefix: String },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Gateway(_) => "gateway",
            Target::S3 { .. } => "seaweedfs",
        }
    }

    async fn url(&self, method: SignedMethod, key: &str) -> String {
        match self {
            Target::Gateway(serve) => serve.sign(method, &format!("mask/{key}")),
            Target::S3 { storage, prefix } => {
                let key = ObjectKey::parse(format!("{prefix}{key}")).unwrap();
                storage
                    .signed_url(method, &key, Some(300), &SignOptions::default())
                    .await
                    .unwrap()
                    .url
            }
        }
    }
}

/// What a row stores at its key before its request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stored {
    Body,
    Empty,
    Nothing,
}

/// One request and the answer expected of it.
struct Row {
    name: &'static str,
    stored: Stored,
    method: &'static str,
    /// `{etag}` stands for the stored object's ETag as the server gave it (quoted).
    headers: &'static [(&'static str, &'static str)],
    /// S3's documented status.
    status: u16,
    /// `Content-Range` expected (`None`: absent).
    content_range: Option<&'static str>,
    /// `Content-Length` expected of a 200/206 (`None`: not compared).
    length: Option<u64>,
    /// After a PUT: the body now stored (`None`: not compared).
    stored_after: Option<&'static [u8]>,
    /// SeaweedFS's status where it differs from S3's documented one, and why it is not
    /// followed.
    seaweedfs: Option<(u16, &'static str)>,
}

const fn row(name: &'static str, method: &'static str, status: u16) -> Row {
    Row {
        name,
        stored: Stored::Body,
        method,
        headers: &[],
        status,
        content_range: None,
        length: None,
        stored_after: None,
        seaweedfs: None,
    }
}

fn table() -> Vec<Row> {
    let ranged = |name, range, status, content_range: Option<&'static str>, length| Row {
        headers: range,
        content_range,
        length,
        ..row(name, "GET", status)
    };
    vec![
        Row {
            length: Some(10),
            ..row("plain GET", "GET", 200)
        },
        ranged(
            "first bytes",
            &[("range", "bytes=0-4")],
            206,
            Some("bytes 0-4/10"),
            Some(5),
        ),
        ranged(
            "open range",
            &[("range", "bytes=5-")],
            206,
            Some("bytes 5-9/10"),
            Some(5),
        ),
        ranged(
            "suffix",
            &[("range", "bytes=-3")],
            206,
            Some("bytes 7-9/10"),
            Some(3),
        ),
        ranged(
            "suffix longer than the object",
            &[("range", "bytes=-30")],
            206,
            Some("bytes 0-9/10"),
            Some(10),
        ),
        ranged(
            "the whole object as a range",
            &[("range", "bytes=0-")],
            206,
            Some("bytes 0-9/10"),
            Some(10),
        ),
        ranged(
            "last position past the end",
            &[("range", "bytes=3-100")],
            206,
            Some("bytes 3-9/10"),
            Some(7),
        ),
        ranged(
            "first position at the end",
            &[("range", "bytes=10-")],
            416,
            None,
            None,
        ),
        ranged(
            "suffix of zero bytes",
            &[("range", "bytes=-0")],
            416,
            None,
            None,
        ),
        Row {
            seaweedfs: Some((
                416,
                "RFC 9110 §14.2: an invalid range is ignored, as S3 does",
            )),
            ..ranged(
                "reversed range is ignored",
                &[("range", "bytes=5-2")],
                200,
                None,
                Some(10),
            )
        },
        ranged(
            "other unit is ignored",
            &[("range", "items=0-1")],
            200,
            None,
            Some(10),
        ),
        ranged(
            "several ranges: the whole object",
            &[("range", "bytes=0-1,4-5")],
            200,
            None,
            Some(10),
        ),
        Row {
            stored: Stored::Empty,
            length: Some(0),
            ..row("empty object", "GET", 200)
        },
        Row {
            stored: Stored::Empty,
            headers: &[("range", "bytes=-5")],
            ..row("suffix of an empty object", "GET", 416)
        },
        Row {
            stored: Stored::Empty,
            headers: &[("range", "bytes=0-")],
            ..row("open range of an empty object", "GET", 416)
        },
        Row {
            stored: Stored::Nothing,
            ..row("missing key", "GET", 404)
        },
        Row {
            stored: Stored::Nothing,
            ..row("HEAD of a missing key", "HEAD", 404)
        },
        Row {
            headers: &[("if-match", "{etag}")],
            length: Some(10),
            ..row("If-Match the current etag", "GET", 200)
        },
        Row {
            headers: &[("if-match", "\"0123456789abcdef0123456789abcdef\"")],
            ..row("If-Match another etag", "GET", 412)
        },
        Row {
            headers: &[("if-match", "\"0123456789abcdef0123456789abcdef\", {etag}")],
            length: Some(10),
            ..row("If-Match a list holding the current etag", "GET", 200)
        },
        Row {
            headers: &[("if-match", "*")],
            ..row("If-Match any", "GET", 200)
        },
        Row {
            headers: &[("if-none-match", "{etag}")],
            ..row("If-None-Match the current etag", "GET", 304)
        },
        Row {
            headers: &[("if-none-match", "\"0123456789abcdef0123456789abcdef\"")],
            ..row("If-None-Match another etag", "GET", 200)
        },
        Row {
            headers: &[(
                "if-none-match",
                "\"0123456789abcdef0123456789abcdef\", {etag}",
            )],
            ..row("If-None-Match a list holding the current etag", "GET", 304)
        },
        Row {
            headers: &[("if-none-match", "*")],
            ..row("If-None-Match any", "GET", 304)
        },
        Row {
            headers: &[
                ("if-match", "\"0123456789abcdef0123456789abcdef\""),
                ("range", "bytes=0-4"),
            ],
            ..row("a failed If-Match wins over Range", "GET", 412)
        },
        Row {
            length: Some(10),
            ..row("HEAD", "HEAD", 200)
        },
        Row {
            headers: &[("if-match", "\"0123456789abcdef0123456789abcdef\"")],
            ..row("HEAD If-Match another etag", "HEAD", 412)
        },
        Row {
            headers: &[("if-match", "{etag}")],
            ..row("HEAD If-Match the current etag", "HEAD", 200)
        },
        Row {
            headers: &[("if-none-match", "{etag}")],
            ..row("HEAD If-None-Match the current etag", "HEAD", 304)
        },
        Row {
            headers: &[("if-unmodified-since", PAST)],
            ..row("If-Unmodified-Since a past date", "GET", 412)
        },
        Row {
            headers: &[("if-unmodified-since", FUTURE)],
            length: Some(10),
            ..row("If-Unmodified-Since a later date", "GET", 200)
        },
        Row {
            headers: &[("if-modified-since", PAST)],
            length: Some(10),
            ..row("If-Modified-Since a past date", "GET", 200)
        },
        Row {
            headers: &[("if-modified-since", FUTURE)],
            ..row("If-Modified-Since a later date", "GET", 304)
        },
        Row {
            headers: &[("if-unmodified-since", PAST)],
            ..row("HEAD If-Unmodified-Since a past date", "HEAD", 412)
        },
        Row {
            headers: &[("if-match", "{etag}"), ("if-unmodified-since", PAST)],
            length: Some(10),
            ..row(
                "If-Match holds, If-Unmodified-Since fails: If-Match decides (AWS)",
                "GET",
                200,
            )
        },
        Row {
            headers: &[("if-none-match", "{etag}"), ("if-modified-since", PAST)],
            ..row(
                "If-None-Match matches, If-Modified-Since says modified: 304 (AWS)",
                "GET",
                304,
            )
        },
        Row {
            headers: &[("if-none-match", "W/{etag}")],
            seaweedfs: Some((
                200,
                "RFC 9110 §13.1.2: If-None-Match compares weakly, so W/\"<etag>\" matches (found by differential_http)",
            )),
            ..row(
                "If-None-Match the current etag marked weak: 304",
                "GET",
                304,
            )
        },
        Row {
            headers: &[("range", "bytes=0-4")],
            content_range: Some("bytes 0-4/10"),
            length: Some(5),
            seaweedfs: Some((
                200,
                "S3's HeadObject takes Range and answers 206 with Content-Range",
            )),
            ..row("HEAD with a range", "HEAD", 206)
        },
        Row {
            headers: &[("range", "bytes=0-4"), ("if-range", "{etag}")],
            content_range: Some("bytes 0-4/10"),
            length: Some(5),
            ..row("If-Range the current etag", "GET", 206)
        },
        Row {
            headers: &[
                ("range", "bytes=0-4"),
                ("if-range", "\"0123456789abcdef0123456789abcdef\""),
            ],
            length: Some(10),
            seaweedfs: Some((
                206,
                "S3 documents no If-Range; RFC 9110 §13.1.5: a resumed download of a replaced object is not spliced",
            )),
            ..row("If-Range another etag: the whole object", "GET", 200)
        },
        Row {
            stored: Stored::Nothing,
            headers: &[("if-none-match", "*")],
            stored_after: Some(b"new"),
            ..row("create-only PUT of a new key", "PUT", 200)
        },
        Row {
            headers: &[("if-none-match", "*")],
            stored_after: Some(BODY),
            ..row("create-only PUT over an object", "PUT", 412)
        },
        Row {
            headers: &[("if-match", "{etag}")],
            stored_after: Some(b"new"),
            ..row("PUT If-Match the current etag", "PUT", 200)
        },
        Row {
            headers: &[("if-match", "\"0123456789abcdef0123456789abcdef\"")],
            stored_after: Some(BODY),
            ..row("PUT If-Match another etag", "PUT", 412)
        },
        Row {
            stored: Stored::Nothing,
            headers: &[("if-match", "\"0123456789abcdef0123456789abcdef\"")],
            seaweedfs: Some((
                412,
                "AWS's conditional-writes guide: If-Match on a key with no current version is 404 NoSuchKey",
            )),
            ..row("PUT If-Match on a missing key", "PUT", 404)
        },
        Row {
            headers: &[("if-none-match", "{etag}")],
            stored_after: Some(BODY),
            seaweedfs: Some((
                412,
                "S3's PutObject takes If-None-Match: * only; another value is NotImplemented",
            )),
            ..row("PUT If-None-Match an etag", "PUT", 501)
        },
    ]
}

/// What a server answered to a row.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_range: Option<String>,
    length: Option<u64>,
    stored_after: Option<Vec<u8>>,
}

async fn run(target: &Target, http: &reqwest::Client, index: usize, row: &Row) -> Answer {
    let key = format!("conformance-{:08x}/{index}", rand::random::<u32>());
    let mut etag = String::new();
    if row.stored != Stored::Nothing {
        let body = if row.stored == Stored::Body {
            BODY
        } else {
            b""
        };
        let put = http
            .put(target.url(SignedMethod::Put, &key).await)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 200, "{}: setup", target.name());
        etag = put.headers()["etag"].to_str().unwrap().to_string();
    }
    let method = match row.method {
        "GET" => SignedMethod::Get,
        "HEAD" => SignedMethod::Head,
        _ => SignedMethod::Put,
    };
    let mut request = http.request(row.method.parse().unwrap(), target.url(method, &key).await);
    for (name, value) in row.headers {
        request = request.header(*name, value.replace("{etag}", &etag));
    }
    if method == SignedMethod::Put {
        request = request.body(b"new".to_vec());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let content_range = header("content-range").filter(|_| status != 416);
    let length = header("content-length")
        .and_then(|v| v.parse().ok())
        .filter(|_| row.length.is_some() && matches!(status, 200 | 206));
    let stored_after = match row.stored_after {
        Some(_) => {
            let get = http
                .get(target.url(SignedMethod::Get, &key).await)
                .send()
                .await
                .unwrap();
            Some(get.bytes().await.unwrap().to_vec())
        }
        None => None,
    };
    Answer {
        status,
        content_range,
        length,
        stored_after,
    }
}

/// The answer `target` should give: S3's documented one, or for SeaweedFS where the row
/// lists a difference, that status (its headers then follow its own reading, not compared).
fn expected(row: &Row, target: &Target, got: &Answer) -> Answer {
    if let (Target::S3 { .. }, Some((status, _))) = (target, row.seaweedfs) {
        return Answer {
            status,
            content_range: got.content_range.clone(),
            length: got.length,
            stored_after: row.stored_after.map(<[u8]>::to_vec),
        };
    }
    Answer {
        status: row.status,
        content_range: row.content_range.map(str::to_string),
        length: row.length.filter(|_| matches!(row.status, 200 | 206)),
        stored_after: row.stored_after.map(<[u8]>::to_vec),
    }
}

async fn check_table(target: &Target) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for (index, row) in table().iter().enumerate() {
        let got = run(target, &http, index, row).await;
        let want = expected(row, target, &got);
        if got != want {
            failures.push(format!(
                "{}: {}: got {got:?}, want {want:?}",
                target.name(),
                row.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_gateway_answers_the_table_as_s3_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data").display().to_string();
    let serve = Serve::start(
        dir.path(),
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", "local"),
            ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
            ("APP_OBJECT_STORAGE__FSYNC", "false"),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ],
    );
    check_table(&Target::Gateway(serve)).await;
}

#[tokio::test]
async fn seaweedfs_answers_the_table_as_s3_does_bar_the_listed_differences() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let config = server.config();
    let prefix = config.object_storage.prefix.to_string();
    let storage = Storage::connect(&config).unwrap();
    check_table(&Target::S3 { storage, prefix }).await;
}

/// A conditional PUT is held in memory to be written atomically: it needs a length (411,
/// as S3's PutObject does) and fits the conditional-upload budget (413 beyond it), both
/// answered before its body is read.
#[tokio::test]
async fn a_conditional_put_needs_a_length_within_its_budget() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data").display().to_string();
    let serve = Serve::start(
        dir.path(),
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", "local"),
            ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ],
    );
    let url = serve.sign(SignedMethod::Put, "mask/conditional/big.png");
    let target = url.split_once(&serve.addr).unwrap().1.to_string();
    let over = maskstore_gateway::CONDITIONAL_UPLOAD_BUDGET + 1;
    for (framing, status) in [
        ("Transfer-Encoding: chunked".to_string(), "411"),
        (format!("Content-Length: {over}"), "413"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&serve.addr).await.unwrap();
        let head = format!(
            "PUT {target} HTTP/1.1\r\nHost: {}\r\nIf-None-Match: *\r\n{framing}\r\n\r\n",
            serve.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut got = vec![0u8; 12];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[9..12], status.as_bytes(), "{framing}");
    }
    assert!(!serve.dir.join("data/mask/conditional/big.png").exists());
}

/// A 304 carries no `Content-Length` but the one a 200 would have (RFC 9110 §8.6), on GET
/// and HEAD: a cache that freshens its stored answer from a 304 must not learn the object
/// is empty (before, a HEAD's 304 said `Content-Length: 0`).
#[tokio::test]
async fn a_304_never_promises_another_length() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data").display().to_string();
    let serve = Serve::start(
        dir.path(),
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", "local"),
            ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
            ("APP_OBJECT_STORAGE__FSYNC", "false"),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ],
    );
    let http = reqwest::Client::new();
    let put = serve.sign(SignedMethod::Put, "mask/304/a.png");
    let stored = http.put(put).body(BODY).send().await.unwrap();
    let etag = stored.headers()["etag"].to_str().unwrap().to_string();
    for method in [SignedMethod::Get, SignedMethod::Head] {
        let url = serve.sign(method, "mask/304/a.png");
        let verb = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
        let got = http
            .request(verb, url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status().as_u16(), 304, "{method:?}");
        let length = got.headers().get("content-length").cloned();
        assert!(
            length.as_ref().is_none_or(|l| l == "10"),
            "{method:?} 304 with Content-Length {length:?}"
        );
    }
}
