//! The `azure` and `gcs` providers through the operator commands: `policy` documents in
//! each cloud's own shape, the doctor's diagnoses provoked on Azurite, and `sync` across
//! providers.

use std::path::Path;
use std::process::Output;

use maskstore_testkit::servers;

use crate::support::{maskstore, succeeded, text, vars};

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&succeeded(out)).unwrap()
}

#[test]
fn azure_policy_documents_follow_the_guide_in_azures_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
        ("APP_OBJECT_STORAGE__ACCOUNT", "pacsmasksprod"),
        ("APP_OBJECT_STORAGE__CONTAINER", "pacs-masks-prod"),
    ]);
    let doc = |name: &str| json(&maskstore(dir.path(), &["policy", name], &env));

    let cors = doc("cors");
    let rule = &cors["corsRules"][0];
    assert_eq!(
        rule["allowedOrigins"],
        serde_json::json!(["http://localhost:3000", "http://localhost:8080"])
    );
    assert_eq!(
        rule["allowedMethods"],
        serde_json::json!(["GET", "PUT", "POST", "DELETE"])
    );
    assert_eq!(rule["exposedHeaders"], serde_json::json!(["ETag"]));
    assert_eq!(rule["maxAgeInSeconds"], 3000);

    let lifecycle = doc("lifecycle");
    let rule = &lifecycle["rules"][0];
    assert_eq!(rule["enabled"], true);
    assert_eq!(rule["type"], "Lifecycle");
    assert_eq!(
        rule["definition"]["filters"]["prefixMatch"],
        serde_json::json!(["pacs-masks-prod/mask/"])
    );
    let base = &rule["definition"]["actions"]["baseBlob"];
    assert_eq!(base["tierToCool"]["daysAfterModificationGreaterThan"], 90);
    assert_eq!(
        base["tierToArchive"]["daysAfterModificationGreaterThan"],
        365
    );

    let role = doc("iam");
    let actions: Vec<&str> = role["DataActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(actions.iter().all(|a| a.contains("/blobs/")), "{actions:?}");
    assert!(!actions.iter().any(|a| a.ends_with('*')), "{actions:?}");
    assert!(role["Condition"].as_str().unwrap().contains("'mask/'"));
}

#[test]
fn gcs_policy_documents_follow_the_guide_in_gcss_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "gcs"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-prod"),
    ]);
    let doc = |name: &str| json(&maskstore(dir.path(), &["policy", name], &env));

    let cors = doc("cors");
    let rule = &cors[0];
    assert_eq!(
        rule["origin"],
        serde_json::json!(["http://localhost:3000", "http://localhost:8080"])
    );
    assert_eq!(
        rule["method"],
        serde_json::json!(["GET", "PUT", "POST", "DELETE"])
    );
    let headers: Vec<&str> = rule["responseHeader"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        headers.contains(&"ETag") && !headers.contains(&"*"),
        "{headers:?}"
    );
    assert_eq!(rule["maxAgeSeconds"], 3000);

    let lifecycle = doc("lifecycle");
    let rules = lifecycle["rule"].as_array().unwrap();
    let summary: Vec<(String, u64)> = rules
        .iter()
        .map(|r| {
            (
                r["action"]["storageClass"]
                    .as_str()
                    .unwrap_or(r["action"]["type"].as_str().unwrap())
                    .to_string(),
                r["condition"]["age"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("NEARLINE".to_string(), 90),
            ("ARCHIVE".to_string(), 365),
            ("AbortIncompleteMultipartUpload".to_string(), 7)
        ]
    );
    assert!(
        rules
            .iter()
            .all(|r| r["condition"]["matchesPrefix"] == serde_json::json!(["mask/"]))
    );

    let binding = doc("iam");
    assert_eq!(binding["bindings"][0]["role"], "roles/storage.objectUser");
    assert!(
        binding["bindings"][0]["condition"]["expression"]
            .as_str()
            .unwrap()
            .contains("buckets/pacs-masks-prod/objects/mask/")
    );
}

#[test]
fn azure_config_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (env, needles) in [
        (
            vec![("APP_OBJECT_STORAGE__PROVIDER", "azure")],
            vec![
                "object_storage.account",
                "is required",
                "APP_OBJECT_STORAGE__ACCOUNT",
            ],
        ),
        (
            vec![
                ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
                ("APP_OBJECT_STORAGE__ACCOUNT", "Pacs_Masks"),
            ],
            vec!["not an Azure storage account name", "3-24 lowercase"],
        ),
        (
            vec![
                ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
                ("APP_OBJECT_STORAGE__ACCOUNT", "pacsmasks"),
                ("APP_OBJECT_STORAGE__CONTAINER", "pacs--masks"),
            ],
            vec!["not an Azure container name", "single hyphens"],
        ),
        (
            vec![("APP_OBJECT_STORAGE__PROVIDER", "gcs")],
            vec![
                "object_storage.bucket_name",
                "is required when provider = \"gcs\"",
            ],
        ),
    ] {
        let out = maskstore(dir.path(), &["config", "show"], &vars(&env));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{all}");
        for needle in needles {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
    }
}

#[test]
fn config_show_redacts_the_azure_key_and_the_gcs_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let key = "c2VjcmV0LWF6dXJlLWtleS1vZi10aGUtYWNjb3VudA==";
    let sa = "{\"private_key\": \"-----BEGIN PRIVATE KEY-----secretmaterial\"}";
    let out = maskstore(
        dir.path(),
        &["config", "show"],
        &vars(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
            ("APP_OBJECT_STORAGE__ACCOUNT", "pacsmasks"),
            ("APP_OBJECT_STORAGE__CONTAINER", "pacs-masks"),
            ("APP_OBJECT_STORAGE__ACCOUNT_KEY", key),
            ("APP_OBJECT_STORAGE__SERVICE_ACCOUNT_KEY", sa),
        ]),
    );
    let shown = succeeded(&out);
    assert!(
        !shown.contains(key) && !shown.contains("secretmaterial"),
        "{shown}"
    );
    assert!(shown.contains("object_storage.account_key"), "{shown}");
    assert!(
        shown.contains("object_storage.service_account_key"),
        "{shown}"
    );
}

