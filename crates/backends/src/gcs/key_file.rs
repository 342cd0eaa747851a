//! The service account of the `gcs` provider, re-read from `service_account_key_file`
//! when the file changes, on the schedule of every secret file ([`SecretFiles`]): a change
//! is adopted once it has held for [`crate::secret_file::SETTLE`].
//!
//! object_store keeps its service-account token code private, so each adopted key version
//! gets a `GoogleCloudStorage` built from that key alone, whose public `credentials()`
//! (bearer tokens the key signs itself) and `signing_credentials()` (the key for V4 URLs)
//! the provider's own client passes through ([`Tokens`], [`SigningKeys`]). The form policy
//! signer takes the same version's [`PostKey`], so requests, signed URLs and form policies
//! all use the key in use.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use maskstore_core::{Config, Secret};
use object_store::CredentialProvider;
use object_store::gcp::{
    GcpCredential, GcpSigningCredential, GoogleCloudStorage, GoogleCloudStorageBuilder,
};

use super::post::PostKey;
use crate::secret_file::{SecretFiles, rotated};

/// One key version: the document, a client built from it for its credentials, and its
/// form policy key (or why it has none).
pub(crate) struct Version {
    document: Secret,
    client: GoogleCloudStorage,
    pub(crate) post: std::result::Result<PostKey, String>,
}

/// The service account key in use, and the file it is re-read from when there is one.
pub(crate) struct ServiceAccount {
    files: Option<SecretFiles>,
    /// Builds a version's client with the provider's address and bucket.
    base_url: Option<String>,
    current: RwLock<Arc<Version>>,
    /// Held by the one request adopting a change, from reading the file to storing the
    /// version: a version built slowly never replaces one read after it.
    adopting: Mutex<()>,
    /// Makes a version of a document ([`version`]; tests wrap it to build slowly).
    build: fn(&str, Option<&str>) -> object_store::Result<Version>,
}

impl std::fmt::Debug for ServiceAccount {
    // Names the file, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// The config's service account key, watched when it came from
    /// `service_account_key_file`; `None` without a key. A key object_store cannot read is
    /// its error (the JSON problem, never the key's text).
    pub(crate) fn of(config: &Config) -> Option<object_store::Result<Arc<ServiceAccount>>> {
        let os = &config.object_storage;
        let document = os.service_account_key.as_ref()?;
        let base_url = os
            .endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/').to_string());
        let version = match version(document.expose(), base_url.as_deref()) {
            Ok(version) => version,
            Err(e) => return Some(Err(e)),
        };
        let files = os
            .service_account_key_file
            .clone()
            .map(|path: PathBuf| SecretFiles::new("gcs_service_account_key", vec![path]));
        Some(Ok(Arc::new(ServiceAccount {
            files,
            base_url,
            current: RwLock::new(Arc::new(version)),
            adopting: Mutex::new(()),
            build: self::version,
        })))
    }

    /// The key version in use, after adopting a settled change of its file.
    pub(crate) fn version(&self, now: Instant) -> Arc<Version> {
        self.adopt(now);
        Arc::clone(&self.current.read().expect("service account lock"))
    }

    /// Takes the file's new value when it settled and object_store reads it as a service
    /// account key; one that is not is logged, by path only, and the key in use stays.
    fn adopt(&self, now: Instant) {
        let Some(files) = &self.files else { return };
        // Another request is adopting: this one signs with the key in use.
        let Ok(_adopting) = self.adopting.try_lock() else {
            return;
        };
        let Some(value) = files.poll(now).and_then(|mut v| v.pop()) else {
            return;
        };
        if self
            .current
            .read()
            .expect("service account lock")
            .document
            .expose()
            == value
        {
            return;
        }
        let Ok(next) = (self.build)(&value, self.base_url.as_deref()) else {
            tracing::warn!(
                file = %files.paths()[0].display(),
                "the changed service account key file cannot be used: it is not a service \
                 account JSON key (write the key as the Google Cloud console downloads it, \
                 with client_email and private_key); the key in use stays"
            );
            return;
        };
        *self.current.write().expect("service account lock") = Arc::new(next);
        rotated(files.name(), files.paths());
    }
}

