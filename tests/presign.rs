//! `maskstore presign` and `maskstore serve` as processes, with a plain HTTP client
//! holding no credentials: on local disk, in memory, and against SeaweedFS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use maskstore_testkit::servers;

use crate::support::{Serve, maskstore, succeeded, text, vars};

fn presign(dir: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let out = maskstore(dir, &[&["presign"], args].concat(), env);
    let stdout = succeeded(&out);
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the URL on stdout: {stdout}"
    );
    assert!(text(&out.stderr).contains("expires"), "expiry on stderr");
    stdout.trim().to_string()
}

/// The done-when of the signed-URL issue: an upload to a `presign put` URL reads back
/// identical through a `presign get` URL; tampered and expired variants get 403.
async fn upload_then_download(dir: &Path, env: &[(String, String)], prefix: &str) {
    let key = &format!("{prefix}1.2.840.1/1.2.840.2/seg-1.nii.gz");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let http = reqwest::Client::new();

    let put = presign(
        dir,
        env,
        &["put", key, "--content-type", "application/gzip"],
    );
    let response = http
        .put(&put)
        .header("content-type", "application/gzip")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "PUT: {}", response.status());

    let get = presign(dir, env, &["get", key, "--ttl", "60"]);
    let response = http.get(&get).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.bytes().await.unwrap() == body,
        "downloaded bytes differ"
    );

    let wrong_type = http
        .put(&put)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status().as_u16(), 403);
    let other_key = get.replacen("seg-1", "seg-2", 1);
    assert_eq!(
        http.get(&other_key).send().await.unwrap().status().as_u16(),
        403
    );
    let as_delete = http.delete(&get).send().await.unwrap();
    assert_eq!(as_delete.status().as_u16(), 403);

    let short = presign(dir, env, &["get", key, "--ttl", "1"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        http.get(&short).send().await.unwrap().status().as_u16(),
        403
    );

    let delete = presign(dir, env, &["delete", key]);
    assert!(
        http.delete(&delete)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(http.get(&get).send().await.unwrap().status().as_u16(), 404);
}

#[tokio::test]
async fn presigned_urls_round_trip_through_serve_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let env = vars(&[("APP_GATEWAY__LISTEN", &listen)]);
    let _serve = Serve::start(dir.path(), &env);
    upload_then_download(dir.path(), &env, "mask/").await;
    // The development secret is kept beside the root (not inside it, where copies of the
    // data would carry it), readable by the owner only.
    let secret = dir.path().join(".data.signing-secret");
    assert!(!dir.path().join("data/.maskstore/signing-secret").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn presigned_urls_round_trip_through_serve_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "memory"),
        ("APP_GATEWAY__LISTEN", &listen),
        (
            "APP_GATEWAY__SIGNING_SECRET",
            "memory-test-secret-of-32-bytes-or-more",
        ),
    ]);
    let _serve = Serve::start(dir.path(), &env);
    upload_then_download(dir.path(), &env, "mask/").await;
}

#[tokio::test]
async fn presigned_urls_round_trip_on_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A prefix of its own: the test bucket is shared by every test of the run.
    let prefix = server.config().object_storage.prefix.to_string();
    let mut env = server.app_env();
    env.push(("APP_OBJECT_STORAGE__PREFIX".into(), prefix.clone()));
    upload_then_download(dir.path(), &env, &prefix).await;
}

#[test]
fn ttl_above_the_maximum_fails_naming_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["presign", "get", "mask/a.png", "--ttl", "7200"],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3600"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn presign_in_memory_without_a_secret_refuses_to_print_a_useless_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["presign", "get", "mask/a.png"],
        &vars(&[("APP_OBJECT_STORAGE__PROVIDER", "memory")]),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("APP_GATEWAY__SIGNING_SECRET"));
}

#[test]
fn serve_refuses_s3() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-dev"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
    ]);
    let out = maskstore(dir.path(), &["serve"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("local and memory"),
        "{}",
        text(&out.stderr)
    );
}

