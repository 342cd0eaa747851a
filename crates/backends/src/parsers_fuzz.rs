//! Every parser of this crate and of `maskstore-core` that reads what a store, a server
//! or an operator wrote, under random and mutated input ([`maskstore_fuzzkit`]): no
//! panic, no hang, peak allocation bounded by the input's size, and the round trip or
//! agreement each has. Mutated inputs start from real answers: an S3 ListObjectsV2 page
//! (AWS's documented example, as SeaweedFS and moto send it), an Azure List Blobs page
//! (Azurite's), a GCS `objects.list` page (fake-gcs-server's), the repo's config files.
//!
//! One test prints `parsers[backends]: N parsers, M cases, 0 failures (seed …)`.

use maskstore_core::config::{ConfigLoader, Origin};
use maskstore_core::{KeyPrefix, ObjectKey};
use maskstore_fuzzkit::proptest::prelude::*;
use maskstore_fuzzkit::{Parsers, Verdict, bounded, ensure, mutated, mutated_text};

use crate::checksum::Hasher;
use crate::metadata::{decode_value, encode_word, repair_headers};

const S3_PAGE: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>mask/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>mask/1.2%2F3.4/seg+a.png</Key><LastModified>2026-12-07T01:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>mask/b.nii.gz</Key><LastModified>2026-12-07T01:00:01.000Z</LastModified><ETag>"d41d8cd98f00b204e9800998ecf8427e-2"</ETag><Size>0</Size></Contents><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"#;
const AZURE_PAGE: &[u8] = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/devstoreaccount1\" ContainerName=\"masks\"><Prefix>mask/</Prefix><MaxResults>5000</MaxResults><Blobs><Blob><Name>mask/a.png</Name><Properties><Creation-Time>Mon, 07 Dec 2026 01:00:00 GMT</Creation-Time><Last-Modified>Mon, 07 Dec 2026 01:00:00 GMT</Last-Modified><Etag>0x8DD1A2B3C4D5E6F</Etag><Content-Length>3</Content-Length><Content-Type>image/png</Content-Type><Content-MD5>rL0Y20zC+Fzt72VPzMSk2A==</Content-MD5><BlobType>BlockBlob</BlobType></Properties></Blob><Blob><Name Encoded=\"true\">mask%2Fnew%0Aline.png</Name><Properties><Content-Length>4</Content-Length></Properties></Blob></Blobs><NextMarker>2!80!MDAwMDE2</NextMarker></EnumerationResults>".as_bytes();
const GCS_PAGE: &[u8] = br#"{"kind":"storage#objects","nextPageToken":"CgZtYXNrL2I=","items":[{"kind":"storage#object","name":"mask/a.png","id":"b/mask/a.png/1733533200000000","bucket":"b","size":"3","contentType":"image/png","crc32c":"MK/6GQ==","md5Hash":"rL0Y20zC+Fzt72VPzMSk2A==","etag":"CICAgICAgICAgAE=","generation":"1733533200000000","updated":"2026-12-07T01:00:00.000000Z","metadata":{"who":"Dr. M\u00fcller","maskstore-checksum":"sha256:abc="}},{"name":"mask/b","size":"18446744073709551616"}]}"#;
const ERROR_BODY: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Region>eu-west-1</Region><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;
const ERROR_LINE: &[u8] = b"Server returned non-2xx status code: 301 Moved Permanently: <?xml version=\"1.0\"?><Error><Code>PermanentRedirect</Code><Message>Use the endpoint.</Message><Region>eu-west-1</Region></Error>";
const ERROR_200: &[u8] = b"Server returned error response: <Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>";
const GCS_REFUSAL: &[u8] = br#"{"error":{"code":403,"message":"user@example.com does not have storage.objects.get access.","errors":[{"message":"denied","domain":"global","reason":"forbidden"}]}}"#;
const ATTRIBUTES: &[u8] = br#"{"content_type":"image/png","metadata":{"maskstore-checksum":"sha256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=","who":"Dr. M\u00fcller"},"generation":"17"}"#;
const DEFAULT_TOML: &[u8] = include_bytes!("../../../config/default.toml");
const DEVELOPMENT_TOML: &[u8] = include_bytes!("../../../config/development.toml");
const PRODUCTION_TOML: &[u8] = include_bytes!("../../../config/production.toml");