/// `maskstore check` on Azurite: all steps pass; a wrong key, and a missing container,
/// are each named with their fix.
#[test]
fn check_on_azurite_passes_and_names_a_wrong_key_and_a_missing_container() {
    let Some(server) = servers::azurite() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = server.app_env();
    let out = succeeded(&maskstore(dir.path(), &["check"], &env));
    assert!(out.contains("all steps passed"), "{out}");

    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut env: Vec<_> = env.iter().filter(|(k, _)| k != name).cloned().collect();
        env.push((name.to_string(), value.to_string()));
        env
    };
    let wrong = with(
        "APP_OBJECT_STORAGE__ACCOUNT_KEY",
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=",
    );
    let out = maskstore(dir.path(), &["check"], &wrong);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{all}");
    assert!(all.contains("Azure credentials were rejected"), "{all}");
    assert!(all.contains("key1 or key2"), "{all}");
    assert!(!all.contains(server.account_key.expose()), "{all}");

    let missing = with("APP_OBJECT_STORAGE__CONTAINER", &server.missing_container);
    let out = maskstore(dir.path(), &["check"], &missing);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains(&format!(
            "container {} does not exist",
            server.missing_container
        )),
        "{all}"
    );
    assert!(all.contains("az storage container create"), "{all}");
}

