//! The `signed_url_checks` cases: signed URLs that are expired, tampered with or misused
//! are refused (they need a server that verifies signatures).

use maskstore_backends::{SignOptions, SignedMethod, Storage};

use super::{data, key, png, put, sign, status};

/// A URL used after its expiry is refused.
pub async fn expired_url_is_refused(s: Storage) {
    let k = put(&s, "expiring.bin", "x").await;
    let url = s
        .signed_url(SignedMethod::Get, &k, Some(1), &SignOptions::default())
        .await
        .unwrap()
        .url;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(status("GET", &url, &[], "").await, 403);
}

/// The signature parameter: `X-Amz-Signature`, `X-Goog-Signature`, the gateway's, or an
/// Azure SAS's `sig`.
fn signature(url: &str) -> (String, String) {
    find(url, |name| name.ends_with("signature") || name == "sig")
        .unwrap_or_else(|| panic!("no signature parameter in {url}"))
}

/// The first query parameter whose lowercase name `matches`, as (name, value).
fn find(url: &str, matches: impl Fn(&str) -> bool) -> Option<(String, String)> {
    let query = url.split_once('?').expect("a query").1;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| matches(&name.to_ascii_lowercase()))
        .map(|(n, v)| (n.to_string(), v.to_string()))
}

/// A URL whose signature was changed is refused.
pub async fn url_with_changed_signature_is_refused(s: Storage) {
    let k = put(&s, "sig.bin", "x").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let (name, value) = signature(&url);
    // One character changed within its class, so the value stays well-formed (hex, or an
    // Azure SAS's base64): the server must refuse the signature, not the syntax.
    let first = value.chars().next().expect("a signature");
    let other = match first {
        '0'..='8' => char::from(first as u8 + 1),
        '9' => '0',
        'a'..='y' | 'A'..='Y' => char::from(first as u8 + 1),
        'z' => 'a',
        'Z' => 'A',
        _ => 'A',
    };
    let flipped = format!("{other}{}", &value[first.len_utf8()..]);
    let tampered = url.replace(&format!("{name}={value}"), &format!("{name}={flipped}"));
    assert_ne!(tampered, url);
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}

/// A URL whose key was changed is refused: it does not open another object.
pub async fn url_with_changed_key_is_refused(s: Storage) {
    let k = put(&s, "granted.bin", "granted").await;
    put(&s, "grantee.bin", "other").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let tampered = url.replacen("granted.bin", "grantee.bin", 1);
    assert_ne!(tampered, url);
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}

/// A URL whose expiry was changed is refused.
pub async fn url_with_changed_expiry_is_refused(s: Storage) {
    let k = put(&s, "exp.bin", "x").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    // S3's `X-Amz-Expires` and the gateway's expiry are numbers; an Azure SAS's `se` is a
    // time (`2026-11-30T20%3A40%3A00Z`): a year later.
    let (name, value) = find(&url, |name| name.ends_with("expires") || name == "se")
        .unwrap_or_else(|| panic!("no expiry parameter in {url}"));
    let later = match value.parse::<u64>() {
        Ok(n) => (n + 1).to_string(),
        Err(_) => {
            let year: u32 = value[..4].parse().expect("a year");
            format!("{}{}", year + 1, &value[4..])
        }
    };
    let tampered = url.replace(&format!("{name}={value}"), &format!("{name}={later}"));
    assert_ne!(tampered, url);
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}

/// A GET URL used for PUT or DELETE is refused and the object stays as it was.
pub async fn url_used_with_another_method_is_refused(s: Storage) {
    let k = put(&s, "method.bin", "original").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    // The misuse sends what a PUT needs (Azure's `x-ms-blob-type`), so only the method is
    // wrong.
    let put_headers = s
        .signed_url(SignedMethod::Put, &k, None, &SignOptions::default())
        .await
        .expect("signed_url")
        .headers;
    let headers: Vec<(&str, &str)> = put_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(status("PUT", &url, &headers, "overwritten").await, 403);
    assert_eq!(status("DELETE", &url, &[], "").await, 403);
    assert_eq!(data(&s, &k).await, "original");
}

/// A PUT with another content type than the bound one is refused and stores nothing.
pub async fn put_with_another_content_type_than_bound_is_refused(s: Storage) {
    let k = key(&s, "bound.png");
    let url = sign(&s, SignedMethod::Put, &k, &png()).await;
    assert_eq!(
        status("PUT", &url, &[("content-type", "text/html")], "<script>").await,
        403
    );
    assert!(!s.exists(&k).await.unwrap());
}

/// A PUT URL bound to a length accepts exactly that many bytes: one fewer or one more is
/// refused (403) and stores nothing.
pub async fn put_of_another_length_than_bound_is_refused(s: Storage) {
    let k = key(&s, "bound-length.bin");
    let options = SignOptions {
        content_type: None,
        content_length: Some(5),
        sha256: None,
    };
    let url = sign(&s, SignedMethod::Put, &k, &options).await;
    for body in ["1234", "123456", ""] {
        assert_eq!(
            status("PUT", &url, &[], body).await,
            403,
            "{} bytes against a bound 5",
            body.len()
        );
        assert!(
            !s.exists(&k).await.unwrap(),
            "{} bytes were stored",
            body.len()
        );
    }
    let exact = status("PUT", &url, &[], "12345").await;
    assert!((200..300).contains(&exact), "5 bytes answered {exact}");
    assert_eq!(data(&s, &k).await, "12345");
}

/// A PUT URL bound to both a type and a length refuses the right length with another
/// type, and the right type with another length.
pub async fn put_bound_to_type_and_length_needs_both(s: Storage) {
    let k = key(&s, "bound-both.png");
    let options = SignOptions {
        content_type: Some("image/png".to_string()),
        content_length: Some(3),
        sha256: None,
    };
    let url = sign(&s, SignedMethod::Put, &k, &options).await;
    let png = [("content-type", "image/png")];
    assert_eq!(
        status("PUT", &url, &[("content-type", "text/html")], "abc").await,
        403
    );
    assert_eq!(status("PUT", &url, &png, "abcd").await, 403);
    assert!(!s.exists(&k).await.unwrap());
    let exact = status("PUT", &url, &png, "abc").await;
    assert!((200..300).contains(&exact), "answered {exact}");
    let stored = s.get(&k).await.unwrap();
    assert_eq!(stored.data, "abc");
    assert_eq!(stored.info.content_type.as_deref(), Some("image/png"));
}

/// A URL signed for another storage's secret (or credentials) is refused here.
pub async fn url_signed_by_another_secret_is_refused(s: Storage) {
    let k = put(&s, "foreign.bin", "x").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    // Re-sign the same request with a random secret: same shape, wrong key.
    let (name, value) = signature(&url);
    let forged: String = (0..value.len())
        .map(|i| if i % 2 == 0 { 'a' } else { '5' })
        .collect();
    let tampered = url.replace(&format!("{name}={value}"), &format!("{name}={forged}"));
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}