#[test]
fn every_parser_survives_random_and_mutated_input() {
    let mut run = Parsers::new("backends");
    keys(&mut run);
    signed_urls(&mut run);
    listings(&mut run);
    answers(&mut run);
    metadata(&mut run);
    refusals(&mut run);
    secret_files(&mut run);
    checksums(&mut run);
    config(&mut run);
    run.finish();
}

/// Text of any chars, weighted toward the ones keys and headers make special.
fn text() -> impl Strategy<Value = String> + Send {
    let hard = prop::sample::select(vec![
        "/", "//", ".", "..", "\\", "\0", "\u{1b}", "\u{202e}", "\u{feff}", "%", "=?", "?=", " ",
        "\"", ",", "-", "_", "ü", "한", "a", "0",
    ]);
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        hard.prop_map(String::from)
    ];
    prop::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

fn keys(run: &mut Parsers) {
    run.check("ObjectKey::parse", text(), |text| {
        let parsed = bounded(text.len(), || ObjectKey::parse(text.clone()))?;
        if let Ok(key) = parsed {
            ensure(key.as_str() == text && key.to_string() == text, || {
                format!("a valid key does not display as itself: {text:?}")
            })?;
            ensure(
                !key.is_foreign() && ObjectKey::found(text.clone()).is_ok(),
                || format!("a valid key is not found as a valid key: {text:?}"),
            )?;
        }
        Ok(())
    });
    run.check("ObjectKey::found", text(), |text| {
        let found = bounded(text.len(), || ObjectKey::found(text.clone()))?;
        if let Ok(key) = found {
            ensure(key.as_str() == text, || {
                format!("a found name changed: {text:?}")
            })?;
            let valid = ObjectKey::parse(text.clone()).is_ok();
            ensure(
                key.is_foreign() != valid && key.foreign().is_some() != valid,
                || format!("found and parse disagree on {text:?}"),
            )?;
        }
        Ok(())
    });
    run.check("KeyPrefix::parse", text(), |text| {
        if let Ok(prefix) = bounded(text.len(), || KeyPrefix::parse(text.clone()))? {
            ensure(prefix.to_string() == text, || {
                format!("prefix {text:?} changed")
            })?;
        }
        Ok(())
    });
}

/// A gateway URL signed for PUT of `mask/1.2/3.4/seg ü.png` with every bound field, as
/// `(path below /o/, query)`.
fn signed_url() -> (String, String) {
    let signer = signer();
    let key = ObjectKey::parse("mask/1.2/3.4/seg ü.png").unwrap();
    let options = crate::signing::SignOptions {
        content_type: Some("image/png".into()),
        content_length: Some(3),
        sha256: Some(crate::ContentSha256::of(b"abc")),
    };
    let url = signer.sign(
        crate::signing::SignedMethod::Put,
        &key,
        4_102_444_800,
        &options,
    );
    let rest = url.split_once(crate::signing::OBJECT_PATH).unwrap().1;
    let (path, query) = rest.split_once('?').unwrap();
    (path.to_string(), query.to_string())
}

fn signer() -> crate::signing::GatewaySigner {
    let secret = maskstore_core::Secret::new("0123456789abcdef0123456789abcdef-fuzz".to_string());
    crate::signing::GatewaySigner::new("http://127.0.0.1:1", secret, None)
}

fn signed_urls(run: &mut Parsers) {
    let (path, query) = signed_url();
    let samples: &'static [&'static [u8]] =
        Vec::leak(vec![String::leak(format!("{path}?{query}")).as_bytes()]);
    run.check("gateway signed URL", mutated_text(samples), |url| {
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let signer = signer();
        let grant = bounded(url.len(), || signer.verify("PUT", path, query, now))?;
        let (good_path, good_query) = signed_url();
        let good = signer.verify("PUT", &good_path, &good_query, now).unwrap();
        // Whatever a mutation kept valid must grant exactly what was signed.
        ensure(grant.as_ref().map_or(true, |g| *g == good), || {
            format!("the mutated URL {url:?} grants {grant:?}, not what was signed")
        })
    });
}

