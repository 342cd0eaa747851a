//! Browser form uploads (`Storage::signed_post`) against the gateway: the happy paths, and
//! hostile forms (forged and expired policies, field order games, duplicate, huge and
//! countless fields, oversized policies, slow bodies, files over the range or the limit,
//! keys outside the prefix, content types the policy does not allow). Every refusal is a
//! 4xx naming what was wrong, and nothing is stored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use maskstore_backends::signing::{Condition, PostPolicy};
use maskstore_backends::{
    ContentSha256, ContentTypeRule, PostOptions, PostTarget, SignedPost, Storage,
};
use maskstore_core::{Config, KeyPrefix, ObjectKey};
use maskstore_gateway::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway over a local root in a temporary folder, served with `limits` in-process.
pub(crate) struct FormGateway {
    pub(crate) storage: Storage,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FormGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FormGateway {
    pub(crate) async fn start(edit: impl FnOnce(&mut Config)) -> FormGateway {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config::local(dir.path().join("data"));
        config.object_storage.fsync = false;
        config.gateway.public_url = format!("http://{addr}");
        config.gateway.signing_secret = Some(maskstore_core::Secret::new(
            "post-forms-test-secret-0123456789abcdef",
        ));
        edit(&mut config);
        let storage = Storage::connect(&config).unwrap();
        let limits = Limits::from_config(&config.gateway);
        let router =
            maskstore_gateway::objects_router(storage.clone(), &config.cors, &limits).unwrap();
        let server = tokio::spawn(async move {
            let _ = maskstore_gateway::serve_with_limits(
                listener,
                router,
                &limits,
                std::future::pending(),
            )
            .await;
        });
        FormGateway {
            storage,
            dir,
            addr,
            server,
        }
    }

    /// Every file below `mask/` in the root: what the store holds.
    pub(crate) fn stored(&self) -> BTreeSet<PathBuf> {
        walk(&self.dir.path().join("data").join("mask"))
    }
}

fn walk(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.insert(path);
            }
        }
    }
    out
}

/// A multipart/form-data body written part by part, as a hostile client may.
pub(crate) struct Form {
    pub(crate) boundary: String,
    pub(crate) body: Vec<u8>,
}

impl Form {
    pub(crate) fn new() -> Form {
        Form {
            boundary: format!("----maskstore{:016x}", rand::random::<u64>()),
            body: Vec::new(),
        }
    }

