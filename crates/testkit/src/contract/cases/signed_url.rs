//! The `signed_url` cases: signed URLs, used with a plain HTTP client that holds no
//! credentials.

use maskstore_backends::{Error, SignOptions, SignedMethod, Storage, WriteOptions};
use maskstore_core::ObjectKey;

use super::{http, key, png, put, sign, status};

/// A signed GET returns the object's bytes and content type to a client without
/// credentials.
pub async fn signed_get_returns_the_bytes(s: Storage) {
    let k = key(&s, "get.png");
    s.put_with(&k, "pixels", &WriteOptions::content_type("image/png"))
        .await
        .unwrap();
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("image/png"));
    assert_eq!(response.bytes().await.unwrap(), "pixels");
}

/// A signed PUT stores the body, with the content type sent (bound where the backend's
/// URLs can bind it), readable through Storage. The client sends the headers the URL
/// names (Azure's `x-ms-blob-type`).
pub async fn signed_put_stores_the_bytes(s: Storage) {
    let k = key(&s, "put.png");
    let options = if s.capabilities().binds_upload_headers {
        png()
    } else {
        SignOptions::default()
    };
    let signed = s
        .signed_url(SignedMethod::Put, &k, None, &options)
        .await
        .expect("signed_url");
    let mut request = http()
        .put(&signed.url)
        .header("content-type", "image/png")
        .body("uploaded");
    for (name, value) in &signed.headers {
        if !name.eq_ignore_ascii_case("content-type") {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "PUT answered {}",
        response.status()
    );
    let stored = s.get(&k).await.unwrap();
    assert_eq!(stored.data, "uploaded");
    assert_eq!(stored.info.content_type.as_deref(), Some("image/png"));
}

/// Where signed URLs cannot bind an upload's type or length (Azure SAS), asking for it is
/// refused at issue, naming the reason, rather than promising what the server does not
/// check; where they can, the URL is issued.
pub async fn upload_binding_is_issued_only_where_urls_can_bind(s: Storage) {
    let k = key(&s, "bind.png");
    let sized = SignOptions {
        content_type: None,
        content_length: Some(3),
        sha256: None,
    };
    for options in [png(), sized] {
        let issued = s.signed_url(SignedMethod::Put, &k, None, &options).await;
        if s.capabilities().binds_upload_headers {
            assert!(issued.is_ok(), "{options:?}: {issued:?}");
        } else {
            match issued {
                Err(e @ Error::Unsupported { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("content type or length"), "{text}");
                }
                other => panic!("{options:?}: expected Unsupported, got {other:?}"),
            }
        }
    }
    // A SHA-256 likewise: issued only where the server (or gateway) checks it.
    let digest = SignOptions {
        sha256: Some(maskstore_backends::ContentSha256::of(b"abc")),
        ..Default::default()
    };
    let issued = s.signed_url(SignedMethod::Put, &k, None, &digest).await;
    if s.capabilities().binds_upload_sha256 {
        assert!(issued.is_ok(), "{issued:?}");
    } else {
        match issued {
            Err(e @ Error::Unsupported { .. }) => {
                let text = e.to_string();
                assert!(text.contains("SHA-256"), "{text}");
            }
            other => panic!("sha256: expected Unsupported, got {other:?}"),
        }
    }
    // Nothing bound: issued everywhere, and never binds a type on its own where it cannot.
    let plain = s
        .signed_url(SignedMethod::Put, &k, None, &SignOptions::default())
        .await
        .unwrap();
    if !s.capabilities().binds_upload_headers {
        assert!(
            !plain
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type")),
            "{:?}",
            plain.headers
        );
    }
}

/// A signed HEAD reports the size without a body.
pub async fn signed_head_reports_the_size(s: Storage) {
    let k = put(&s, "head.bin", "12345").await;
    let url = sign(&s, SignedMethod::Head, &k, &SignOptions::default()).await;
    let response = http().head(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let length = response
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(length.as_deref(), Some("5"));
}

/// A signed DELETE removes the object.
pub async fn signed_delete_removes_the_object(s: Storage) {
    let k = put(&s, "delete.bin", "x").await;
    let url = sign(&s, SignedMethod::Delete, &k, &SignOptions::default()).await;
    let code = status("DELETE", &url, &[], "").await;
    assert!((200..300).contains(&code), "DELETE answered {code}");
    assert!(!s.exists(&k).await.unwrap());
}

/// Signed URLs work for keys with spaces, `+`, `%`, `#`, `?` and unicode.
pub async fn signed_get_of_unusual_key_works(s: Storage) {
    let k = put(&s, "a b+c%d#e?f/환자 🧠.png", "unusual").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    assert_eq!(response.bytes().await.unwrap(), "unusual");
}

/// A PUT URL bound to a length stores an upload of exactly that length.
pub async fn signed_put_of_the_bound_length_stores_it(s: Storage) {
    let k = key(&s, "bound.bin");
    let options = SignOptions {
        content_type: None,
        content_length: Some(7),
        sha256: None,
    };
    let url = sign(&s, SignedMethod::Put, &k, &options).await;
    let code = status("PUT", &url, &[], "7 bytes").await;
    assert!((200..300).contains(&code), "PUT answered {code}");
    assert_eq!(s.get(&k).await.unwrap().data, "7 bytes");
}

/// A bound content type or length is a promise about an upload: asked for on another
/// method it is refused at issue, naming the option, before anything is signed.
pub async fn bound_headers_on_other_methods_are_refused_at_issue(s: Storage) {
    let k = key(&s, "bound.bin");
    let typed = png();
    let sized = SignOptions {
        content_type: None,
        content_length: Some(1),
        sha256: None,
    };
    for method in [SignedMethod::Get, SignedMethod::Head, SignedMethod::Delete] {
        for (options, name) in [(&typed, "content-type"), (&sized, "content-length")] {
            match s.signed_url(method, &k, None, options).await {
                Err(e @ Error::InvalidMetadata { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(name) && text.contains("PUT"), "{text}");
                    assert!(e.is_client_error());
                }
                other => panic!("{method} binding {name}: {other:?}"),
            }
        }
    }
}

/// A TTL above the maximum is refused when the URL is issued, naming the maximum.
pub async fn ttl_above_the_maximum_is_refused_at_issue(s: Storage) {
    let k = key(&s, "ttl.bin");
    let max = s.ttl_policy().max_ttl().as_secs();
    match s
        .signed_url(
            SignedMethod::Get,
            &k,
            Some(max + 1),
            &SignOptions::default(),
        )
        .await
    {
        Err(Error::InvalidTtl {
            requested,
            max: said,
        }) => {
            assert_eq!((requested, said), (max + 1, max));
        }
        other => panic!("expected InvalidTtl, got {other:?}"),
    }
    assert_err!(
        s.signed_url(SignedMethod::Get, &k, Some(0), &SignOptions::default())
            .await,
        Error::InvalidTtl { .. }
    );
}

/// Without a TTL the URL lives the configured default.
pub async fn no_ttl_means_the_default_ttl(s: Storage) {
    let k = key(&s, "ttl.bin");
    let signed = s
        .signed_url(SignedMethod::Get, &k, None, &SignOptions::default())
        .await
        .unwrap();
    let lives = (signed.expires_at - chrono::Utc::now()).num_seconds();
    let default = s.ttl_policy().default_ttl().as_secs() as i64;
    assert!(
        (default - 5..=default).contains(&lives),
        "lives {lives} s, default {default} s"
    );
}

/// A key outside the storage's prefix is refused before signing.
pub async fn key_outside_the_prefix_is_refused_at_issue(s: Storage) {
    let outside = ObjectKey::parse("outside/x.png").unwrap();
    assert_err!(
        s.signed_url(SignedMethod::Get, &outside, None, &SignOptions::default())
            .await,
        Error::InvalidKey { .. }
    );
}