fn listings(run: &mut Parsers) {
    run.check(
        "s3 ListObjectsV2 page",
        mutated_text(&[S3_PAGE, ERROR_BODY]),
        |body| {
            if let Ok(page) = bounded(body.len(), || crate::s3::names::parse_page(&body))? {
                let encoded = page.encoding_type.as_deref() == Some("url");
                for entry in page.contents {
                    let _ = bounded(body.len(), || crate::s3::names::found(entry, encoded))?;
                }
            }
            Ok(())
        },
    );
    run.check("s3 listed key ↔ its encoding", text(), |key| {
        let body = s3_page_of(&key);
        let page = crate::s3::names::parse_page(&body).map_err(TestCaseError::fail)?;
        let entry = page.contents.into_iter().next().unwrap();
        let found = crate::s3::names::found(entry, true).map_err(TestCaseError::fail)?;
        ensure(found.name == key, || {
            format!("{key:?} listed as {:?}", found.name)
        })
    });
    run.check("azure listed name ↔ its encoding", text(), |name| {
        let body = azure_page_of(&name);
        let (objects, _) = crate::azure::names::parse_page(&body).map_err(TestCaseError::fail)?;
        ensure(objects.len() == 1 && objects[0].name == name, || {
            format!("{name:?} listed as {:?}", objects.first().map(|o| &o.name))
        })
    });
    run.check(
        "azure List Blobs page",
        mutated_text(&[AZURE_PAGE, ERROR_BODY]),
        |body| {
            let _ = bounded(body.len(), || crate::azure::names::parse_page(&body))?;
            Ok(())
        },
    );
    run.check("gcs objects.list page", mutated(&[GCS_PAGE]), |body| {
        if let Ok(page) = bounded(body.len(), || crate::gcs::names::parse_page(&body))? {
            for item in &page.items {
                bounded(body.len(), || (item.meta(), item.native()))?;
            }
        }
        Ok(())
    });
    run.check("gcs resource generation", mutated(&[GCS_PAGE]), |body| {
        bounded(body.len(), || crate::gcs::json::generation_of(&body))?;
        Ok(())
    });
}

/// Every byte but the unreserved ones and `/` percent-encoded, a space as `+`: the
/// `EncodingType=url` form AWS lists keys in.
const URL_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A ListObjectsV2 page listing `key` as AWS does.
fn s3_page_of(key: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(key, URL_ENCODED)
        .to_string()
        .replace("%20", "+");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><EncodingType>url</EncodingType>\
         <IsTruncated>false</IsTruncated><Contents><Key>{encoded}</Key><Size>1</Size></Contents>\
         </ListBucketResult>"
    )
}

/// A List Blobs page listing `name` as Azure does: encoded when XML cannot carry it.
fn azure_page_of(name: &str) -> String {
    let plain = !name
        .chars()
        .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{fffe}');
    let element = if plain {
        let escaped = name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!("<Name>{escaped}</Name>")
    } else {
        let encoded = percent_encoding::utf8_percent_encode(name, URL_ENCODED);
        format!("<Name Encoded=\"true\">{encoded}</Name>")
    };
    format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs><Blob>{element}\
         <Properties><Content-Length>1</Content-Length></Properties></Blob></Blobs>\
         <NextMarker /></EnumerationResults>"
    )
}

