//! Form uploads from the command line (`curl -F`) to SeaweedFS and the gateway, and the
//! cross-check of the S3 policy with boto3's `generate_presigned_post` for the same
//! conditions: the same fields and conditions, and SeaweedFS takes both forms alike (within
//! the range 204, over it 400 `EntityTooLarge`, outside the prefix 403), storing nothing
//! it refused.

use std::process::Command;

use maskstore_backends::{PostOptions, PostTarget, SignedPost, Storage};
use maskstore_core::{KeyPrefix, ObjectKey};
use maskstore_testkit::servers;
use serde_json::Value;

use crate::foreign::{python, writers_available};
use crate::post_forms::FormGateway;

/// Posts `fields` (the key replaced by `key` when given) and a file of `bytes` named
/// `name` to `url` with `curl -F`: the status and the answer's body. curl runs on the
/// blocking pool: the gateway under test may serve from this test's own runtime.
async fn curl(
    url: &str,
    fields: &[(String, String)],
    key: Option<&str>,
    name: &str,
    bytes: &[u8],
) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, bytes).unwrap();
    let mut command = Command::new("curl");
    command.args(["-sS", "-o", "-", "-w", "\n%{http_code}"]);
    for (field, value) in fields {
        let value = match (field.as_str(), key) {
            ("key", Some(key)) => key,
            _ => value.as_str(),
        };
        // --form-string: the value as it is (a leading @ or < would read a file).
        command.arg("--form-string").arg(format!("{field}={value}"));
    }
    command
        .arg("-F")
        .arg(format!("file=@{};filename={name}", file.display()))
        .arg(url);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("curl runs (apt-get install curl)");
    drop(dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

/// The three cases of the issue through `curl -F`: within the range, over it, outside the
/// prefix; then what the store holds under `prefix`.
async fn three_cases(storage: &Storage, signed: &SignedPost, prefix: &str) -> [(u16, String); 3] {
    let within = curl(&signed.url, &signed.fields, None, "seg.bin", b"12345").await;
    let over = curl(&signed.url, &signed.fields, None, "big.bin", &[b'x'; 11]).await;
    let outside_key = format!("{}${{filename}}", prefix.replace("/in/", "/out/"));
    let outside = curl(
        &signed.url,
        &signed.fields,
        Some(&outside_key),
        "out.bin",
        b"1",
    )
    .await;
    let read = |name: &str| {
        let key = ObjectKey::parse(name).unwrap();
        async move { storage.get(&key).await.map(|o| o.data) }
    };
    assert_eq!(
        read(&format!("{prefix}seg.bin")).await.unwrap().as_ref(),
        b"12345"
    );
    assert!(
        read(&format!("{prefix}big.bin")).await.is_err(),
        "over the range: nothing stored"
    );
    let outside_stored = format!("{}out.bin", prefix.replace("/in/", "/out/"));
    assert!(
        read(&outside_stored).await.is_err(),
        "outside the prefix: nothing stored"
    );
    [within, over, outside]
}

fn options() -> PostOptions {
    PostOptions {
        length: Some(1..=10),
        ..PostOptions::default()
    }
}

fn curl_available() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("curl is missing; .ci/run needs it for the form upload tests");
    }
    found
}

#[tokio::test]
async fn curl_posts_a_form_to_seaweedfs_which_holds_the_policy() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    if !curl_available() {
        return;
    }
    let storage = server.storage();
    let prefix = format!(
        "{}form-{:016x}/in/",
        storage.prefix().as_str(),
        rand::random::<u64>()
    );
    let target = PostTarget::Prefix(KeyPrefix::parse(prefix.clone()).unwrap());
    let signed = storage
        .signed_post(&target, None, &options())
        .await
        .unwrap();
    let [within, over, outside] = three_cases(&storage, &signed, &prefix).await;
    println!(
        "SeaweedFS: within {}, over {}, outside {}",
        within.0, over.0, outside.0
    );
    assert_eq!(within.0, 204, "{}", within.1);
    assert_eq!(over.0, 400, "{}", over.1);
    assert!(over.1.contains("EntityTooLarge"), "{}", over.1);
    assert_eq!(outside.0, 403, "{}", outside.1);
    // A forged policy: SeaweedFS checks the signature.
    let mut forged = signed.fields.clone();
    let policy = forged.iter_mut().find(|(n, _)| n == "policy").unwrap();
    policy.1 = maskstore_backends::signing::PostPolicy::from_base64(&policy.1)
        .map(|mut p| {
            p.conditions
                .retain(|c| !matches!(c, maskstore_backends::signing::Condition::LengthRange(..)));
            p.to_base64()
        })
        .unwrap();
    let got = curl(&signed.url, &forged, None, "forged.bin", &[b'x'; 100]).await;
    assert_eq!(got.0, 403, "{}", got.1);
    let key = ObjectKey::parse(format!("{prefix}seg.bin")).unwrap();
    storage.delete(&key).await.unwrap();
}