    pub(crate) fn field(mut self, name: &str, value: &str) -> Form {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub(crate) fn fields(self, fields: &[(String, String)]) -> Form {
        fields
            .iter()
            .fold(self, |form, (name, value)| form.field(name, value))
    }

    pub(crate) fn file(mut self, filename: &str, bytes: &[u8]) -> Form {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub(crate) fn end(mut self) -> Form {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self
    }

    pub(crate) fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }
}

/// Posts `form` to `url`: the status and the text of the answer.
pub(crate) async fn post(url: &str, form: Form) -> (u16, String, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", form.content_type())
        .body(form.body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap_or_default(), headers)
}

fn prefix(text: &str) -> PostTarget {
    PostTarget::Prefix(KeyPrefix::parse(text).unwrap())
}

fn key(text: &str) -> PostTarget {
    PostTarget::Key(ObjectKey::parse(text).unwrap())
}

fn range(max: u64) -> PostOptions {
    PostOptions {
        length: Some(1..=max),
        ..PostOptions::default()
    }
}

async fn sign(storage: &Storage, target: &PostTarget, options: &PostOptions) -> SignedPost {
    storage.signed_post(target, None, options).await.unwrap()
}

/// Asserts a refusal: its status, a reason containing `names`, the hardening headers.
fn refused(got: &(u16, String, reqwest::header::HeaderMap), status: u16, names: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1.contains(names), "{:?} does not name {names:?}", got.1);
    assert_eq!(got.2["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_form_stores_a_file_within_its_policy_and_refuses_one_outside() {
    let gw = FormGateway::start(|_| {}).await;
    let signed = sign(&gw.storage, &prefix("mask/in/"), &range(10)).await;
    assert!(signed.url.ends_with("/o"), "{}", signed.url);
    let form = || Form::new().fields(&signed.fields);

    let got = post(&signed.url, form().file("seg.bin", b"12345").end()).await;
    assert_eq!(got.0, 204, "{}", got.1);
    assert!(got.2.contains_key("etag"));
    assert_eq!(
        got.2["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    let stored = gw
        .storage
        .get(&ObjectKey::parse("mask/in/seg.bin").unwrap())
        .await
        .unwrap();
    assert_eq!(stored.data.as_ref(), b"12345");

    let before = gw.stored();
    refused(
        &post(&signed.url, form().file("big.bin", b"12345678901").end()).await,
        400,
        "EntityTooLarge",
    );
    refused(
        &post(&signed.url, form().file("empty.bin", b"").end()).await,
        400,
        "EntityTooSmall",
    );
    // A key outside the prefix, however the form is edited.
    let mut outside = signed.fields.clone();
    outside[0].1 = "mask/other/${filename}".to_string();
    refused(
        &post(
            &signed.url,
            Form::new().fields(&outside).file("x.bin", b"1").end(),
        )
        .await,
        403,
        "\"key\"",
    );
    let mut escape = signed.fields.clone();
    escape[0].1 = "mask/in/../../etc/${filename}".to_string();
    let got = post(
        &signed.url,
        Form::new().fields(&escape).file("x.bin", b"1").end(),
    )
    .await;
    assert_eq!(got.0, 400, "{}", got.1);
    // A field the policy does not name.
    let got = post(
        &signed.url,
        form()
            .field("x-amz-meta-who", "me")
            .file("x.bin", b"1")
            .end(),
    )
    .await;
    refused(&got, 403, "x-amz-meta-who");
    assert_eq!(gw.stored(), before, "nothing stored by a refused form");
}

#[tokio::test]
async fn a_form_binds_its_content_type_exactly_or_by_prefix() {
    let gw = FormGateway::start(|_| {}).await;
    // One mask key: the format's type is bound unless told otherwise.
    let signed = sign(&gw.storage, &key("mask/a/seg.png"), &PostOptions::default()).await;
    assert!(
        signed
            .fields
            .contains(&("Content-Type".into(), "image/png".into())),
        "{:?}",
        signed.fields
    );
    let mut html = signed.fields.clone();
    html.iter_mut()
        .find(|(n, _)| n == "Content-Type")
        .unwrap()
        .1 = "text/html".into();
    refused(
        &post(
            &signed.url,
            Form::new().fields(&html).file("a", b"<p>").end(),
        )
        .await,
        403,
        "content-type",
    );
    assert!(gw.stored().is_empty());
    let got = post(
        &signed.url,
        Form::new().fields(&signed.fields).file("a", b"png").end(),
    )
    .await;
    assert_eq!(got.0, 204, "{}", got.1);
    let info = gw
        .storage
        .head(&ObjectKey::parse("mask/a/seg.png").unwrap())
        .await
        .unwrap();
    assert_eq!(info.content_type.as_deref(), Some("image/png"));

    let options = PostOptions {
        content_type: Some(ContentTypeRule::Prefix("image/".into())),
        ..PostOptions::default()
    };
    let signed = sign(&gw.storage, &prefix("mask/b/"), &options).await;
    let form = || Form::new().fields(&signed.fields);
    let got = post(
        &signed.url,
        form()
            .field("Content-Type", "image/nrrd")
            .file("b.nrrd", b"1")
            .end(),
    )
    .await;
    assert_eq!(got.0, 204, "{}", got.1);
    refused(
        &post(
            &signed.url,
            form()
                .field("Content-Type", "text/html")
                .file("c.html", b"1")
                .end(),
        )
        .await,
        403,
        "starting with \"image/\"",
    );
    refused(
        &post(&signed.url, form().file("d.png", b"1").end()).await,
        403,
        "no \"content-type\" field",
    );
}

#[tokio::test]
async fn a_forged_or_expired_policy_is_refused_and_nothing_stored() {
    let gw = FormGateway::start(|_| {}).await;
    let signed = sign(&gw.storage, &prefix("mask/in/"), &range(10)).await;
    let field = |name: &str| {
        signed
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .clone()
    };
    let policy = PostPolicy::from_base64(&field("policy")).unwrap();

    // The policy widened by its holder, the signature kept.
    let mut wide = policy.clone();
    wide.conditions = vec![Condition::StartsWith("key".into(), "mask/".into())];
    let mut forged = signed.fields.clone();
    forged.iter_mut().find(|(n, _)| n == "policy").unwrap().1 = wide.to_base64();
    refused(
        &post(
            &signed.url,
            Form::new().fields(&forged).file("a", b"1").end(),
        )
        .await,
        403,
        "signature does not match",
    );
    // A signature that is not even hex.
    let mut garbled = signed.fields.clone();
    garbled
        .iter_mut()
        .find(|(n, _)| n == "x-maskstore-signature")
        .unwrap()
        .1 = "zz".into();
    refused(
        &post(
            &signed.url,
            Form::new().fields(&garbled).file("a", b"1").end(),
        )
        .await,
        403,
        "signature does not match",
    );
    // A policy the gateway signed, expired an hour ago.
    let mut old = policy.clone();
    old.expiration = chrono::Utc::now() - chrono::Duration::hours(1);
    let old_text = old.to_base64();
    let signer = gw.storage.gateway_signer().unwrap();
    let expired = vec![
        ("key".to_string(), "mask/in/${filename}".to_string()),
        ("policy".to_string(), old_text.clone()),
        (
            "x-maskstore-signature".to_string(),
            signer.sign_policy(&old_text),
        ),
    ];
    refused(
        &post(
            &signed.url,
            Form::new().fields(&expired).file("a", b"1").end(),
        )
        .await,
        403,
        "expired",
    );
    assert!(gw.stored().is_empty());
}

#[tokio::test]
async fn hostile_form_shapes_are_refused_with_the_reason() {
    let gw = FormGateway::start(|_| {}).await;
    let signed = sign(&gw.storage, &prefix("mask/in/"), &range(10)).await;
    let url = &signed.url;
    let fields = &signed.fields;
    // The file before the fields.
    let got = post(url, Form::new().file("a", b"1").fields(fields).end()).await;
    refused(&got, 400, "no \"policy\" field before its file");
    // A field twice.
    let got = post(
        url,
        Form::new()
            .fields(fields)
            .field("key", "mask/in/b")
            .file("a", b"1")
            .end(),
    )
    .await;
    refused(&got, 400, "twice");
    let got = post(
        url,
        Form::new()
            .fields(fields)
            .field("KEY", "mask/in/b")
            .file("a", b"1")
            .end(),
    )
    .await;
    refused(&got, 400, "twice");
    // A huge field value, and an oversized policy.
    let got = post(
        url,
        Form::new()
            .field("key", &"k".repeat(100_000))
            .fields(&fields[1..])
            .file("a", b"1")
            .end(),
    )
    .await;
    refused(&got, 400, "\"key\" is longer than 8192 bytes");
    let mut big_policy = fields.clone();
    big_policy
        .iter_mut()
        .find(|(n, _)| n == "policy")
        .unwrap()
        .1 = "A".repeat(9000);
    let got = post(url, Form::new().fields(&big_policy).file("a", b"1").end()).await;
    refused(&got, 400, "\"policy\" is longer than 8192 bytes");
    // Many parts, and many bytes before the file.
    let mut many = Form::new();
    for i in 0..40 {
        many = many.field(&format!("x-ignore-{i}"), "v");
    }
    refused(
        &post(url, many.fields(fields).file("a", b"1").end()).await,
        400,
        "more than 32 fields",
    );
    let mut heavy = Form::new();
    for i in 0..12 {
        heavy = heavy.field(&format!("x-ignore-{i}"), &"v".repeat(8000));
    }
    refused(
        &post(url, heavy.fields(fields).file("a", b"1").end()).await,
        400,
        "bytes before its file",
    );
    // No file; no filename for ${filename}; not a form; another method.
    refused(
        &post(url, Form::new().fields(fields).end()).await,
        400,
        "no file field",
    );
    refused(
        &post(url, Form::new().fields(fields).file("", b"1").end()).await,
        400,
        "has none",
    );
    let plain = reqwest::Client::new()
        .post(url)
        .body("key=x")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 400);
    let get = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.headers()["x-content-type-options"], "nosniff");
    // RFC 9110: a 405 names the methods the resource takes.
    assert_eq!(get.headers()["allow"], "POST");
    // A body cut off in the middle of the file.
    let mut cut = Form::new().fields(fields).file("a", b"12345");
    cut.body.truncate(cut.body.len() - 4);
    let got = post(url, cut).await;
    assert_eq!(got.0, 400, "{}", got.1);
    assert!(gw.stored().is_empty(), "{:?}", gw.stored());
}

#[tokio::test]
async fn a_form_bound_to_a_sha256_refuses_another_file() {
    let gw = FormGateway::start(|_| {}).await;
    let options = PostOptions {
        sha256: Some(ContentSha256::of(b"the mask")),
        ..PostOptions::default()
    };
    let signed = sign(&gw.storage, &key("mask/s/seg.bin"), &options).await;
    let form = || Form::new().fields(&signed.fields);
    refused(
        &post(&signed.url, form().file("a", b"another").end()).await,
        400,
        "SHA-256",
    );
    assert!(gw.stored().is_empty());
    let got = post(&signed.url, form().file("a", b"the mask").end()).await;
    assert_eq!(got.0, 204, "{}", got.1);
    // A prefix names no one file: refused at issue.
    let got = gw
        .storage
        .signed_post(&prefix("mask/s/"), None, &options)
        .await;
    assert!(
        matches!(got, Err(maskstore_backends::Error::InvalidMetadata { .. })),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_form_is_held_to_the_gateways_size_limit_idle_timeout_and_upload_share() {
    let gw = FormGateway::start(|c| {
        c.gateway.max_upload_bytes = 1000;
        c.gateway.body_idle_timeout_secs = 3;
        c.gateway.max_uploads_per_client = Some(1);
    })
    .await;
    let signed = sign(&gw.storage, &prefix("mask/in/"), &range(1 << 20)).await;
    let form = || Form::new().fields(&signed.fields);
    // Over the gateway's limit though within the policy: 413, announced or streamed.
    let got = post(&signed.url, form().file("a", &vec![b'x'; 5000]).end()).await;
    refused(&got, 413, "gateway.max_upload_bytes");
    let huge = reqwest::Client::new()
        .post(&signed.url)
        .header("content-type", form().content_type())
        .header("content-length", "100000000")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);

    // A form that stalls in its file holds the client's one upload slot, then is cut off.
    let stalled = form().file("slow.bin", b"12345");
    let head = stalled.body[..stalled.body.len() - 3].to_vec();
    let mut socket = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "POST /o HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        gw.addr,
        stalled.content_type(),
        stalled.body.len() + 100
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&head).await.unwrap();
    // Time for the gateway to take the stalled form's slot (well inside its idle timeout).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = post(&signed.url, form().file("b", b"1").end()).await;
    assert_eq!(second.0, 503, "the client's share is held: {}", second.1);
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(gw.stored().is_empty(), "{:?}", gw.stored());
    // The slot is given back.
    let got = post(&signed.url, form().file("c", b"1").end()).await;
    assert_eq!(got.0, 204, "{}", got.1);
}

#[tokio::test]
async fn the_form_endpoint_answers_the_post_preflight_as_configured() {
    let gw = FormGateway::start(|c| {
        c.cors.allowed_origins = vec!["http://localhost:3000".into()];
    })
    .await;
    let url = format!("http://{}/o", gw.addr);
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let foreign = preflight("http://evil.example").await.unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn azure_refuses_form_uploads_with_the_reason_and_says_so() {
    let azure = Storage::connect(
        &Config::azure("pacsmasks", "pacs-masks")
            .unwrap()
            .with_account_key(maskstore_core::Secret::new(
                "YW4tYXp1cmUtYWNjb3VudC1rZXktb2YtMzItYnl0ZXM=",
            )),
    )
    .unwrap();
    assert!(!azure.capabilities().signs_post_policy);
    let got = azure
        .signed_post(&key("mask/a/seg.png"), None, &PostOptions::default())
        .await;
    let Err(maskstore_backends::Error::Unsupported { detail, .. }) = got else {
        panic!("{got:?}");
    };
    assert!(detail.contains("no POST policy"), "{detail}");
    let memory = Storage::memory();
    assert!(memory.capabilities().signs_post_policy && memory.capabilities().binds_post_sha256);
    // A prefix outside the configured one, and an empty range: refused at issue.
    let got = memory
        .signed_post(&prefix("other/"), None, &PostOptions::default())
        .await;
    assert!(
        matches!(got, Err(maskstore_backends::Error::InvalidKey { .. })),
        "{got:?}"
    );
    // An empty range, as an application computing its bounds may make one.
    let (min, max) = (10, 1);
    let empty = PostOptions {
        length: Some(min..=max),
        ..PostOptions::default()
    };
    let got = memory.signed_post(&prefix("mask/"), None, &empty).await;
    assert!(
        matches!(got, Err(maskstore_backends::Error::InvalidMetadata { .. })),
        "{got:?}"
    );
}

/// The form `maskstore presign post --json` prints, posted to `maskstore serve`.
#[tokio::test]
async fn presign_post_prints_a_form_that_serve_takes() {
    use crate::support::{Serve, free_port, maskstore, succeeded, vars};
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let public = format!("http://{addr}");
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", "data"),
        (
            "APP_GATEWAY__SIGNING_SECRET",
            "post-forms-cli-secret-0123456789abcdef",
        ),
        ("APP_GATEWAY__LISTEN", &addr),
        ("APP_GATEWAY__PUBLIC_URL", &public),
    ]);
    let _serve = Serve::start(dir.path(), &env);
    let args = [
        "--json",
        "presign",
        "post",
        "--prefix",
        "mask/cli",
        "--max-size",
        "10",
    ];
    let printed: serde_json::Value =
        serde_json::from_str(&succeeded(&maskstore(dir.path(), &args, &env))).unwrap();
    assert_eq!(printed["url"], format!("{public}/o"));
    assert_eq!(printed["file_field"], "file");
    let fields: Vec<(String, String)> = printed["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(fields.contains(&("key".into(), "mask/cli/${filename}".into())));
    let url = printed["url"].as_str().unwrap();
    let got = post(url, Form::new().fields(&fields).file("a.bin", b"123").end()).await;
    assert_eq!(got.0, 204, "{}", got.1);
    let got = post(
        url,
        Form::new().fields(&fields).file("b.bin", &[b'x'; 11]).end(),
    )
    .await;
    assert_eq!(got.0, 400, "{}", got.1);
    assert!(dir.path().join("data/mask/cli/a.bin").exists());
    assert!(!dir.path().join("data/mask/cli/b.bin").exists());

    // Usage: the form's flags are for post only, and post needs a key or a prefix.
    let out = maskstore(
        dir.path(),
        &["presign", "get", "mask/a.png", "--max-size", "5"],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("presign post"));
    let out = maskstore(dir.path(), &["presign", "post"], &env);
    assert_eq!(out.status.code(), Some(2));
    let out = maskstore(dir.path(), &["presign", "patch", "mask/a.png"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("post (a browser form upload)"));
    // Azure: refused with the reason.
    let azure = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
        ("APP_OBJECT_STORAGE__ACCOUNT", "pacsmasks"),
        ("APP_OBJECT_STORAGE__CONTAINER", "pacs-masks"),
        (
            "APP_OBJECT_STORAGE__ACCOUNT_KEY",
            "YW4tYXp1cmUtYWNjb3VudC1rZXktb2YtMzItYnl0ZXM=",
        ),
    ]);
    let out = maskstore(dir.path(), &["presign", "post", "mask/a.png"], &azure);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no POST policy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The peak resident size of a process, from `/proc/<pid>/status` (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// A 96 MiB file through a form: the gateway's peak resident size grows by far less than
/// the file (it streams; a buffered form would hold all of it).
#[tokio::test]
async fn a_large_form_upload_streams_through_the_gateway() {
    use crate::support::{Serve, free_port, maskstore, succeeded, vars};
    const FILE: usize = 96 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let public = format!("http://{addr}");
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", "data"),
        ("APP_OBJECT_STORAGE__FSYNC", "false"),
        (
            "APP_GATEWAY__SIGNING_SECRET",
            "post-forms-cli-secret-0123456789abcdef",
        ),
        ("APP_GATEWAY__LISTEN", &addr),
        ("APP_GATEWAY__PUBLIC_URL", &public),
    ]);
    let serve = Serve::start(dir.path(), &env);
    let args = ["--json", "presign", "post", "mask/big/seg.bin"];
    let printed: serde_json::Value =
        serde_json::from_str(&succeeded(&maskstore(dir.path(), &args, &env))).unwrap();
    let fields: Vec<(String, String)> = printed["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let before = peak_rss(serve.child.id());
    let form = Form::new().fields(&fields).file("seg.bin", b"");
    // The form with an empty file, split where the file's bytes go.
    let split = form.body.len() - 2;
    let tail = format!("\r\n--{}--\r\n", form.boundary);
    let length = split + FILE + tail.len();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /o HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        form.content_type()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&form.body[..split]).await.unwrap();
    let chunk = vec![b'm'; 1024 * 1024];
    for _ in 0..FILE / chunk.len() {
        socket.write_all(&chunk).await.unwrap();
    }
    socket.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let grown = peak_rss(serve.child.id()).saturating_sub(before);
    println!(
        "a {} MiB form upload grew the gateway's peak RSS by {} MiB",
        FILE >> 20,
        grown >> 20
    );
    assert!(grown < 40 * 1024 * 1024, "grew by {grown} bytes");
    let stored = std::fs::metadata(dir.path().join("data/mask/big/seg.bin")).unwrap();
    assert_eq!(stored.len(), FILE as u64);
}

/// A request that has shown no signed policy yet holds no upload slot: clients without a
/// form cannot take the gateway's uploads from those with one by trickling fields.
#[tokio::test]
async fn a_form_still_sending_its_fields_holds_no_upload_slot() {
    let gw = FormGateway::start(|c| {
        c.gateway.max_concurrent_uploads = 1;
        c.gateway.max_uploads_per_client = Some(1);
    })
    .await;
    let signed = sign(&gw.storage, &prefix("mask/in/"), &range(10)).await;
    // No policy, no signature: half a field, then nothing (well inside the idle timeout).
    let stalled = Form::new().field("key", "mask/in/${filename}");
    let mut socket = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "POST /o HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: 100000\r\n\r\n",
        gw.addr,
        stalled.content_type(),
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
        .write_all(&stalled.body[..stalled.body.len() - 5])
        .await
        .unwrap();
    // Time for the gateway to read what was sent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = post(
        &signed.url,
        Form::new().fields(&signed.fields).file("a.bin", b"1").end(),
    )
    .await;
    assert_eq!(got.0, 204, "{}", got.1);
    drop(socket);
}