fn answers(run: &mut Parsers) {
    run.check("error body", mutated_text(&[ERROR_BODY, S3_PAGE]), |body| {
        let answer = bounded(body.len(), || crate::answer::parse_body(&body))?;
        let shown = answer.describe();
        ensure(!shown.contains(['\u{1b}', '\n', '\r']), || {
            format!("an error body's text reaches a human unescaped: {shown:?}")
        })
    });
    run.check(
        "xml root",
        mutated_text(&[S3_PAGE, AZURE_PAGE, ERROR_BODY]),
        |body| {
            bounded(body.len(), || crate::read_answer::xml_root(&body))?;
            let _ = bounded(body.len(), || {
                crate::read_answer::expect_root(&body, "ListBucketResult")
            })?;
            Ok(())
        },
    );
    run.check("Content-Range", content_range(), |value| {
        let parsed = bounded(value.len(), || {
            crate::read_answer::parse_content_range(&value)
        })?;
        if let Some((range, size)) = parsed {
            ensure(range.start < range.end && range.end <= size, || {
                format!("{value:?} read as {range:?} of {size}: not a range of the object")
            })?;
            let again = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            let reread = crate::read_answer::parse_content_range(&again);
            ensure(reread == Some((range.clone(), size)), || {
                format!("{value:?} formats as {again:?}, which reads as {reread:?}")
            })?;
        }
        Ok(())
    });
    run.check("checksum headers", checksum_headers(), |pairs| {
        let headers = header_map(&pairs);
        let len = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        bounded(len, || crate::s3::native::from_headers(&headers))?;
        bounded(len, || crate::azure::native::in_answer(&headers))?;
        bounded(len, || crate::gcs::native::in_answer(&headers))?;
        Ok(())
    });
}

fn refusals(run: &mut Parsers) {
    run.check(
        "object_store error text",
        mutated_text(&[ERROR_LINE, ERROR_200]),
        |text| {
            let error = std::io::Error::other(text.clone());
            let answer = bounded(text.len(), || crate::answer::answer_of(&error))?;
            if let Some(answer) = answer {
                bounded(text.len(), || {
                    (
                        crate::s3::error::meaning(&answer),
                        crate::azure::error::meaning(&answer),
                        crate::gcs::error::meaning(&answer),
                    )
                })?;
            }
            Ok(())
        },
    );
    run.check("gcs JSON refusal", mutated_text(&[GCS_REFUSAL]), |body| {
        let path = object_store::path::Path::from("mask/a.png");
        let status = reqwest::StatusCode::FORBIDDEN;
        let error = bounded(body.len(), || {
            crate::gcs::json::refusal(crate::gcs::json::Op::Copy, &path, status, &body).to_string()
        })?;
        ensure(!error.contains(['\u{1b}', '\r']), || {
            format!("unescaped: {error:?}")
        })
    });
    run.check(
        "answer root element",
        mutated(&[S3_PAGE, AZURE_PAGE, ERROR_BODY]),
        |body| {
            bounded(body.len(), || {
                crate::http_client::bounded::root_element(&body)
            })?;
            Ok(())
        },
    );
}

fn secret_files(run: &mut Parsers) {
    let samples: &'static [&'static [u8]] = &[
        b"0123456789abcdef0123456789abcdef\n",
        b"\xef\xbb\xbfAKIAIOSFODNN7EXAMPLE\r\n",
        b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nsecond line\n",
        b"wJalrXUtnFEMI/K7MDENG\xe2\x80\x8bbPxRfiCYEXAMPLEKEY\n",
        b"{\n  \"type\": \"service_account\",\n  \"client_email\": \"a@b.iam\"\n}\n",
    ];
    run.check("secret file", mutated(samples), |bytes| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).mode(0o600);
        file.open(&path).unwrap().write_all(&bytes).unwrap();
        let read = bounded(bytes.len(), || crate::secret_file::read_secret_file(&path))?;
        let text = String::from_utf8_lossy(&bytes);
        // One byte-order mark is no part of the secret; one inside it is refused (secret_file.rs).
        let secret = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
        match read {
            Ok(read) => ensure(
                read == secret
                    // Lines only inside one JSON document (a GCS service-account key).
                    && (!read.contains(char::is_control)
                        || serde_json::from_str::<serde_json::Value>(&read)
                            .is_ok_and(|v| v.is_object()))
                    && maskstore_core::invisible_character(&read).is_none(),
                || format!("{bytes:?} read as {read:?}"),
            ),
            Err(e) => ensure(secret.len() < 8 || !e.to_string().contains(secret), || {
                format!("the refusal of {bytes:?} shows the secret: {e}")
            }),
        }
    });
}

