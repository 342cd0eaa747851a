use std::sync::Mutex;

use chrono::TimeZone;
use object_store::StaticCredentialProvider;

use super::*;

const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn credential(key_id: &str, secret: &str, token: Option<&str>) -> Arc<AwsCredential> {
    Arc::new(AwsCredential {
        key_id: key_id.to_string(),
        secret_key: secret.to_string(),
        token: token.map(str::to_string),
    })
}

fn presigner(endpoint: &str, credential: Arc<AwsCredential>) -> Presigner {
    let provider = StaticCredentialProvider::new(AwsCredential {
        key_id: credential.key_id.clone(),
        secret_key: credential.secret_key.clone(),
        token: credential.token.clone(),
    });
    Presigner::new(
        Arc::new(provider),
        "us-east-1",
        Endpoint::parse(endpoint).unwrap(),
        "b",
    )
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn aws_example_time() -> DateTime<Utc> {
    at(2013, 5, 24, 0, 0, 0)
}

async fn sign(
    p: &Presigner,
    method: SignedMethod,
    key: &str,
    now: DateTime<Utc>,
    options: &SignOptions,
) -> String {
    p.presign(
        &crate::providers::Backend::of(maskstore_core::Provider::S3),
        method,
        &Path::parse(key).unwrap(),
        now,
        Duration::from_secs(86400),
        options,
    )
    .await
    .unwrap()
}

/// The canonical request `p` signs for `method` on `key`.
fn canonical(
    p: &Presigner,
    credential: Arc<AwsCredential>,
    method: SignedMethod,
    key: &str,
    options: &SignOptions,
) -> Draft {
    let stamp = Stamp::of(aws_example_time());
    let derived = Derived::new(credential, &stamp, &p.region);
    let bound = Bound::of(options).unwrap();
    draft(&p.endpoint, &derived, &stamp, method, key, 86400, &bound)
}

fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    url.split_once('?')?
        .1
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn the_aws_query_string_example_is_reproduced_byte_for_byte() {
    // "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", the
    // S3 API reference's example: GET examplebucket/test.txt for 86400 s.
    let p = presigner(
        "https://examplebucket.s3.amazonaws.com",
        credential(KEY_ID, SECRET, None),
    );
    let draft = canonical(
        &p,
        credential(KEY_ID, SECRET, None),
        SignedMethod::Get,
        "test.txt",
        &SignOptions::default(),
    );
    assert_eq!(
        draft.canonical,
        "GET\n\
         /test.txt\n\
         X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n\
         host:examplebucket.s3.amazonaws.com\n\
         \n\
         host\n\
         UNSIGNED-PAYLOAD"
    );
    let url = sign(
        &p,
        SignedMethod::Get,
        "test.txt",
        aws_example_time(),
        &SignOptions::default(),
    )
    .await;
    assert_eq!(
        url,
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

#[tokio::test]
async fn another_secret_key_or_time_gives_another_signature() {
    let reference = sign(
        &presigner(
            "https://examplebucket.s3.amazonaws.com",
            credential(KEY_ID, SECRET, None),
        ),
        SignedMethod::Get,
        "test.txt",
        aws_example_time(),
        &SignOptions::default(),
    )
    .await;
    let other_secret = sign(
        &presigner(
            "https://examplebucket.s3.amazonaws.com",
            credential(KEY_ID, "another-secret", None),
        ),
        SignedMethod::Get,
        "test.txt",
        aws_example_time(),
        &SignOptions::default(),
    )
    .await;
    assert_ne!(
        param(&reference, "X-Amz-Signature"),
        param(&other_secret, "X-Amz-Signature")
    );
}

#[test]
fn each_special_character_of_a_key_is_encoded_as_s3_canonicalises_it() {
    let p = presigner(
        "http://127.0.0.1:8333/pacs-masks",
        credential(KEY_ID, SECRET, None),
    );
    let cases = [
        ("mask/a b.png", "/pacs-masks/mask/a%20b.png"),
        ("mask/a+b.png", "/pacs-masks/mask/a%2Bb.png"),
        ("mask/100%.png", "/pacs-masks/mask/100%25.png"),
        ("mask/a=b.png", "/pacs-masks/mask/a%3Db.png"),
        ("mask/a&b.png", "/pacs-masks/mask/a%26b.png"),
        ("mask/a#b.png", "/pacs-masks/mask/a%23b.png"),
        ("mask/a?b.png", "/pacs-masks/mask/a%3Fb.png"),
        ("mask/환자.png", "/pacs-masks/mask/%ED%99%98%EC%9E%90.png"),
        ("mask/🧠.png", "/pacs-masks/mask/%F0%9F%A7%A0.png"),
        ("mask/A-z_0.9~x/y", "/pacs-masks/mask/A-z_0.9~x/y"),
        (
            "mask/a:b@c!d$e'f(g)h*i,j;k",
            "/pacs-masks/mask/a%3Ab%40c%21d%24e%27f%28g%29h%2Ai%2Cj%3Bk",
        ),
    ];
    for (key, uri) in cases {
        let draft = canonical(
            &p,
            credential(KEY_ID, SECRET, None),
            SignedMethod::Put,
            key,
            &SignOptions::default(),
        );
        assert_eq!(draft.uri, uri, "{key}");
        let lines: Vec<&str> = draft.canonical.lines().collect();
        assert_eq!(lines[0], "PUT");
        assert_eq!(lines[1], uri, "{key}: the canonical URI is the URL's path");
        assert_eq!(lines[3], "host:127.0.0.1:8333");
    }
}

#[tokio::test]
async fn the_url_path_is_the_canonical_uri_unchanged() {
    let p = presigner(
        "http://127.0.0.1:8333/pacs-masks",
        credential(KEY_ID, SECRET, None),
    );
    let url = sign(
        &p,
        SignedMethod::Get,
        "mask/a b+c%d=e&f#g?h/환자 🧠.png",
        aws_example_time(),
        &SignOptions::default(),
    )
    .await;
    let path = url
        .strip_prefix("http://127.0.0.1:8333")
        .and_then(|rest| rest.split_once('?'))
        .unwrap()
        .0;
    assert_eq!(
        path,
        "/pacs-masks/mask/a%20b%2Bc%25d%3De%26f%23g%3Fh/%ED%99%98%EC%9E%90%20%F0%9F%A7%A0.png"
    );
    // A URL parser keeps it as it is: nothing in it is re-encoded on the way out.
    assert_eq!(url::Url::parse(&url).unwrap().path(), path);
}

#[test]
fn a_put_binds_content_length_and_type_in_signed_headers() {
    let p = presigner(
        "https://s3.eu-west-1.amazonaws.com/pacs-masks",
        credential(KEY_ID, SECRET, None),
    );
    let options = SignOptions {
        content_type: Some("  text/plain;   charset=utf-8 ".to_string()),
        content_length: Some(5),
        sha256: None,
    };
    let draft = canonical(
        &p,
        credential(KEY_ID, SECRET, None),
        SignedMethod::Put,
        "mask/a.txt",
        &options,
    );
    let lines: Vec<&str> = draft.canonical.lines().collect();
    assert_eq!(
        &lines[3..],
        [
            "content-length:5",
            "content-type:text/plain; charset=utf-8",
            "host:s3.eu-west-1.amazonaws.com",
            "",
            "content-length;content-type;host",
            "UNSIGNED-PAYLOAD",
        ]
    );
    assert!(
        draft
            .query
            .ends_with("&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
        "{}",
        draft.query
    );
}

#[tokio::test]
async fn a_bound_length_or_type_changes_the_signature() {
    let p = presigner("http://127.0.0.1:8333/b", credential(KEY_ID, SECRET, None));
    let with = |content_length, content_type: Option<&str>| SignOptions {
        content_length,
        content_type: content_type.map(str::to_string),
        sha256: None,
    };
    let mut signatures = Vec::new();
    for options in [
        with(None, None),
        with(Some(5), None),
        with(Some(6), None),
        with(None, Some("image/png")),
        with(Some(5), Some("image/png")),
    ] {
        let url = sign(
            &p,
            SignedMethod::Put,
            "mask/a",
            aws_example_time(),
            &options,
        )
        .await;
        signatures.push(param(&url, "X-Amz-Signature").unwrap().to_string());
    }
    let mut unique = signatures.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), signatures.len(), "{signatures:?}");
}

#[test]
fn a_blank_content_type_is_refused() {
    let options = SignOptions {
        content_type: Some("   ".to_string()),
        content_length: None,
        sha256: None,
    };
    match Bound::of(&options) {
        Err(Error::InvalidMetadata { name, .. }) => assert_eq!(name, "content-type"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_session_token_is_signed_into_the_url() {
    let token = "FwoGZXIvYXdzE+/token=with/slashes";
    let p = presigner(
        "http://127.0.0.1:8333/b",
        credential(KEY_ID, SECRET, Some(token)),
    );
    let draft = canonical(
        &p,
        credential(KEY_ID, SECRET, Some(token)),
        SignedMethod::Get,
        "mask/a",
        &SignOptions::default(),
    );
    let encoded = "FwoGZXIvYXdzE%2B%2Ftoken%3Dwith%2Fslashes";
    assert!(
        draft.query.contains(&format!(
            "&X-Amz-Expires=86400&X-Amz-Security-Token={encoded}&X-Amz-SignedHeaders=host"
        )),
        "{}",
        draft.query
    );
    assert_eq!(draft.canonical.lines().nth(2), Some(draft.query.as_str()));
    let url = sign(
        &p,
        SignedMethod::Get,
        "mask/a",
        aws_example_time(),
        &SignOptions::default(),
    )
    .await;
    assert_eq!(param(&url, "X-Amz-Security-Token"), Some(encoded));
    // Another token, same keys: another signature (the token is signed, not appended).
    let other = sign(
        &presigner(
            "http://127.0.0.1:8333/b",
            credential(KEY_ID, SECRET, Some("another-token")),
        ),
        SignedMethod::Get,
        "mask/a",
        aws_example_time(),
        &SignOptions::default(),
    )
    .await;
    assert_ne!(
        param(&url, "X-Amz-Signature"),
        param(&other, "X-Amz-Signature")
    );
}

/// Credentials that rotate, as the AWS chain's temporary ones do.
#[derive(Debug)]
struct Rotating(Mutex<Arc<AwsCredential>>);

#[async_trait::async_trait]
impl object_store::CredentialProvider for Rotating {
    type Credential = AwsCredential;
    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        Ok(Arc::clone(&self.0.lock().unwrap()))
    }
}

#[tokio::test]
async fn the_signing_key_is_kept_per_day_and_credential_and_follows_rotation() {
    let rotating = Arc::new(Rotating(Mutex::new(credential(
        "ASIAFIRST",
        "s1",
        Some("t1"),
    ))));
    let p = Presigner::new(
        rotating.clone(),
        "us-east-1",
        Endpoint::parse("http://127.0.0.1:8333/b").unwrap(),
        "b",
    );
    let morning = at(2026, 11, 30, 8, 0, 0);
    let get = SignOptions::default();
    sign(&p, SignedMethod::Get, "mask/a", morning, &get).await;
    let first = Arc::clone(p.derived.read().unwrap().as_ref().unwrap());
    sign(
        &p,
        SignedMethod::Get,
        "mask/b",
        at(2026, 11, 30, 23, 59, 59),
        &get,
    )
    .await;
    let same_day = Arc::clone(p.derived.read().unwrap().as_ref().unwrap());
    assert!(Arc::ptr_eq(&first, &same_day), "derived once per day");

    let next_day = at(2026, 12, 1, 0, 0, 0);
    let url = sign(&p, SignedMethod::Get, "mask/a", next_day, &get).await;
    assert!(
        url.contains("%2F20261201%2Fus-east-1%2Fs3%2Faws4_request"),
        "{url}"
    );
    let fresh = sign(
        &presigner(
            "http://127.0.0.1:8333/b",
            credential("ASIAFIRST", "s1", Some("t1")),
        ),
        SignedMethod::Get,
        "mask/a",
        next_day,
        &get,
    )
    .await;
    assert_eq!(url, fresh, "a new day derives a new key");

    *rotating.0.lock().unwrap() = credential("ASIASECOND", "s2", Some("t2"));
    let rotated = sign(&p, SignedMethod::Get, "mask/a", next_day, &get).await;
    let fresh = sign(
        &presigner(
            "http://127.0.0.1:8333/b",
            credential("ASIASECOND", "s2", Some("t2")),
        ),
        SignedMethod::Get,
        "mask/a",
        next_day,
        &get,
    )
    .await;
    assert_eq!(
        rotated, fresh,
        "rotated credentials sign with their own key"
    );
    assert_eq!(param(&rotated, "X-Amz-Security-Token"), Some("t2"));

    // Only the secret rotates (same key id): still a new key.
    *rotating.0.lock().unwrap() = credential("ASIASECOND", "s3", Some("t2"));
    let resecreted = sign(&p, SignedMethod::Get, "mask/a", next_day, &get).await;
    assert_ne!(
        param(&resecreted, "X-Amz-Signature"),
        param(&rotated, "X-Amz-Signature")
    );
}

#[tokio::test]
async fn a_ttl_above_seven_days_or_of_zero_is_refused() {
    let p = presigner("http://127.0.0.1:8333/b", credential(KEY_ID, SECRET, None));
    let path = Path::parse("mask/a").unwrap();
    let now = aws_example_time();
    let options = SignOptions::default();
    let week = p
        .presign(
            &crate::providers::Backend::of(maskstore_core::Provider::S3),
            SignedMethod::Get,
            &path,
            now,
            Duration::from_secs(604_800),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(param(&week, "X-Amz-Expires"), Some("604800"));
    for secs in [0, 604_801] {
        let refused = p
            .presign(
                &crate::providers::Backend::of(maskstore_core::Provider::S3),
                SignedMethod::Get,
                &path,
                now,
                Duration::from_secs(secs),
                &options,
            )
            .await;
        match refused {
            Err(Error::InvalidTtl { requested, max }) => {
                assert_eq!((requested, max), (secs, 604_800))
            }
            other => panic!("{secs}: {other:?}"),
        }
    }
}

#[test]
fn the_stamp_is_written_in_sigv4s_basic_format() {
    assert_eq!(Stamp::of(aws_example_time()).datetime(), "20130524T000000Z");
    let stamp = Stamp::of(at(2026, 11, 30, 17, 5, 9));
    assert_eq!(stamp.datetime(), "20261130T170509Z");
    assert_eq!(stamp.date(), "20261130");
}

#[test]
fn endpoints_keep_ports_styles_and_paths_as_clients_send_them() {
    let cases = [
        (
            "http://127.0.0.1:8333/pacs-masks",
            ("http://127.0.0.1:8333", "127.0.0.1:8333", "/pacs-masks"),
        ),
        (
            "https://s3.us-east-1.amazonaws.com/pacs-masks",
            (
                "https://s3.us-east-1.amazonaws.com",
                "s3.us-east-1.amazonaws.com",
                "/pacs-masks",
            ),
        ),
        (
            "https://pacs-masks.s3.ap-northeast-2.amazonaws.com",
            (
                "https://pacs-masks.s3.ap-northeast-2.amazonaws.com",
                "pacs-masks.s3.ap-northeast-2.amazonaws.com",
                "",
            ),
        ),
        // The scheme's default port is not sent in Host, so it is not signed either.
        (
            "https://minio.example:443/b",
            ("https://minio.example", "minio.example", "/b"),
        ),
        (
            "http://[::1]:9000/b",
            ("http://[::1]:9000", "[::1]:9000", "/b"),
        ),
        (
            "http://gw.example:8080/s3 root/b/",
            ("http://gw.example:8080", "gw.example:8080", "/s3%20root/b"),
        ),
    ];
    for (url, (origin, host, base_path)) in cases {
        let endpoint = Endpoint::parse(url).unwrap();
        assert_eq!(
            (
                endpoint.origin.as_str(),
                endpoint.host.as_str(),
                endpoint.base_path.as_str()
            ),
            (origin, host, base_path),
            "{url}"
        );
    }
}

#[test]
fn endpoints_that_cannot_be_presigned_are_refused() {
    for url in [
        "not a url",
        "ftp://s3.example/b",
        "http://user:pw@s3.example/b",
        "http://s3.example/b?x=1",
        "http://s3.example/b#f",
    ] {
        assert!(Endpoint::parse(url).is_err(), "{url}");
    }
}

#[test]
fn hex_is_lowercase_and_whole() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
}

/// object_store's own presigner (which cannot bind a length, but signs GETs) is an
/// independent implementation: for the same credentials, second and key, both must sign
/// the same canonical request. Built from maskstore configs through the builder, so the
/// bucket URL of each addressing style is checked against the client's too.
#[tokio::test]
async fn object_stores_presigner_agrees_on_every_style_key_and_token() {
    use maskstore_core::{Config, Secret};
    use object_store::signer::{Method, Signer};

    let base = || {
        Config::s3("pacs-masks", "ap-northeast-2")
            .unwrap()
            .with_credentials(KEY_ID, Secret::new(SECRET))
    };
    let mut with_token = base().with_endpoint("http://127.0.0.1:8333").unwrap();
    with_token.object_storage.session_token = Some(Secret::new("FwoG+token/with=odd&chars"));
    let mut virtual_hosted = base()
        .with_endpoint("https://pacs-masks.minio.example:9443")
        .unwrap();
    virtual_hosted.object_storage.virtual_hosted_style = true;
    let mut aws_virtual = base();
    aws_virtual.object_storage.virtual_hosted_style = true;
    let endpoint = |url: &str| base().with_endpoint(url).unwrap();
    let configs = [
        ("aws path style", base()),
        (
            "endpoint with a path",
            endpoint("http://127.0.0.1:8333/base/"),
        ),
        (
            "endpoint with a deeper path",
            endpoint("http://gw.example:8080/s3/root"),
        ),
        ("ipv6 endpoint", endpoint("http://[::1]:9000")),
        ("http endpoint on port 80", endpoint("http://s3.example:80")),
        (
            "https endpoint on port 443",
            endpoint("https://s3.example:443/"),
        ),
        (
            "https endpoint on port 80",
            endpoint("https://s3.example:80"),
        ),
        ("aws virtual-hosted", aws_virtual),
        ("endpoint with a session token", with_token),
        ("virtual-hosted endpoint with a port", virtual_hosted),
    ];
    for (name, config) in configs {
        let (client, presigner) = crate::s3::build(&config).unwrap();
        for key in [
            "mask/a.png",
            "mask/a b+c%d=e&f#g?h/환자 🧠.png",
            "mask/%41%2F~x",
            "mask/a!b*c'd(e)f~g",
            // Not NFC: an "e" and a combining acute accent, signed as the bytes they are.
            "mask/caf\u{65}\u{301}.png",
        ] {
            let path = Path::parse(key).unwrap();
            let theirs = client
                .signed_url(Method::GET, &path, Duration::from_secs(900))
                .await
                .unwrap()
                .to_string();
            let date = param(&theirs, "X-Amz-Date").unwrap();
            let now = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
                .unwrap()
                .and_utc();
            let ours = presigner
                .presign(
                    &crate::providers::Backend::of(maskstore_core::Provider::S3),
                    SignedMethod::Get,
                    &path,
                    now,
                    Duration::from_secs(900),
                    &SignOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(
                param(&ours, "X-Amz-Signature"),
                param(&theirs, "X-Amz-Signature"),
                "{name}, {key}:\n ours   {ours}\n theirs {theirs}"
            );
            assert_eq!(
                ours.split_once('?').unwrap().0,
                theirs.split_once('?').unwrap().0,
                "{name}, {key}: the same object URL"
            );
        }
    }
}

#[test]
fn a_header_after_host_such_as_a_checksum_is_listed_in_order() {
    let p = presigner("http://127.0.0.1:8333/b", credential(KEY_ID, SECRET, None));
    let stamp = Stamp::of(aws_example_time());
    let derived = Derived::new(credential(KEY_ID, SECRET, None), &stamp, &p.region);
    let bound = Bound {
        headers: vec![
            ("content-type", Cow::Borrowed("image/png")),
            (
                "x-amz-checksum-sha256",
                Cow::Borrowed("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="),
            ),
        ],
    };
    let draft = draft(
        &p.endpoint,
        &derived,
        &stamp,
        SignedMethod::Put,
        "mask/a",
        60,
        &bound,
    );
    let lines: Vec<&str> = draft.canonical.lines().collect();
    assert_eq!(
        &lines[3..7],
        [
            "content-type:image/png",
            "host:127.0.0.1:8333",
            "x-amz-checksum-sha256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
            "",
        ]
    );
    assert_eq!(lines[7], "content-type;host;x-amz-checksum-sha256");
    assert!(
        draft
            .query
            .ends_with("X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-checksum-sha256")
    );
}