/// The version of `document`, or the reason it is not a service account key: maskstore's
/// own when it is not a JSON object with the two text fields ([`shape`]), else
/// object_store's.
fn version(document: &str, base_url: Option<&str>) -> object_store::Result<Version> {
    shape(document).map_err(|problem| object_store::Error::Generic {
        store: "GCS",
        source: problem.into(),
    })?;
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name("-")
        .with_service_account_key(document);
    if let Some(base_url) = base_url {
        builder = builder.with_base_url(base_url);
    }
    Ok(Version {
        client: builder.build()?,
        post: PostKey::from_service_account(document),
        document: Secret::new(document),
    })
}

/// Why `document` is not a JSON object whose `client_email` and `private_key` are text, in
/// words that never repeat it: serde_json's own type errors quote the value (`invalid type:
/// string "-----BEGIN PRIVATE KEY-----…"`), and a PEM pasted as a JSON string is the key.
fn shape(document: &str) -> std::result::Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(document).map_err(|e| {
        format!(
            "the service account key is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let Some(fields) = value.as_object() else {
        return Err("the service account key is JSON but not an object".to_string());
    };
    match ["client_email", "private_key"]
        .into_iter()
        .find(|name| !fields.get(*name).is_some_and(serde_json::Value::is_string))
    {
        Some(name) => Err(format!(
            "the service account key's {name} is missing or not a string"
        )),
        None => Ok(()),
    }
}

/// The bearer tokens of the key in use (the provider client's `with_credentials`).
#[derive(Debug)]
pub(crate) struct Tokens(pub(crate) Arc<ServiceAccount>);

#[async_trait::async_trait]
impl CredentialProvider for Tokens {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let version = self.0.version(Instant::now());
        version.client.credentials().get_credential().await
    }
}

/// The signing key of the key in use (the provider client's `with_signing_credentials`).
#[derive(Debug)]
pub(crate) struct SigningKeys(pub(crate) Arc<ServiceAccount>);

#[async_trait::async_trait]
impl CredentialProvider for SigningKeys {
    type Credential = GcpSigningCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpSigningCredential>> {
        let version = self.0.version(Instant::now());
        version.client.signing_credentials().get_credential().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_file::SETTLE;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Condvar;

    /// A service account key of a fresh 2048-bit RSA key made by openssl (as
    /// `scripts/test-servers` makes the test servers' key), for `email`.
    fn account(email: &str) -> String {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        serde_json::json!({
            "type": "service_account",
            "private_key_id": "rotation-test",
            "private_key": String::from_utf8(out.stdout).unwrap(),
            "client_email": email,
        })
        .to_string()
    }

    fn write(path: &Path, text: &str, mode: u32) {
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }

    fn email(account: &ServiceAccount, now: Instant) -> String {
        let version = account.version(now);
        let post = version.post.as_ref().expect("a form key");
        format!("{post:?}")
    }

    #[test]
    fn a_changed_key_file_is_adopted_once_settled_and_a_broken_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service_account.json");
        let (a, b) = (account("a@test.iam"), account("b@test.iam"));
        write(&path, &a, 0o600);
        let mut config = Config::gcs("masks")
            .unwrap()
            .with_service_account_key(Secret::new(a.clone()));
        config.object_storage.service_account_key_file = Some(path.clone());
        let sa = ServiceAccount::of(&config).unwrap().unwrap();
        let t0 = Instant::now();
        assert!(email(&sa, t0).contains("a@test.iam"));
        write(&path, &b, 0o600);
        assert!(email(&sa, t0).contains("a@test.iam"), "not settled yet");
        let mut t = t0 + SETTLE;
        assert!(email(&sa, t).contains("b@test.iam"), "settled: B signs");
        let half = &b[..b.len() / 2];
        let broken: [(&str, u32); 4] = [
            ("not json at all", 0o600),
            (half, 0o600),
            (
                r#"{"client_email": "c@test.iam", "private_key": "x"}"#,
                0o600,
            ),
            (&a, 0o640),
        ];
        for (text, mode) in broken {
            write(&path, text, mode);
            for _ in 0..3 {
                t += SETTLE;
                assert!(email(&sa, t).contains("b@test.iam"), "{mode:o}: B stays");
            }
        }
        std::fs::remove_file(&path).unwrap();
        t += SETTLE * 3;
        assert!(email(&sa, t).contains("b@test.iam"), "removed: B stays");
        write(&path, &a, 0o600);
        sa.version(t + SETTLE);
        assert!(email(&sa, t + SETTLE * 2).contains("a@test.iam"), "A again");
        let shown = format!("{sa:?}");
        assert!(
            !shown.contains("PRIVATE") && !shown.contains("a@test.iam"),
            "{shown}"
        );
    }

