//! GCS form policies against the google-cloud-storage SDK, with the test servers' service
//! account: the SDK's `generate_signed_post_policy_v4` and `Storage::signed_post` give the
//! same fields, URL and conditions for the same key prefix and range. fake-gcs-server
//! takes no form uploads (its `POST /<bucket>/` answers 404), so the signature itself is
//! checked against the SDK's in the `gcs` provider's unit tests.

use maskstore_backends::signing::{Condition, PostPolicy};
use maskstore_backends::{PostOptions, PostTarget};
use maskstore_core::KeyPrefix;
use maskstore_testkit::servers;
use serde_json::Value;

use crate::foreign::{python, writers_available};

const SDK_POST: &str = r#"
import json, datetime
from google.cloud import storage
from google.oauth2 import service_account
info = json.load(open(env('FAKE_GCS_SERVICE_ACCOUNT_FILE')))
info.setdefault('token_uri', 'https://oauth2.googleapis.com/token')  # the SDK wants one; signing never uses it
creds = service_account.Credentials.from_service_account_info(info)
client = storage.Client(project='maskstore-test', credentials=creds)
print(json.dumps(client.generate_signed_post_policy_v4(
    env('FAKE_GCS_BUCKET'), sys.argv[1] + '${filename}',
    expiration=datetime.timedelta(seconds=600),
    conditions=[['starts-with', '$key', sys.argv[1]], ['content-length-range', 1, 10]])))
"#;

/// A policy's conditions but the signing instant's (the two were signed apart), sorted.
fn conditions(fields: &[(String, String)]) -> Vec<Condition> {
    let text = &fields.iter().find(|(n, _)| n == "policy").unwrap().1;
    let mut out: Vec<Condition> = PostPolicy::from_base64(text)
        .unwrap()
        .conditions
        .into_iter()
        .filter(|c| !matches!(c, Condition::Equals(n, _) if n == "x-goog-date" || n == "x-goog-credential"))
        // The SDK also names the key field exactly, beside the caller's starts-with.
        .filter(|c| !matches!(c, Condition::Equals(n, v) if n == "key" && v.ends_with("${filename}")))
        .collect();
    out.sort_by_key(|c| format!("{c:?}"));
    out
}

#[tokio::test]
async fn gcs_forms_carry_the_google_sdks_fields_and_conditions() {
    let Some(server) = servers::fake_gcs() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let storage = server.storage();
    let prefix = format!("{}gcs-form/", storage.prefix().as_str());
    let target = PostTarget::Prefix(KeyPrefix::parse(prefix.clone()).unwrap());
    let options = PostOptions {
        length: Some(1..=10),
        ..PostOptions::default()
    };
    let ours = storage.signed_post(&target, None, &options).await.unwrap();
    let sdk: Value = serde_json::from_str(&python(SDK_POST, &[&prefix])).unwrap();
    let sdk_fields: Vec<(String, String)> = sdk["fields"]
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
    assert_eq!(names(&ours.fields), names(&sdk_fields));
    assert_eq!(conditions(&ours.fields), conditions(&sdk_fields));
    let field = |fields: &[(String, String)], name: &str| {
        fields.iter().find(|(n, _)| n == name).unwrap().1.clone()
    };
    let scope = |credential: String| credential.split_once('/').unwrap().0.to_string();
    assert_eq!(
        scope(field(&ours.fields, "x-goog-credential")),
        scope(field(&sdk_fields, "x-goog-credential"))
    );
    assert_eq!(field(&ours.fields, "key"), field(&sdk_fields, "key"));
    // The SDK writes Google's address; ours is the configured endpoint's, the same path.
    let path = |url: &str| {
        url.split_once("//")
            .unwrap()
            .1
            .split_once('/')
            .unwrap()
            .1
            .to_string()
    };
    assert_eq!(path(&ours.url), path(sdk["url"].as_str().unwrap()));
}