/// The length range at its exact ends, with the body's length announced and sent chunked
/// (no Content-Length): the smallest and largest sizes land, one byte outside does not.
#[tokio::test]
async fn the_length_range_holds_at_its_exact_ends_with_and_without_content_length() {
    let gw = FormGateway::start(|_| {}).await;
    let options = PostOptions {
        length: Some(3..=10),
        ..PostOptions::default()
    };
    let signed = sign(&gw.storage, &prefix("mask/edge/"), &options).await;
    for chunked in [false, true] {
        for (size, status) in [(2, 400), (3, 204), (10, 204), (11, 400)] {
            let name = format!("{size}-{chunked}.bin");
            let form = Form::new()
                .fields(&signed.fields)
                .file(&name, &vec![b'x'; size])
                .end();
            let got = if chunked {
                let content_type = form.content_type();
                // One byte a chunk: the file's end is found across reads.
                let bytes: Vec<std::io::Result<Vec<u8>>> =
                    form.body.into_iter().map(|b| Ok(vec![b])).collect();
                let response = reqwest::Client::new()
                    .post(&signed.url)
                    .header("content-type", content_type)
                    .body(reqwest::Body::wrap_stream(futures::stream::iter(bytes)))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            } else {
                let got = post(&signed.url, form).await;
                (got.0, got.1)
            };
            assert_eq!(got.0, status, "{size} bytes, chunked {chunked}: {}", got.1);
            let stored = gw
                .storage
                .head(&ObjectKey::parse(format!("mask/edge/{name}")).unwrap())
                .await;
            assert_eq!(stored.is_ok(), status == 204, "{name}: {stored:?}");
        }
    }
}