fn metadata(run: &mut Parsers) {
    run.check("RFC 2047 encode ↔ decode", text(), |value| {
        let word = encode_word(&value);
        let decoded = bounded(word.len(), || decode_value(&word))?;
        ensure(decoded == value, || {
            format!("{value:?} → {word:?} → {decoded:?}")
        })
    });
    let words: &'static [&'static [u8]] = &[
        b"=?UTF-8?B?RHIuIE3DvGxsZXI=?=",
        b"=?utf-8?q?Dr._M=C3=BCller?= =?us-ascii?Q?_x?=",
        b"=?UTF-8*en?B?YQ==?=",
    ];
    run.check(
        "metadata value written ↔ read",
        (text(), 0..3usize),
        |(value, rule)| {
            use crate::metadata::{MetadataRules, NameRule, ValueRule};
            let values = [ValueRule::Header, ValueRule::Utf8Header, ValueRule::Any][rule];
            let rules = MetadataRules {
                names: NameRule::Any,
                values,
                max_total: 8192,
                json_document: false,
            };
            let written = rules.value(&value);
            let header_ok = http::HeaderValue::from_str(&written).is_ok();
            ensure(values != ValueRule::Header || header_ok, || {
                format!("{value:?} is written as {written:?}, which no header holds")
            })?;
            let read = decode_value(&written);
            ensure(read == value, || {
                format!("{value:?} → {written:?} → {read:?}")
            })
        },
    );
    run.check("RFC 2047 decode", mutated_text(words), |value| {
        bounded(value.len(), || decode_value(&value))?;
        Ok(())
    });
    run.check("metadata header repair", checksum_headers(), |pairs| {
        let mut headers = header_map(&pairs);
        let len = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        bounded(len, || repair_headers(&mut headers))?;
        for (name, value) in &headers {
            let ours = name.as_str().contains("-meta-") || name == http::header::CONTENT_TYPE;
            ensure(!ours || value.to_str().is_ok(), || {
                format!("{name} is still unreadable after repair: {value:?}")
            })?;
        }
        Ok(())
    });
    run.check("azure metadata name map ↔ unmap", text(), |name| {
        let stored = bounded(name.len(), || crate::azure::stored_name(&name))?;
        let identifier = stored.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && stored
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        ensure(name.is_empty() || identifier, || {
            format!("{name:?} is stored as {stored:?}, no C# identifier")
        })?;
        let back = read_name(&stored);
        ensure(name.is_empty() || back == name, || {
            format!("{name:?} → {stored:?} → {back:?}")
        })
    });
    run.check("azure stored name read", text(), |stored| {
        let _ = bounded(stored.len(), || read_name(&stored))?;
        Ok(())
    });
}

/// The name Azure's stored metadata name `stored` reads as.
fn read_name(stored: &str) -> String {
    let mut attributes = object_store::Attributes::new();
    let name = object_store::Attribute::Metadata(stored.to_string().into());
    attributes.insert(name, "v".into());
    let read = crate::azure::read_names(attributes);
    let names: Vec<String> = read
        .iter()
        .map(|(key, _)| match key {
            object_store::Attribute::Metadata(name) => name.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    names.concat()
}

fn checksums(run: &mut Parsers) {
    let stored: &'static [&'static [u8]] = &[
        b"sha256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
        b"crc32c:MK/6GQ==",
        b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ];
    run.check("checksum records", mutated_text(stored), |text| {
        bounded(text.len(), || {
            let _ = Hasher::for_stored(&text).map(Hasher::finish);
            let _ = Hasher::for_native(&text).map(Hasher::finish);
            let _ = crate::ContentSha256::parse(&text);
        })?;
        Ok(())
    });
    run.check("local attributes record", mutated(&[ATTRIBUTES]), |json| {
        let _ = bounded(json.len(), || crate::local::attributes::parse_record(&json))?;
        Ok(())
    });
}

fn config(run: &mut Parsers) {
    let files: &'static [&'static [u8]] = &[DEFAULT_TOML, DEVELOPMENT_TOML, PRODUCTION_TOML];
    run.check("config TOML", mutated_text(files), |text| {
        bounded(text.len() + 64 * 1024, || {
            let mut loader = ConfigLoader::new();
            let origin = Origin::File("fuzz.toml".into());
            let _ = loader
                .add_toml(origin, &text)
                .map(|()| loader.build("development", Origin::Default));
        })?;
        Ok(())
    });
    run.check("config env ↔ shown value", config_env(), |vars| {
        let len = vars.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 64 * 1024;
        let built = bounded(len, || {
            let mut loader = ConfigLoader::new();
            loader
                .add_env(vars.clone())
                .and_then(|()| loader.build("development", Origin::Default))
        })?;
        let Ok(config) = built else { return Ok(()) };
        shown_values_read_back(&config)
    });
}