    #[test]
    fn a_key_that_is_not_a_key_document_is_refused_without_its_text() {
        // A PEM pasted as a JSON string, and keys whose fields have the wrong types:
        // serde_json's "invalid type: string \"…\"" would repeat the value.
        let pem =
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqSECRETBODY\n-----END PRIVATE KEY-----\n";
        let documents = [
            serde_json::json!(pem).to_string(),
            serde_json::json!([pem]).to_string(),
            serde_json::json!({"client_email": "a@test.iam", "private_key": [pem]}).to_string(),
            serde_json::json!({"client_email": pem, "private_key": 5}).to_string(),
            format!("{{\"private_key\": \"{}\"", pem.replace('\n', "\\n")),
        ];
        for document in documents {
            let config = Config::gcs("masks")
                .unwrap()
                .with_service_account_key(Secret::new(document.clone()));
            let Err(e) = crate::gcs::connect(&config) else {
                panic!("{document} was taken as a key");
            };
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("SECRETBODY"), "{shown}");
            assert!(shown.contains("service_account_key"), "{shown}");
        }
    }

    /// The gate of [`slow_build`]: (B's build entered, B's build may finish).
    static GATE: (Mutex<(bool, bool)>, Condvar) = (Mutex::new((false, false)), Condvar::new());

    /// [`version`], held at the gate for key B.
    fn slow_build(document: &str, base: Option<&str>) -> object_store::Result<Version> {
        if document.contains("b@test.iam") {
            let (lock, changed) = &GATE;
            let mut gate = lock.lock().unwrap();
            gate.0 = true;
            changed.notify_all();
            while !gate.1 {
                gate = changed.wait(gate).unwrap();
            }
        }
        version(document, base)
    }

    #[test]
    fn a_key_built_slowly_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service_account.json");
        let (a, b, c) = (
            account("a@test.iam"),
            account("b@test.iam"),
            account("c@test.iam"),
        );
        write(&path, &a, 0o600);
        let mut config = Config::gcs("masks")
            .unwrap()
            .with_service_account_key(Secret::new(a));
        config.object_storage.service_account_key_file = Some(path.clone());
        let mut sa = Arc::try_unwrap(ServiceAccount::of(&config).unwrap().unwrap()).unwrap();
        sa.build = slow_build;
        let sa = Arc::new(sa);
        let t0 = Instant::now();
        write(&path, &b, 0o600);
        sa.version(t0);
        // One request takes B and builds it slowly; meanwhile C is written and settles.
        let slow = std::thread::spawn({
            let sa = Arc::clone(&sa);
            move || drop(sa.version(t0 + SETTLE))
        });
        let (lock, changed) = &GATE;
        let mut gate = lock.lock().unwrap();
        while !gate.0 {
            gate = changed.wait(gate).unwrap();
        }
        drop(gate);
        write(&path, &c, 0o600);
        sa.version(t0 + SETTLE);
        sa.version(t0 + SETTLE * 2);
        let mut gate = lock.lock().unwrap();
        gate.1 = true;
        changed.notify_all();
        drop(gate);
        slow.join().unwrap();
        let mut t = t0 + SETTLE * 2;
        for _ in 0..3 {
            t += SETTLE;
            sa.version(t);
        }
        assert!(email(&sa, t).contains("c@test.iam"), "the file holds C");
    }

    #[tokio::test]
    async fn the_clients_credentials_are_the_version_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service_account.json");
        let (a, b) = (account("a@test.iam"), account("b@test.iam"));
        write(&path, &a, 0o600);
        let mut config = Config::gcs("masks")
            .unwrap()
            .with_service_account_key(Secret::new(a));
        config.object_storage.service_account_key_file = Some(path.clone());
        let sa = ServiceAccount::of(&config).unwrap().unwrap();
        let signing = SigningKeys(Arc::clone(&sa));
        assert_eq!(signing.get_credential().await.unwrap().email, "a@test.iam");
        let first = Tokens(Arc::clone(&sa)).get_credential().await.unwrap();
        write(&path, &b, 0o600);
        sa.version(Instant::now());
        sa.version(Instant::now() + SETTLE);
        assert_eq!(signing.get_credential().await.unwrap().email, "b@test.iam");
        let second = Tokens(Arc::clone(&sa)).get_credential().await.unwrap();
        assert_ne!(first.bearer, second.bearer, "a token B signed");
    }
}