/// The file's name completes `${filename}`: a name that steps out of the prefix, or that no
/// key may hold, is refused with the name escaped and nothing stored; a Korean name lands.
#[tokio::test]
async fn a_file_name_cannot_take_the_key_out_of_its_prefix() {
    let gw = FormGateway::start(|_| {}).await;
    let signed = sign(&gw.storage, &prefix("mask/names/"), &range(10)).await;
    for name in [
        "..",
        "a/../../x",
        "/etc/x",
        "a\\b",
        "x\u{1b}[31m",
        "a\u{202e}gnp.exe",
    ] {
        let got = post(
            &signed.url,
            Form::new().fields(&signed.fields).file(name, b"1").end(),
        )
        .await;
        assert!(matches!(got.0, 400 | 403), "{name:?}: {} {}", got.0, got.1);
        assert!(
            !got.1.contains('\u{1b}') && !got.1.contains('\u{202e}'),
            "{:?}",
            got.1
        );
    }
    assert!(gw.stored().is_empty(), "{:?}", gw.stored());
    let got = post(
        &signed.url,
        Form::new()
            .fields(&signed.fields)
            .file("분할 마스크.png", b"1")
            .end(),
    )
    .await;
    assert_eq!(got.0, 204, "{}", got.1);
    gw.storage
        .head(&ObjectKey::parse("mask/names/분할 마스크.png").unwrap())
        .await
        .unwrap();
}