/// Each value `config show` prints, given back as its environment variable, is read as
/// the same value.
fn shown_values_read_back(config: &maskstore_core::config::Config) -> Verdict {
    let shown: Vec<(String, String)> = config
        .entries()
        .into_iter()
        .filter_map(|e| {
            e.value
                .filter(|v| v != "[redacted]")
                .map(|v| (e.env_var, v))
        })
        .collect();
    let mut loader = ConfigLoader::new();
    let again = loader
        .add_env(shown.clone())
        .and_then(|()| loader.build("development", Origin::Default));
    let again = again.map_err(|e| TestCaseError::fail(format!("shown values do not load: {e}")))?;
    let values = |c: &maskstore_core::config::Config| {
        c.entries()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect::<Vec<_>>()
    };
    ensure(values(config) == values(&again), || {
        format!("shown values read back differently: {shown:?}")
    })
}

fn config_env() -> impl Strategy<Value = Vec<(String, String)>> + Send {
    let names = prop::sample::select(vec![
        "APP_OBJECT_STORAGE__PROVIDER",
        "APP_OBJECT_STORAGE__ROOT",
        "APP_OBJECT_STORAGE__PREFIX",
        "APP_OBJECT_STORAGE__CHECKSUM",
        "APP_OBJECT_STORAGE__MAX_RETRIES",
        "APP_OBJECT_STORAGE__REQUEST_TIMEOUT_SECS",
        "APP_OBJECT_STORAGE__FSYNC",
        "APP_OBJECT_STORAGE__REGION",
        "APP_SIGNED_URL__DEFAULT_TTL_SECS",
        "APP_SIGNED_URL__MAX_TTL_SECS",
        "APP_NO_SUCH__KEY",
    ]);
    let values = prop_oneof![
        prop::sample::select(vec![
            "local",
            "memory",
            "s3",
            "true",
            "false",
            "0",
            "1",
            "3600",
            "-1",
            "99999999999999999999",
            "mask/",
            "crc32c",
            "sha256",
            "none",
            "",
            " ",
        ])
        .prop_map(String::from),
        text(),
    ];
    prop::collection::vec((names.prop_map(String::from), values), 0..6)
}

fn content_range() -> impl Strategy<Value = String> + Send {
    let number = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..1000).prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just(String::new()),
    ];
    let well_formed =
        (number.clone(), number.clone(), number).prop_map(|(a, b, c)| format!("bytes {a}-{b}/{c}"));
    prop_oneof![
        well_formed,
        text(),
        mutated_text(&[b"bytes 0-99/1000", b"bytes 5-5/6"])
    ]
}

const HEADER_VALUES: &[&[u8]] = &[
    b"\"d41d8cd98f00b204e9800998ecf8427e-2\"",
    b"AAAAAA==",
    b"COMPOSITE",
    b"crc32c=MK/6GQ==,md5=rL0Y20zC+Fzt72VPzMSk2A==",
    b"Dr. M\xfcller",
    "Dr. Müller".as_bytes(),
];

fn checksum_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> + Send {
    let names = prop::sample::select(vec![
        "etag",
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-sha256",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-type",
        "content-md5",
        "x-ms-blob-content-md5",
        "x-goog-hash",
        "x-amz-meta-who",
        "x-ms-meta-who",
        "x-goog-meta-who",
        "content-type",
    ]);
    let values = prop_oneof![
        mutated(HEADER_VALUES),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec((names.prop_map(String::from), values), 0..6)
}

/// The pairs an HTTP client could hand over: header values hold any byte but CR, LF, NUL.
fn header_map(pairs: &[(String, Vec<u8>)]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in pairs {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("listed names are valid");
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    headers
}