/// A PUT URL bound to a content length refuses any other length, on the gateway.
#[tokio::test]
async fn bound_content_length_is_enforced_by_the_gateway() {
    let storage = maskstore_testkit::memory_served().await;
    let key = storage.key("bound/length.bin").unwrap();
    let options = maskstore_backends::SignOptions {
        content_type: None,
        content_length: Some(5),
        sha256: None,
    };
    let url = storage
        .signed_url(maskstore_backends::SignedMethod::Put, &key, None, &options)
        .await
        .unwrap()
        .url;
    let http = reqwest::Client::new();
    let longer = http.put(&url).body("123456").send().await.unwrap();
    assert_eq!(longer.status().as_u16(), 403);
    assert!(longer.text().await.unwrap().contains("content length 6"));
    assert!(!storage.exists(&key).await.unwrap());
    let exact = http.put(&url).body("12345").send().await.unwrap();
    assert!(exact.status().is_success());
    assert_eq!(storage.get(&key).await.unwrap().data, "12345");
}

// ---------------------------------------------------------------------------------------
// S3 presigned URLs on SeaweedFS (auth enforced, signatures verified), used with curl.

/// The path of curl, or `None` (skip) outside CI when it is missing.
fn curl() -> Option<&'static str> {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("curl");
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "curl is missing; CI must run the curl tests"
    );
    eprintln!("skipping curl tests: curl is not installed");
    None
}

/// Runs curl on `url` with `args`; returns the status and the body it received.
fn curl_request(method: &str, url: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--path-as-is",
            "-X",
            method,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    succeeded(&out);
    let split = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("curl wrote the status");
    let code = text(&out.stdout[split + 1..]).trim().parse().unwrap();
    (code, out.stdout[..split].to_vec())
}

fn put_file(dir: &Path, body: &[u8]) -> String {
    let file = dir.join(format!("body-{}", rand::random::<u32>()));
    std::fs::write(&file, body).unwrap();
    format!("@{}", file.display())
}

async fn url(
    storage: &maskstore::Storage,
    method: maskstore::SignedMethod,
    key: &maskstore::ObjectKey,
    options: &maskstore::SignOptions,
) -> String {
    storage
        .signed_url(method, key, Some(300), options)
        .await
        .unwrap()
        .url
}

#[tokio::test]
async fn every_special_character_key_round_trips_through_presigned_put_and_get_with_curl() {
    let (Some(server), Some(_)) = (servers::seaweedfs(), curl()) else {
        return;
    };
    use maskstore::{SignOptions, SignedMethod};
    let storage = server.storage();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a b.png",
        "a+b.png",
        "100%.png",
        "%41%2F.png",
        "a=b.png",
        "a&b.png",
        "a#b.png",
        "a?b.png",
        "환자.png",
        "🧠.png",
        "x/a b+c%d=e&f#g?h 환자 🧠~.png",
    ] {
        let key = storage.key(name).unwrap();
        let body = format!("the bytes of {name}");
        let options = SignOptions {
            content_type: Some("application/octet-stream".to_string()),
            content_length: Some(body.len() as u64),
            sha256: None,
        };
        let put = url(&storage, SignedMethod::Put, &key, &options).await;
        let file = put_file(dir.path(), body.as_bytes());
        let (code, answer) = curl_request(
            "PUT",
            &put,
            &[
                "--data-binary",
                &file,
                "-H",
                "Content-Type: application/octet-stream",
            ],
        );
        assert_eq!(code, 200, "PUT {name}: {}", text(&answer));
        // Stored under exactly this key, not an encoded spelling of it.
        assert_eq!(storage.get(&key).await.unwrap().data, body, "{name}");
        let get = url(&storage, SignedMethod::Get, &key, &SignOptions::default()).await;
        let (code, answer) = curl_request("GET", &get, &[]);
        assert_eq!(code, 200, "GET {name}: {}", text(&answer));
        assert_eq!(text(&answer), body, "{name}");
    }
}