/// Until its policy's signature is checked a form is anyone's request: its fields, like a
/// request's head, must arrive within `gateway.header_timeout`, however steadily they
/// trickle (each byte inside the body's idle timeout).
#[tokio::test]
async fn a_form_trickling_its_fields_is_cut_off_at_the_header_timeout() {
    let gw = FormGateway::start(|c| {
        c.gateway.header_timeout_secs = 2;
        c.gateway.body_idle_timeout_secs = 120;
    })
    .await;
    let signed = sign(&gw.storage, &prefix("mask/in/"), &range(10)).await;
    let form = Form::new().fields(&signed.fields).file("a.bin", b"1").end();
    let socket = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let head = format!(
        "POST /o HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        gw.addr,
        form.content_type(),
        form.body.len()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        // A byte every 200 ms: never idle, and 40 s to send the fields.
        for byte in form.body {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // The answer, read until its reason arrives or the gateway closes the connection.
    let mut answer = Vec::new();
    let reading = async {
        let mut buf = [0; 4096];
        while !String::from_utf8_lossy(&answer).contains("header_timeout") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the gateway answers while the fields still trickle");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("gateway.header_timeout"), "{answer}");
    trickle.abort();
    assert!(gw.stored().is_empty(), "{:?}", gw.stored());
}

/// Forms racing to one key: one of them lands whole, none torn, nothing else left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_racing_to_one_key_leave_one_whole_file() {
    let gw = FormGateway::start(|_| {}).await;
    let signed = sign(
        &gw.storage,
        &key("mask/race/seg.bin"),
        &PostOptions::default(),
    )
    .await;
    let files: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 3 << 20]).collect();
    let posts = files.iter().map(|bytes| {
        let form = Form::new()
            .fields(&signed.fields)
            .file("seg.bin", bytes)
            .end();
        post(&signed.url, form)
    });
    for got in futures::future::join_all(posts).await {
        assert_eq!(got.0, 204, "{}", got.1);
    }
    let stored = gw
        .storage
        .get(&ObjectKey::parse("mask/race/seg.bin").unwrap())
        .await
        .unwrap();
    assert!(
        files.iter().any(|f| f[..] == stored.data[..]),
        "a torn file"
    );
    // No temporary file of a losing form is left anywhere in the root (locks aside).
    let left: Vec<PathBuf> = walk(&gw.dir.path().join("data"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/.maskstore/locks/"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// A script's form upload (fetch with FormData) from an allowed origin can read its answer:
/// the 204 and a refusal carry the origin's grant and expose the ETag.
#[tokio::test]
async fn a_scripts_form_upload_reads_its_answer_from_an_allowed_origin() {
    let gw = FormGateway::start(|c| {
        c.cors.allowed_origins = vec!["http://localhost:3000".into()];
    })
    .await;
    let signed = sign(&gw.storage, &prefix("mask/cors/"), &range(10)).await;
    for (bytes, status) in [(&b"12345"[..], 204), (&b"12345678901"[..], 400)] {
        let form = Form::new()
            .fields(&signed.fields)
            .file("seg.bin", bytes)
            .end();
        let response = reqwest::Client::new()
            .post(&signed.url)
            .header("origin", "http://localhost:3000")
            .header("content-type", form.content_type())
            .body(form.body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        let headers = response.headers();
        assert_eq!(
            headers["access-control-allow-origin"],
            "http://localhost:3000"
        );
        if status == 204 {
            let exposed = headers["access-control-expose-headers"].to_str().unwrap();
            assert!(exposed.to_ascii_lowercase().contains("etag"), "{exposed}");
        }
    }
}