#[tokio::test]
async fn curl_posts_the_same_form_to_the_gateway() {
    if !curl_available() {
        return;
    }
    let gw = FormGateway::start(|_| {}).await;
    let prefix = "mask/form/in/";
    let target = PostTarget::Prefix(KeyPrefix::parse(prefix).unwrap());
    let signed = gw
        .storage
        .signed_post(&target, None, &options())
        .await
        .unwrap();
    let [within, over, outside] = three_cases(&gw.storage, &signed, prefix).await;
    assert_eq!(within.0, 204, "{}", within.1);
    assert_eq!(over.0, 400, "{}", over.1);
    assert!(over.1.contains("EntityTooLarge"), "{}", over.1);
    assert_eq!(outside.0, 403, "{}", outside.1);
}

/// boto3's form for a prefix and a length range, as JSON (`url`, `fields`).
const BOTO3_POST: &str = r#"
import json, boto3
from botocore.config import Config
# SigV4, as AWS signs every POST today (boto3 falls back to SigV2 on a custom endpoint).
c = boto3.client('s3', endpoint_url=env('SEAWEEDFS_ENDPOINT'), region_name='us-east-1',
    aws_access_key_id=env('SEAWEEDFS_ACCESS_KEY'),
    aws_secret_access_key=env('SEAWEEDFS_SECRET_KEY'),
    config=Config(signature_version='s3v4', s3={'addressing_style': 'path'}))
print(json.dumps(c.generate_presigned_post(
    Bucket=bucket('SEAWEEDFS'), Key=sys.argv[1] + '${filename}',
    Conditions=[['content-length-range', 1, 10]], ExpiresIn=600)))
"#;

/// A policy's conditions as comparable text, the signing date's values left out (the
/// two forms were signed seconds apart).
fn conditions(fields: &[(String, String)]) -> Vec<String> {
    let policy = fields.iter().find(|(n, _)| n == "policy").unwrap();
    let policy = maskstore_backends::signing::PostPolicy::from_base64(&policy.1).unwrap();
    let mut out: Vec<String> = policy
        .conditions
        .iter()
        .filter(|c| !matches!(c, maskstore_backends::signing::Condition::Equals(n, _) if n == "x-amz-date" || n == "x-amz-credential"))
        .map(|c| format!("{c:?}"))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn boto3s_presigned_post_for_the_same_conditions_matches_ours_and_seaweedfs_takes_both() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    if !writers_available() || !curl_available() {
        return;
    }
    let storage = server.storage();
    let prefix = format!(
        "{}boto-{:016x}/in/",
        storage.prefix().as_str(),
        rand::random::<u64>()
    );
    let target = PostTarget::Prefix(KeyPrefix::parse(prefix.clone()).unwrap());
    let ours = storage
        .signed_post(&target, None, &options())
        .await
        .unwrap();
    let boto: Value = serde_json::from_str(&python(BOTO3_POST, &[&prefix])).unwrap();
    let boto_fields: Vec<(String, String)> = boto["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let names = |fields: &[(String, String)]| {
        let mut names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&ours.fields), names(&boto_fields));
    assert_eq!(conditions(&ours.fields), conditions(&boto_fields));
    assert_eq!(
        ours.url.trim_end_matches('/'),
        boto["url"].as_str().unwrap().trim_end_matches('/')
    );
    let boto_form = SignedPost {
        url: boto["url"].as_str().unwrap().to_string(),
        fields: boto_fields,
        expires_at: ours.expires_at,
    };
    let [within, over, outside] = three_cases(&storage, &boto_form, &prefix).await;
    println!(
        "boto3's form on SeaweedFS: within {}, over {}, outside {}",
        within.0, over.0, outside.0
    );
    assert_eq!(
        (within.0, over.0, outside.0),
        (204, 400, 403),
        "{within:?} {over:?} {outside:?}"
    );
    storage
        .delete(&ObjectKey::parse(format!("{prefix}seg.bin")).unwrap())
        .await
        .unwrap();
}