#[tokio::test]
async fn tampered_presigned_s3_urls_are_refused_with_curl() {
    let (Some(server), Some(_)) = (servers::seaweedfs(), curl()) else {
        return;
    };
    use maskstore::{SignOptions, SignedMethod};
    let storage = server.storage();
    let dir = tempfile::tempdir().unwrap();
    let key = storage.key("tamper/bound.bin").unwrap();
    let options = SignOptions {
        content_type: Some("image/png".to_string()),
        content_length: Some(4),
        sha256: None,
    };
    let put = url(&storage, SignedMethod::Put, &key, &options).await;
    let big = put_file(dir.path(), &[7u8; 4096]);
    let png = ["-H", "Content-Type: image/png"];
    let tampered = [
        // Unbinding the length (or the type) from the signed headers.
        put.replace(
            "content-length%3Bcontent-type%3Bhost",
            "content-type%3Bhost",
        ),
        put.replace(
            "content-length%3Bcontent-type%3Bhost",
            "content-length%3Bhost",
        ),
        put.replace("content-length%3Bcontent-type%3Bhost", "host"),
        // A longer life, another date, another key.
        put.replace("X-Amz-Expires=300", "X-Amz-Expires=301"),
        put.replacen("X-Amz-Date=20", "X-Amz-Date=19", 1),
        put.replacen("bound.bin", "other.bin", 1),
    ];
    for (i, url) in tampered.iter().enumerate() {
        assert_ne!(url, &put, "tampering {i} changed nothing");
        let (code, _) = curl_request(
            "PUT",
            url,
            &[&["--data-binary", big.as_str()][..], &png].concat(),
        );
        assert_eq!(code, 403, "tampering {i}: {url}");
    }
    assert!(!storage.exists(&key).await.unwrap());
    let exact = put_file(dir.path(), b"\x89PNG");
    let (code, answer) = curl_request(
        "PUT",
        &put,
        &[&["--data-binary", exact.as_str()][..], &png].concat(),
    );
    assert_eq!(code, 200, "{}", text(&answer));
}

/// The reproduction: on AWS (no endpoint, static keys) `presign put
/// --content-length` exited 1 blaming the backend. It signs, without any network call.
#[test]
fn presign_put_with_a_content_length_signs_on_s3_without_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-prod"),
        ("APP_OBJECT_STORAGE__REGION", "ap-northeast-2"),
        ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        (
            "APP_OBJECT_STORAGE__SECRET_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ]);
    let url = presign(
        dir.path(),
        &env,
        &[
            "put",
            "mask/1.2/3.4/seg 1.nii.gz",
            "--content-length",
            "1048576",
            "--content-type",
            "application/gzip",
        ],
    );
    assert!(
        url.starts_with(
            "https://s3.ap-northeast-2.amazonaws.com/pacs-masks-prod/mask/1.2/3.4/seg%201.nii.gz?"
        ),
        "{url}"
    );
    assert!(
        url.contains("&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&"),
        "{url}"
    );
    assert!(
        !url.contains("EXAMPLEKEY"),
        "the secret stays out of the URL"
    );
}