/// `maskstore check --cors` on Azurite, whose container has no CORS rules: the refusal
/// names Azure's own command (the Blob service's CORS rules), never the AWS CLI's.
#[test]
fn a_refused_azure_preflight_names_the_azure_cli_not_aws_s3api() {
    let Some(server) = servers::azurite() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["check", "--cors", "http://localhost:3000"],
        &server.app_env(),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{all}");
    assert!(all.contains("would be REFUSED"), "{all}");
    assert!(
        all.contains("az storage account blob-service-properties update"),
        "{all}"
    );
    assert!(!all.contains("s3api"), "{all}");
    assert!(!all.contains("bucket's CORS rules"), "{all}");
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// `sync` local → azure → gcs (fake-gcs-server) → s3 (SeaweedFS) copies a tree of 200
/// objects at each hop, and a second run copies nothing (checksums compare across
/// providers).
#[test]
fn sync_local_to_azure_to_gcs_to_s3_copies_200_objects_once() {
    let (Some(azure), Some(gcs), Some(s3)) = (
        servers::azurite(),
        servers::fake_gcs(),
        servers::seaweedfs(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = azure.config().object_storage.prefix.to_string();
    let local = write(
        dir.path(),
        "local.toml",
        &format!(
            "[object_storage]\nprovider = \"local\"\nroot = \"./data\"\nprefix = \"{prefix}\"\n"
        ),
    );
    let to_azure = write(
        dir.path(),
        "azure.toml",
        &format!(
            "[object_storage]\nprovider = \"azure\"\naccount = \"{}\"\ncontainer = \"{}\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
            azure.account, azure.container, azure.endpoint
        ),
    );
    let to_gcs = write(
        dir.path(),
        "gcs.toml",
        &format!(
            "[object_storage]\nprovider = \"gcs\"\nbucket_name = \"{}\"\nendpoint = \"{}\"\nservice_account_key_file = \"{}\"\nprefix = \"{prefix}\"\n",
            gcs.bucket,
            gcs.endpoint,
            gcs.service_account_file.display()
        ),
    );
    let to_s3 = write(
        dir.path(),
        "s3.toml",
        &format!(
            "[object_storage]\nprovider = \"s3\"\nbucket_name = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
            s3.bucket, s3.endpoint
        ),
    );
    // Secrets from the environment: each side takes its own.
    let env = vars(&[
        ("APP_OBJECT_STORAGE__ACCESS_KEY", &s3.access_key),
        ("APP_OBJECT_STORAGE__SECRET_KEY", s3.secret_key.expose()),
        (
            "APP_OBJECT_STORAGE__ACCOUNT_KEY",
            azure.account_key.expose(),
        ),
    ]);
    let root = dir.path().join("data").join(&prefix);
    for i in 0..200 {
        let file = root.join(format!("study-{}/series-{}/m{i}.png", i % 7, i % 3));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("mask {i} ").repeat(i + 1)).unwrap();
    }
    let sync = |from: &str, to: &str| {
        json(&maskstore(
            dir.path(),
            &["--json", "sync", "--from", from, "--to", to],
            &env,
        ))
    };
    for (from, to) in [(&local, &to_azure), (&to_azure, &to_gcs), (&to_gcs, &to_s3)] {
        let first = sync(from, to);
        assert_eq!(
            (first["copied"].as_u64(), first["skipped"].as_u64()),
            (Some(200), Some(0)),
            "{from} → {to}: {first}"
        );
        let second = sync(from, to);
        assert_eq!(
            (second["copied"].as_u64(), second["skipped"].as_u64()),
            (Some(0), Some(200)),
            "{from} → {to}, again: {second}"
        );
    }
    let out = maskstore(
        dir.path(),
        &[
            "--config",
            &to_s3,
            "get",
            &format!("{prefix}study-3/series-1/m10.png"),
            "-",
        ],
        &env,
    );
    assert_eq!(text(&out.stdout), "mask 10 ".repeat(11));
    for config in [&to_azure, &to_gcs, &to_s3] {
        succeeded(&maskstore(
            dir.path(),
            &["--config", config, "rm", "--prefix", &prefix, "--yes"],
            &env,
        ));
    }
}

/// What fake-gcs-server (1.54, the PyPI wrapper's binary) does with object_store's GCS
/// requests, pinned so that an emulator that learns the XML API's uploads shows up here:
/// it refuses plain XML uploads (400), which is why the `gcs` provider writes through the
/// JSON API, while reads, HEAD, ranges, listings, deletes and V4 signed GETs and PUTs
/// answer as GCS does.
#[tokio::test]
async fn fake_gcs_serves_xml_reads_and_json_writes_but_refuses_xml_uploads() {
    let Some(server) = servers::fake_gcs() else {
        return;
    };
    let storage = server.storage();
    let key = storage.key("seeded/a.png").unwrap();
    // Seeded through the emulator's JSON API (media upload), not through maskstore.
    let url = format!(
        "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
        server.endpoint,
        server.bucket,
        url_escape(key.as_str())
    );
    let seeded = reqwest::Client::new()
        .post(url)
        .header("content-type", "image/png")
        .body("pixels")
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success(), "{}", seeded.status());

    let read = storage.get(&key).await.unwrap();
    assert_eq!(read.data, "pixels");
    assert_eq!(read.info.content_type.as_deref(), Some("image/png"));
    assert_eq!(storage.head(&key).await.unwrap().size, 6);
    assert_eq!(storage.get_range(&key, 1..3).await.unwrap().data, "ix");
    let listing = storage.list_with_delimiter(None).await.unwrap();
    assert_eq!(listing.prefixes, [format!("{}seeded/", storage.prefix())]);
    let missing = storage.key("seeded/missing.png").unwrap();
    assert!(matches!(
        storage.get(&missing).await,
        Err(maskstore::Error::NotFound { .. })
    ));
    // A V4 GET URL, signed with the service account's RSA key (unchecked here).
    let signed = storage
        .signed_url(
            maskstore::SignedMethod::Get,
            &key,
            None,
            &maskstore::SignOptions::default(),
        )
        .await
        .unwrap();
    assert!(signed.url.contains("X-Goog-Signature="), "{}", signed.url);
    let body = reqwest::get(&signed.url).await.unwrap();
    assert_eq!(body.text().await.unwrap(), "pixels");

    // A V4 PUT URL binding the content type: the emulator takes a PUT carrying
    // X-Goog-Algorithm (it checks no signature), so the URL's shape and the bound header
    // are exercised end to end.
    let uploaded = storage.key("signed/up.png").unwrap();
    let put = storage
        .signed_url(
            maskstore::SignedMethod::Put,
            &uploaded,
            None,
            &maskstore::SignOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        put.url.contains("X-Goog-SignedHeaders=content-type%3Bhost"),
        "{}",
        put.url
    );
    assert_eq!(
        put.headers,
        [("Content-Type".to_string(), "image/png".to_string())],
        "a .png PUT URL binds the mask's type"
    );
    let mut request = reqwest::Client::new().put(&put.url).body("drawn");
    for (name, value) in &put.headers {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let stored = storage.get(&uploaded).await.unwrap();
    assert_eq!(stored.data, "drawn");
    assert_eq!(stored.info.content_type.as_deref(), Some("image/png"));
    storage.delete(&uploaded).await.unwrap();

    // An XML API upload (object_store's `PUT /<bucket>/<object>`) is still refused.
    let xml_put = reqwest::Client::new()
        .put(format!(
            "{}/{}/{}",
            server.endpoint,
            server.bucket,
            url_escape(&format!("{}xml.bin", storage.prefix()))
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        xml_put.status().as_u16(),
        400,
        "fake-gcs-server now takes XML uploads: the JSON API detour could be dropped"
    );
    // maskstore's writes go through the JSON API, which it takes.
    let other = storage.key("written.bin").unwrap();
    storage.put(&other, "x").await.unwrap();
    assert_eq!(storage.get(&other).await.unwrap().data, "x");
    storage.delete(&other).await.unwrap();
    storage.delete(&key).await.unwrap();
    assert!(!storage.exists(&key).await.unwrap());
}

/// The JSON API writes, against hostile inputs: a missing bucket on every kind of write is
/// "bucket missing" naming the fix; failed conditions leave the object as it was; keys
/// with spaces, `#?%+&=`, unicode and emoji round-trip through put, streaming upload, copy,
/// rename and listing.
#[tokio::test]
async fn gcs_json_writes_refuse_hostile_inputs_clearly() {
    let Some(server) = servers::fake_gcs() else {
        return;
    };
    let storage = server.storage();

    // A bucket that does not exist.
    let mut config = server.config();
    config.object_storage.bucket_name = Some("no-such-bucket-maskstore".to_string());
    let lost = maskstore::Storage::connect(&config).unwrap();
    let k = lost.key("a.bin").unwrap();
    let put = lost.put(&k, "x").await.unwrap_err();
    assert!(
        matches!(put, maskstore::Error::BucketMissing { .. }),
        "{put}"
    );
    assert!(put.to_string().contains("bucket_name"), "{put}");
    let mut upload = lost
        .upload(&k, &maskstore::WriteOptions::default())
        .await
        .unwrap();
    let streamed = match upload.write(vec![7u8; 9 * 1024 * 1024].into()).await {
        Err(e) => e,
        Ok(()) => upload.finish().await.unwrap_err(),
    };
    assert_eq!(
        streamed.kind(),
        maskstore::ErrorKind::NotFound,
        "{streamed}"
    );
    let create = lost
        .put_with(
            &k,
            "x",
            &maskstore::WriteOptions::default().with_mode(maskstore::WriteMode::CreateOnly),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(create, maskstore::Error::BucketMissing { .. }),
        "{create}"
    );

    // Conditions.
    let k = storage.key("cond.bin").unwrap();
    let first = storage.put(&k, "one").await.unwrap();
    let again = storage
        .put_with(
            &k,
            "two",
            &maskstore::WriteOptions::default().with_mode(maskstore::WriteMode::CreateOnly),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(again, maskstore::Error::AlreadyExists { .. }),
        "{again}"
    );
    storage.put(&k, "three").await.unwrap();
    let stale = storage
        .put_with(
            &k,
            "four",
            &maskstore::WriteOptions::default()
                .with_mode(maskstore::WriteMode::IfMatch(first.etag.clone().unwrap())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, maskstore::Error::Precondition { .. }),
        "{stale}"
    );
    assert_eq!(storage.get(&k).await.unwrap().data, "three");

    // Unusual keys.
    for (i, name) in ["a b+c%d#e?f&g=h.png", "환자 🧠 ü ñ.png", "%2F%00x.png"]
        .iter()
        .enumerate()
    {
        let k = storage.key(&format!("odd{i}/{name}")).unwrap();
        storage.put(&k, format!("body {i}")).await.unwrap();
        assert_eq!(storage.get(&k).await.unwrap().data, format!("body {i}"));
        let copy = storage.key(&format!("odd{i}/copy {name}")).unwrap();
        storage.copy(&k, &copy).await.unwrap();
        assert_eq!(storage.get(&copy).await.unwrap().data, format!("body {i}"));
        let moved = storage.key(&format!("odd{i}/moved {name}")).unwrap();
        storage.rename(&copy, &moved).await.unwrap();
        assert!(!storage.exists(&copy).await.unwrap());
        let mut upload = storage
            .upload(&k, &maskstore::WriteOptions::default())
            .await
            .unwrap();
        upload
            .write(vec![i as u8; 9 * 1024 * 1024].into())
            .await
            .unwrap();
        upload.finish().await.unwrap();
        assert_eq!(storage.head(&k).await.unwrap().size, 9 * 1024 * 1024);
        let listed = storage
            .list_with_delimiter(Some(&format!("{}odd{i}/", storage.prefix())))
            .await
            .unwrap();
        let keys: Vec<&str> = listed.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys.len(), 2, "{keys:?} {listed:?}");
        assert!(
            keys.contains(&k.as_str()) && keys.contains(&moved.as_str()),
            "{keys:?}"
        );
        storage.delete_many(&[k, moved]).await.unwrap();
    }
    // A copy from a missing key names it.
    let gone = storage.key("gone.bin").unwrap();
    let to = storage.key("to.bin").unwrap();
    let copy = storage.copy(&gone, &to).await.unwrap_err();
    assert!(matches!(copy, maskstore::Error::NotFound { .. }), "{copy}");
    storage.delete(&k).await.unwrap();
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Neither the storage nor the object_store it hands out print the Azure account key, in
/// Debug or Display (object_store's own Debug of the Azure client prints the key's bytes).
#[test]
fn azure_storage_never_prints_its_account_key() {
    let key_bytes = b"an-azure-account-key-of-32-bytes";
    // The base64 of `key_bytes`, as Azure shows a key.
    let key = "YW4tYXp1cmUtYWNjb3VudC1rZXktb2YtMzItYnl0ZXM=".to_string();
    let azure = maskstore::Config::azure("pacsmasks", "pacs-masks")
        .unwrap()
        .with_account_key(maskstore::Secret::new(key.clone()));
    let storage = maskstore::Storage::connect(&azure).unwrap();
    let as_list = format!("{:?}", key_bytes.to_vec());
    for shown in [
        format!("{storage:?}"),
        format!("{:?}", storage.object_store()),
        format!("{}", storage.object_store()),
    ] {
        assert!(!shown.contains(&key), "{shown}");
        assert!(!shown.contains(&as_list[1..20]), "{shown}");
    }
}

/// Object data is never inspected: an object whose bytes are an S3 error document, under
/// a key holding `/storage/v1/` (the start of a GCS JSON API path) and `?list-type=2` (an
/// S3 listing's query), reads as stored on every cloud, whole and ranged. (object_store
/// escapes a GCS key's `/` as `%2F`, so no key's path reads as the JSON API's.)
#[tokio::test]
async fn object_bytes_that_look_like_an_error_document_read_as_stored() {
    let mut stores = Vec::new();
    if let Some(server) = servers::seaweedfs() {
        stores.push(server.storage());
    }
    if let Some(server) = servers::azurite() {
        stores.push(server.storage());
    }
    if let Some(server) = servers::fake_gcs() {
        stores.push(server.storage());
    }
    let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>";
    for storage in stores {
        for name in ["studies/storage/v1/b/x/o/error.xml", "scan?list-type=2.xml"] {
            let key = storage.key(name).unwrap();
            storage.put(&key, body).await.unwrap();
            let read = storage.get(&key).await.unwrap();
            assert_eq!(read.data, body, "{} {name}", storage.backend());
            assert_eq!(storage.get_range(&key, 0..7).await.unwrap().data, "<?xml v");
            eprintln!("DEBUG {} {name}", storage.backend());
            storage.delete(&key).await.unwrap();
        }
    }
}