/// A bound header on another method than PUT is the operator's mistake: exit 2, naming
/// the option and the fix, never "backend failed".
#[test]
fn presign_get_with_a_content_length_is_refused_as_the_callers_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-prod"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
        ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        (
            "APP_OBJECT_STORAGE__SECRET_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ]);
    let out = maskstore(
        dir.path(),
        &["presign", "get", "mask/a.png", "--content-length", "5"],
        &env,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("content-length") && stderr.contains("PUT"),
        "{stderr}"
    );
    assert!(!stderr.contains("backend failed"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `maskstore presign put KEY --content-length N` on SeaweedFS: exactly N bytes are
/// stored, N-1 and N+1 are refused.
#[tokio::test]
async fn presign_put_with_a_content_length_binds_it_on_seaweedfs() {
    let (Some(server), Some(_)) = (servers::seaweedfs(), curl()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = server.config().object_storage.prefix.to_string();
    let mut env = server.app_env();
    env.push(("APP_OBJECT_STORAGE__PREFIX".into(), prefix.clone()));
    let key = format!("{prefix}cli/bound.bin");
    let put = presign(dir.path(), &env, &["put", &key, "--content-length", "1000"]);
    for size in [999, 1001] {
        let file = put_file(dir.path(), &vec![1u8; size]);
        let (code, _) = curl_request("PUT", &put, &["--data-binary", &file]);
        assert_eq!(code, 403, "{size} bytes against a bound 1000");
    }
    let file = put_file(dir.path(), &[2u8; 1000]);
    let (code, answer) = curl_request("PUT", &put, &["--data-binary", &file]);
    assert_eq!(code, 200, "{}", text(&answer));
    let get = presign(dir.path(), &env, &["get", &key]);
    let (code, body) = curl_request("GET", &get, &[]);
    assert_eq!((code, body), (200, vec![2u8; 1000]));
}

// ---------------------------------------------------------------------------------------
// Temporary credentials: SeaweedFS's STS issues them (scripts/test-servers gives the test
// identity a role it may assume), and its S3 verifies the session token of a presigned URL.

/// Temporary credentials issued by an STS.
struct TemporaryCredentials {
    access_key: String,
    secret_key: String,
    session_token: String,
}

/// The text of the one `<tag>` element in an STS answer.
fn xml_element(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = body
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in the STS answer"))
        + open.len();
    let end = start
        + body[start..]
            .find(&format!("</{tag}>"))
            .unwrap_or_else(|| panic!("<{tag}> is not closed in the STS answer"));
    let value = &body[start..end];
    assert!(
        !value.contains('&'),
        "<{tag}> carries an XML entity this parser does not decode"
    );
    value.to_string()
}

/// Temporary credentials for the test identity from SeaweedFS's STS (`AssumeRole`, signed
/// with SigV4 by curl), or `None` (skip) outside CI when the servers were started without
/// an STS role. Under CI=true a missing role fails the test; a refusal fails it everywhere.
fn assume_role(server: &servers::S3Server) -> Option<TemporaryCredentials> {
    let Ok(role_arn) = std::env::var("MASKSTORE_TEST_SEAWEEDFS_STS_ROLE_ARN") else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "MASKSTORE_TEST_SEAWEEDFS_STS_ROLE_ARN is not set; under CI=true the session-token \
             tests must not skip (scripts/test-servers start sets it)"
        );
        eprintln!("skipping session-token tests: no STS role (restart scripts/test-servers)");
        return None;
    };
    use std::io::Write;
    // The keys go through curl's config on stdin, never its command line.
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-K",
            "-",
            "--aws-sigv4",
            "aws:amz:us-east-1:sts",
            "--data-urlencode",
            "Action=AssumeRole",
            "--data-urlencode",
            "Version=2011-06-15",
            "--data-urlencode",
            &format!("RoleArn={role_arn}"),
            "--data-urlencode",
            "RoleSessionName=maskstore-presign-test",
            "--data-urlencode",
            "DurationSeconds=900",
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("{}/", server.endpoint.trim_end_matches('/')))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl runs");
    writeln!(
        curl.stdin.take().unwrap(),
        "user = \"{}:{}\"",
        server.access_key,
        server.secret_key.expose()
    )
    .unwrap();
    let out = curl.wait_with_output().unwrap();
    succeeded(&out);
    let answer = text(&out.stdout);
    let (body, code) = answer.rsplit_once('\n').expect("curl wrote the status");
    assert_eq!(code, "200", "SeaweedFS STS refused AssumeRole: {body}");
    Some(TemporaryCredentials {
        access_key: xml_element(body, "AccessKeyId"),
        secret_key: xml_element(body, "SecretAccessKey"),
        session_token: xml_element(body, "SessionToken"),
    })
}

/// `url` with the value of its `X-Amz-Security-Token` replaced by `f(value)`, or the
/// parameter removed when `f` returns `None`.
fn with_token(url: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let name = "X-Amz-Security-Token=";
    let start = url.find(name).expect("the URL carries a session token");
    let end = url[start..].find('&').map_or(url.len(), |i| start + i);
    let value = &url[start + name.len()..end];
    match f(value) {
        Some(new) => format!("{}{name}{new}{}", &url[..start], &url[end..]),
        // Drop the parameter with the `&` that joins it to its neighbour.
        None if url[..start].ends_with('&') => format!("{}{}", &url[..start - 1], &url[end..]),
        None => format!("{}{}", &url[..start], url[end..].trim_start_matches('&')),
    }
}

#[tokio::test]
async fn presigned_urls_with_a_session_token_work_on_seaweedfs_and_the_token_is_bound() {
    let (Some(server), Some(_)) = (servers::seaweedfs(), curl()) else {
        return;
    };
    let Some(creds) = assume_role(&server) else {
        return;
    };
    assert!(creds.access_key != server.access_key && !creds.session_token.is_empty());
    use maskstore::{SignOptions, SignedMethod};
    let mut config = server.config().with_credentials(
        &creds.access_key,
        maskstore_core::Secret::new(creds.secret_key.clone()),
    );
    config.object_storage.session_token =
        Some(maskstore_core::Secret::new(creds.session_token.clone()));
    let storage = maskstore::Storage::connect(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = storage.key("session/seg 1+1.png").unwrap();
    let body = b"\x89PNG session-token bytes";
    let options = SignOptions {
        content_type: Some("image/png".to_string()),
        content_length: Some(body.len() as u64),
        sha256: None,
    };
    let png = ["-H", "Content-Type: image/png"];
    let put = url(&storage, SignedMethod::Put, &key, &options).await;
    let get = url(&storage, SignedMethod::Get, &key, &SignOptions::default()).await;
    for u in [&put, &get] {
        assert!(u.contains("X-Amz-Security-Token="), "{u}");
        assert!(
            u.contains(&format!("X-Amz-Credential={}%2F", creds.access_key)),
            "{u}"
        );
    }

    // The token altered (a claim changed, so its own signature breaks), replaced by
    // garbage, or removed: refused, and nothing is stored.
    let altered = |t: &str| {
        let mut chars: Vec<char> = t.chars().collect();
        let mid = chars.len() / 2;
        chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
        Some(chars.into_iter().collect())
    };
    let hostile = |u: &str| {
        [
            with_token(u, altered),
            with_token(u, |_| Some("not-a-token".to_string())),
            with_token(u, |_| None),
        ]
    };
    let file = put_file(dir.path(), body);
    for (i, bad) in hostile(&put).iter().enumerate() {
        assert_ne!(bad, &put);
        let (code, answer) = curl_request(
            "PUT",
            bad,
            &[&["--data-binary", file.as_str()][..], &png].concat(),
        );
        assert_eq!(code, 403, "PUT, token tampering {i}: {}", text(&answer));
    }
    assert!(!storage.exists(&key).await.unwrap());

    // The URLs as signed: the bound upload is stored, the download returns it.
    let (code, answer) = curl_request(
        "PUT",
        &put,
        &[&["--data-binary", file.as_str()][..], &png].concat(),
    );
    assert_eq!(code, 200, "PUT with a session token: {}", text(&answer));
    let (code, answer) = curl_request("GET", &get, &[]);
    assert_eq!((code, answer.as_slice()), (200, &body[..]));
    for (i, bad) in hostile(&get).iter().enumerate() {
        let (code, answer) = curl_request("GET", bad, &[]);
        assert_eq!(code, 403, "GET, token tampering {i}: {}", text(&answer));
    }
    // The bound length still holds under a session: one byte more is refused.
    let longer = put_file(dir.path(), &[body.as_slice(), b"!"].concat());
    let (code, _) = curl_request(
        "PUT",
        &put,
        &[&["--data-binary", longer.as_str()][..], &png].concat(),
    );
    assert_eq!(code, 403, "N+1 bytes under a session token");

    // The same temporary keys without their token sign URLs SeaweedFS refuses: the
    // token is what makes them valid.
    let mut tokenless = config.clone();
    tokenless.object_storage.session_token = None;
    let tokenless = maskstore::Storage::connect(&tokenless).unwrap();
    let get = url(&tokenless, SignedMethod::Get, &key, &SignOptions::default()).await;
    assert!(!get.contains("X-Amz-Security-Token"));
    let (code, _) = curl_request("GET", &get, &[]);
    assert_eq!(code, 403, "temporary keys without their session token");

    // The config key `object_storage.session_token` through the CLI.
    let prefix = config.object_storage.prefix.to_string();
    let mut env = server.app_env();
    env.retain(|(k, _)| !k.ends_with("_ACCESS_KEY") && !k.ends_with("_SECRET_KEY"));
    env.extend([
        ("APP_OBJECT_STORAGE__PREFIX".to_string(), prefix.clone()),
        (
            "APP_OBJECT_STORAGE__ACCESS_KEY".to_string(),
            creds.access_key.clone(),
        ),
        (
            "APP_OBJECT_STORAGE__SECRET_KEY".to_string(),
            creds.secret_key.clone(),
        ),
        (
            "APP_OBJECT_STORAGE__SESSION_TOKEN".to_string(),
            creds.session_token.clone(),
        ),
    ]);
    let cli_get = presign(
        dir.path(),
        &env,
        &["get", &format!("{prefix}session/seg 1+1.png")],
    );
    assert!(cli_get.contains("X-Amz-Security-Token="));
    let (code, answer) = curl_request("GET", &cli_get, &[]);
    assert_eq!((code, answer.as_slice()), (200, &body[..]));
}
