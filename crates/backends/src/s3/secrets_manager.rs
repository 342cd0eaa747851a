//! S3 keys from AWS Secrets Manager (`object_storage.secret_source =
//! "aws-secretsmanager:<secret-id>"`): `GetSecretValue` signed with SigV4 by object_store's
//! own signer ([`AwsAuthorizer`]), with credentials from the standard AWS chain
//! (environment, web identity, ECS, instance role) as object_store resolves it.
//!
//! The secret's `SecretString` is a JSON object holding `access_key`, `secret_key` and,
//! for temporary keys, `session_token`; or the same under the AWS variables' names
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, in either case). It is read when the config is loaded, then again
//! every `secret_refresh` seconds: a new `VersionId` is taken once it has been seen for
//! [`SETTLE`] (the new IAM key of a rotation needs a moment to work everywhere), and at
//! once after S3 answered 403 (the old key is gone: waiting cannot help), at most once per
//! [`SETTLE`] however many requests are refused. A read that
//! fails leaves the keys in use, and is logged by secret id only. No value ever reaches a
//! message, a log or Debug.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use object_store::CredentialProvider;
use object_store::aws::{AmazonS3Builder, AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
};
use serde_json::Value;

use crate::secret_file::{SECRET_ROTATIONS_TOTAL, SETTLE};

/// The largest `GetSecretValue` answer read: a secret holds at most 64 KiB.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How long one read of the secret may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the secret lives and how to ask for it.
pub(crate) struct SecretsManager {
    secret_id: String,
    region: String,
    endpoint: String,
    credentials: AwsCredentialProvider,
    http: reqwest::Client,
}

impl std::fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManager")
            .field("secret_id", &self.secret_id)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// One version of the secret: the S3 keys it holds.
#[derive(PartialEq, Eq)]
pub(crate) struct SecretVersion {
    pub(crate) version: String,
    pub(crate) credential: AwsCredential,
}

impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl SecretsManager {
    /// The client of `secret_id`: the region from its ARN, else `region`; the endpoint
    /// from `AWS_ENDPOINT_URL_SECRETS_MANAGER`, then `AWS_ENDPOINT_URL` (the AWS SDKs'
    /// variables), else AWS's.
    pub(crate) fn new(secret_id: &str, region: Option<&str>) -> Result<SecretsManager, String> {
        let region = arn_region(secret_id)
            .or(region.map(str::to_string))
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        // object_store's resolution of the AWS chain; the bucket is never asked for.
        let chain = AmazonS3Builder::from_env()
            .with_bucket_name("maskstore-secrets-manager-credentials")
            .with_region(&region)
            .build()
            .map_err(|e| format!("the AWS credential chain cannot be set up: {e}"))?;
        let http = http_client()?;
        Ok(SecretsManager {
            secret_id: secret_id.to_string(),
            region,
            endpoint,
            credentials: chain.credentials().clone(),
            http,
        })
    }

    /// The secret's current version (`AWSCURRENT`).
    pub(crate) async fn read(&self) -> Result<SecretVersion, String> {
        // The chain may end at an instance-metadata address that never answers off EC2,
        // and object_store retries it for minutes: the read's own bound holds for it too.
        let credential = tokio::time::timeout(READ_TIMEOUT, self.credentials.get_credential())
            .await
            .map_err(|_| {
                format!(
                    "no AWS credentials to read it with within {} s (AWS_* variables, web identity, ECS or instance metadata)",
                    READ_TIMEOUT.as_secs()
                )
            })?
            // The chain's error may quote a metadata server's answer: escaped, cut.
            .map_err(|e| {
                let e = maskstore_core::shown_cut(&e.to_string(), 300);
                format!("no AWS credentials to read it with: {e}")
            })?;
        let body = serde_json::json!({"SecretId": self.secret_id}).to_string();
        let mut request: HttpRequest = http::Request::post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "secretsmanager.GetSecretValue")
            .body(body.clone().into())
            .map_err(|e| format!("the endpoint {} is not a URL: {e}", self.endpoint))?;
        AwsAuthorizer::new(&credential, "secretsmanager", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| format!("cannot sign the request: {e}"))?;
        let mut send = self.http.post(&self.endpoint).body(body);
        for (name, value) in request.headers() {
            send = send.header(name, value);
        }
        let mut answer = send
            .send()
            .await
            .map_err(|e| format!("{} is unreachable: {e}", self.endpoint))?;
        let status = answer.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| format!("the answer broke off: {e}"))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "the answer is larger than {MAX_ANSWER_BYTES} bytes"
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(refusal(status, &bytes));
        }
        parse(&bytes)
    }

    /// [`SecretsManager::read`] from synchronous code, inside an async runtime or not
    /// (the config is loaded in both): on a thread of its own with a runtime of its own.
    pub(crate) fn read_blocking(&self) -> Result<SecretVersion, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("no runtime: {e}"))?
                        .block_on(self.read())
                })
                .join()
                .unwrap_or_else(|_| Err("the reading thread failed".to_string()))
        })
    }
}

/// The client of every read: connected within 5 s, answered whole within [`READ_TIMEOUT`].
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))
}

/// The region of an ARN (`arn:aws:secretsmanager:eu-west-1:…`).
fn arn_region(secret_id: &str) -> Option<String> {
    let mut parts = secret_id.strip_prefix("arn:")?.split(':');
    let region = parts.nth(2)?;
    (!region.is_empty()).then(|| region.to_string())
}

/// A refused read in Secrets Manager's words (`__type`, escaped), never the body whole.
fn refusal(status: http::StatusCode, body: &[u8]) -> String {
    let kind = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_string))
        .map(|t| maskstore_core::shown_cut(t.rsplit('#').next().unwrap_or(&t), 100));
    match kind {
        Some(kind) => format!("Secrets Manager answered {status}: {kind}"),
        None => format!("Secrets Manager answered {status}"),
    }
}

/// The keys in a `GetSecretValue` answer.
fn parse(body: &[u8]) -> Result<SecretVersion, String> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|_| "the answer is not the JSON of GetSecretValue".to_string())?;
    let version = answer
        .get("VersionId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let text = answer
        .get("SecretString")
        .and_then(Value::as_str)
        .ok_or("the secret has no SecretString (a binary secret is not read): store a JSON object of access_key, secret_key")?;
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return Err(
            "the secret's value is not a JSON object: store {\"access_key\": …, \"secret_key\": …}"
                .to_string(),
        );
    };
    let field = |part: &Part| -> Result<Option<String>, String> {
        let mut found: Option<(&str, String)> = None;
        for name in part.names {
            let value = match fields.get(*name) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                Some(_) => return Err(format!("the secret's {name} is not a non-empty string")),
            };
            match &found {
                Some((first, kept)) if *kept != value => {
                    return Err(format!(
                        "the secret's {first} and {name} differ: keep one of them"
                    ));
                }
                Some(_) => {}
                None => found = Some((name, value)),
            }
        }
        Ok(found.map(|(_, value)| value))
    };
    let missing = |part: &Part| {
        let present: Vec<String> = fields
            .keys()
            .map(|k| maskstore_core::shown_cut(k, 40))
            .collect();
        format!(
            "the secret's JSON has no {} (it has: {}); store access_key and secret_key (and session_token for temporary keys), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
            part.names.join(" or "),
            present.join(", ")
        )
    };
    Ok(SecretVersion {
        version,
        credential: AwsCredential {
            key_id: field(&ACCESS_KEY)?.ok_or_else(|| missing(&ACCESS_KEY))?,
            secret_key: field(&SECRET_KEY)?.ok_or_else(|| missing(&SECRET_KEY))?,
            token: field(&SESSION_TOKEN)?,
        },
    })
}

/// One part of the S3 keys and the JSON names it may go by in the secret: maskstore's own,
/// and the names of the AWS variables (as `aws configure export-credentials --format env`
/// and many rotation Lambdas write them), in either case. Two names of one part that both
/// appear must agree.
struct Part {
    names: &'static [&'static str],
}

const ACCESS_KEY: Part = Part {
    names: &["access_key", "AWS_ACCESS_KEY_ID", "aws_access_key_id"],
};
const SECRET_KEY: Part = Part {
    names: &[
        "secret_key",
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
    ],
};
const SESSION_TOKEN: Part = Part {
    names: &["session_token", "AWS_SESSION_TOKEN", "aws_session_token"],
};

/// The S3 keys of a secret, re-read for a rotation: what the S3 client and its presigner
/// ask for a credential.
pub(crate) struct SecretsManagerCredentials {
    source: SecretsManager,
    refresh: Duration,
    state: Mutex<Watch>,
    current: RwLock<Arc<AwsCredential>>,
    /// Set by a 403 from S3: the next request reads the secret at once.
    forbidden: Arc<AtomicBool>,
    /// One read at a time; others keep the keys in use meanwhile.
    reading: AtomicBool,
}

impl std::fmt::Debug for SecretsManagerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerCredentials")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

struct Watch {
    version: Option<String>,
    next_read: Instant,
    /// A new version seen, since when.
    pending: Option<(String, Instant)>,
    /// When the secret was last read (ended).
    last_read: Option<Instant>,
}

impl SecretsManagerCredentials {
    /// Watches `source`, whose keys in use are `credential` (read at load).
    pub(crate) fn new(
        source: SecretsManager,
        credential: AwsCredential,
        refresh: Duration,
        forbidden: Arc<AtomicBool>,
    ) -> SecretsManagerCredentials {
        SecretsManagerCredentials {
            source,
            refresh,
            state: Mutex::new(Watch {
                version: None,
                next_read: Instant::now() + refresh,
                pending: None,
                last_read: None,
            }),
            current: RwLock::new(Arc::new(credential)),
            forbidden,
            reading: AtomicBool::new(false),
        }
    }

    fn current(&self) -> Arc<AwsCredential> {
        Arc::clone(&self.current.read().expect("credential lock"))
    }

    /// Whether a read is due at `now`: the interval passed, a pending version may have
    /// settled, or S3 refused the keys and the last read is [`SETTLE`] old (a storm of
    /// 403s, from a key that stays refused or a policy that denies, reads the secret at
    /// most once per [`SETTLE`], not once per request).
    fn due(&self, now: Instant) -> bool {
        let state = self.state.lock().expect("secret watch lock");
        let may_read_again = state.last_read.is_none_or(|last| now >= last + SETTLE);
        (self.forbidden.load(Ordering::SeqCst) && may_read_again)
            || now >= state.next_read
            || state
                .pending
                .as_ref()
                .is_some_and(|(_, since)| now >= *since + SETTLE)
    }

    /// Reads the secret and adopts a version that has settled (or any after a 403).
    async fn refresh(&self) {
        let urgent = self.forbidden.swap(false, Ordering::SeqCst);
        let read = self.source.read().await;
        let now = Instant::now();
        let mut state = self.state.lock().expect("secret watch lock");
        state.next_read = now + self.refresh;
        state.last_read = Some(now);
        let version = match read {
            Ok(version) => version,
            Err(problem) => {
                tracing::warn!(secret = %self.source.secret_id, %problem, "the Secrets Manager secret cannot be read; the keys in use stay");
                return;
            }
        };
        if state.version.is_none() {
            // The first read since load: the version the keys in use came from.
            if *self.current() == version.credential {
                state.version = Some(version.version);
                return;
            }
        }
        if state.version.as_deref() == Some(version.version.as_str()) {
            state.pending = None;
            return;
        }
        let settled = match &state.pending {
            Some((pending, since)) if *pending == version.version => now >= *since + SETTLE,
            _ => false,
        };
        if !(settled || urgent) {
            if state.pending.as_ref().map(|(v, _)| v) != Some(&version.version) {
                state.pending = Some((version.version.clone(), now));
            }
            return;
        }
        state.pending = None;
        state.version = Some(version.version);
        *self.current.write().expect("credential lock") = Arc::new(version.credential);
        metrics::counter!(SECRET_ROTATIONS_TOTAL, "secret" => "s3_credentials").increment(1);
        tracing::info!(secret = %self.source.secret_id, "secret rotated: a new version in AWS Secrets Manager, requests from now on use it");
    }
}

#[async_trait::async_trait]
impl CredentialProvider for SecretsManagerCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if self.due(Instant::now()) && !self.reading.swap(true, Ordering::SeqCst) {
            // Cleared on drop: a request dropped mid-read (its client gone, a timeout
            // around it) must not leave the flag set, which would stop every later read.
            let _reading = Reading(&self.reading);
            self.refresh().await;
        }
        Ok(self.current())
    }
}

/// The read in progress: clears the flag when the read ends or is dropped.
struct Reading<'a>(&'a AtomicBool);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The S3 client's HTTP connector, which raises `forbidden` when S3 answers 403: the
/// credential provider then reads the secret at once.
#[derive(Debug)]
pub(crate) struct ForbiddenWatch {
    inner: crate::http_client::GuardedConnector,
    forbidden: Arc<AtomicBool>,
}

impl ForbiddenWatch {
    pub(crate) fn new(forbidden: Arc<AtomicBool>) -> ForbiddenWatch {
        ForbiddenWatch {
            inner: crate::http_client::GuardedConnector::new(crate::http_client::Wire::S3),
            forbidden,
        }
    }
}

impl HttpConnector for ForbiddenWatch {
    fn connect(&self, options: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Watched {
            inner: self.inner.connect(options)?,
            forbidden: Arc::clone(&self.forbidden),
        }))
    }
}

#[derive(Debug)]
struct Watched {
    inner: HttpClient,
    forbidden: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl HttpService for Watched {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.inner.execute(request).await?;
        if response.status() == http::StatusCode::FORBIDDEN {
            self.forbidden.store(true, Ordering::SeqCst);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(secret: &str) -> Vec<u8> {
        serde_json::json!({"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:s", "VersionId": "v1", "SecretString": secret})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_keys_may_go_by_the_aws_variables_names_in_either_case() {
        for secret in [
            r#"{"AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "AWS_SESSION_TOKEN": "t0ken"}"#,
            r#"{"aws_access_key_id": "AKIAX", "aws_secret_access_key": "s3cr3t-value", "aws_session_token": "t0ken"}"#,
            r#"{"access_key": "AKIAX", "AWS_ACCESS_KEY_ID": "AKIAX", "secret_key": "s3cr3t-value", "session_token": "t0ken"}"#,
        ] {
            let v = parse(&answer(secret)).unwrap();
            assert_eq!(v.credential.key_id, "AKIAX", "{secret}");
            assert_eq!(v.credential.secret_key, "s3cr3t-value");
            assert_eq!(v.credential.token.as_deref(), Some("t0ken"));
        }
        let e = parse(&answer(
            r#"{"secret_key": "s3cr3t-one", "AWS_SECRET_ACCESS_KEY": "s3cr3t-two", "access_key": "AKIAX"}"#,
        ))
        .unwrap_err();
        assert!(
            e.contains("secret_key and AWS_SECRET_ACCESS_KEY differ"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = parse(&answer(
            r#"{"AccessKeyId": "AKIAX", "SecretAccessKey": "s3cr3t"}"#,
        ))
        .unwrap_err();
        assert!(e.contains("no access_key or AWS_ACCESS_KEY_ID"), "{e}");
        assert!(
            e.contains("it has: AccessKeyId, SecretAccessKey") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn the_keys_come_from_the_secrets_json() {
        let v = parse(&answer(
            r#"{"access_key": "AKIAX", "secret_key": "s3cr3t-value", "other": 1}"#,
        ))
        .unwrap();
        assert_eq!(v.version, "v1");
        assert_eq!(v.credential.key_id, "AKIAX");
        assert_eq!(v.credential.secret_key, "s3cr3t-value");
        assert_eq!(v.credential.token, None);
        assert!(!format!("{v:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_secret_without_the_keys_is_refused_naming_fields_never_values() {
        for secret in [
            r#"{"secret_key": "s3cr3t-value"}"#,
            r#"{"access_key": "AKIAX", "password": "s3cr3t-value"}"#,
            r#"{"access_key": 7, "secret_key": "s3cr3t-value"}"#,
            "s3cr3t-value plain text",
        ] {
            let e = parse(&answer(secret)).unwrap_err();
            assert!(!e.contains("s3cr3t"), "{e}");
            assert!(e.contains("access_key") || e.contains("JSON object"), "{e}");
        }
        let e = parse(b"<html>s3cr3t</html>").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn a_refusal_names_the_error_type_escaped() {
        let e = refusal(
            http::StatusCode::BAD_REQUEST,
            br#"{"__type": "com.amazonaws#ResourceNotFoundException\u001b[31m", "message": "x"}"#,
        );
        assert!(e.contains("ResourceNotFoundException"), "{e}");
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    /// A local server of `GetSecretValue`: each connection is counted; the first `hang`
    /// connections are held open unanswered, the others get `keys` as version `version`.
    struct FakeSecretsManager {
        endpoint: String,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl FakeSecretsManager {
        fn start(hang: usize, version: &'static str, keys: (&'static str, &'static str)) -> Self {
            use std::io::{Read as _, Write as _};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = Arc::clone(&reads);
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    let mut stream = stream.unwrap();
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    if n < hang {
                        held.push(stream);
                        continue;
                    }
                    let mut buf = [0u8; 8192];
                    let _ = stream.read(&mut buf);
                    let secret =
                        serde_json::json!({"access_key": keys.0, "secret_key": keys.1}).to_string();
                    let body = serde_json::json!({"VersionId": version, "SecretString": secret})
                        .to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            FakeSecretsManager { endpoint, reads }
        }

        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }

        fn source(&self) -> SecretsManager {
            SecretsManager {
                secret_id: "test/s3".to_string(),
                region: "us-east-1".to_string(),
                endpoint: self.endpoint.clone(),
                credentials: Arc::new(object_store::StaticCredentialProvider::new(AwsCredential {
                    key_id: "reader".to_string(),
                    secret_key: "reader-secret".to_string(),
                    token: None,
                })),
                http: http_client().unwrap(),
            }
        }
    }

    fn old_keys() -> AwsCredential {
        AwsCredential {
            key_id: "OLDKEY".to_string(),
            secret_key: "old-secret".to_string(),
            token: None,
        }
    }

    #[tokio::test]
    async fn a_read_cancelled_midway_does_not_stop_later_reads() {
        // The first read hangs and its request is dropped (a client gone, a timeout
        // around the storage call); the next 403 must still read the secret.
        let server = FakeSecretsManager::start(1, "v2", ("NEWKEY", "new-secret"));
        let forbidden = Arc::new(AtomicBool::new(true));
        let watch = SecretsManagerCredentials::new(
            server.source(),
            old_keys(),
            Duration::from_secs(3600),
            Arc::clone(&forbidden),
        );
        let cancelled =
            tokio::time::timeout(Duration::from_millis(300), watch.get_credential()).await;
        assert!(cancelled.is_err(), "the hanging read answered");
        forbidden.store(true, Ordering::SeqCst);
        let credential = watch.get_credential().await.unwrap();
        assert_eq!(credential.key_id, "NEWKEY");
        assert_eq!(server.reads(), 2);
    }

    #[tokio::test]
    async fn a_storm_of_403s_reads_the_secret_at_most_once_per_settle() {
        let server = FakeSecretsManager::start(0, "v2", ("NEWKEY", "new-secret"));
        let forbidden = Arc::new(AtomicBool::new(false));
        let watch = SecretsManagerCredentials::new(
            server.source(),
            old_keys(),
            Duration::from_secs(3600),
            Arc::clone(&forbidden),
        );
        // The first 403 reads at once and takes the new keys.
        forbidden.store(true, Ordering::SeqCst);
        assert_eq!(watch.get_credential().await.unwrap().key_id, "NEWKEY");
        assert_eq!(server.reads(), 1);
        // Every request refused again (a denied key, a bucket policy): no read each time.
        for _ in 0..50 {
            forbidden.store(true, Ordering::SeqCst);
            watch.get_credential().await.unwrap();
        }
        // Only if the loop outlasted SETTLE can one more read have happened.
        assert!(server.reads() <= 2, "{} reads", server.reads());
        // The rule itself, without the clock: a 403 is due again once SETTLE has passed.
        forbidden.store(true, Ordering::SeqCst);
        let last = watch.state.lock().unwrap().last_read.unwrap();
        assert!(!watch.due(last + SETTLE / 2));
        assert!(watch.due(last + SETTLE));
    }

    /// A server that runs `answer` on every connection, after reading the request.
    fn hostile(answer: fn(&mut std::net::TcpStream)) -> SecretsManager {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let _ = stream.read(&mut buf);
                    answer(&mut stream);
                });
            }
        });
        let server = FakeSecretsManager {
            endpoint,
            reads: Arc::default(),
        };
        server.source()
    }

    fn chunked_head(stream: &mut std::net::TcpStream) {
        use std::io::Write as _;
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        );
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_bound() {
        let source = hostile(|stream| {
            use std::io::Write as _;
            chunked_head(stream);
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
            while stream.write_all(chunk.as_bytes()).is_ok() {}
        });
        let e = source.read().await.unwrap_err();
        assert!(e.contains("larger than 262144 bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_or_drips_is_given_up_on() {
        let silent = hostile(|_| std::thread::sleep(Duration::from_secs(120)));
        let drip = hostile(|stream| {
            use std::io::Write as _;
            chunked_head(stream);
            while stream.write_all(b"1\r\n \r\n").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let (silent, drip) = tokio::join!(silent.read(), drip.read());
        let (silent, drip) = (silent.unwrap_err(), drip.unwrap_err());
        assert!(silent.contains("unreachable"), "{silent}");
        assert!(drip.contains("broke off"), "{drip}");
    }

    /// A credential chain that never answers (an instance-metadata address that swallows
    /// packets, off EC2).
    #[derive(Debug)]
    struct Silent;

    #[async_trait::async_trait]
    impl CredentialProvider for Silent {
        type Credential = AwsCredential;

        async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_credential_chain_that_never_answers_is_given_up_on() {
        let server = FakeSecretsManager::start(0, "v1", ("AKIAX", "secret"));
        let mut source = server.source();
        source.credentials = Arc::new(Silent);
        let e = source.read().await.unwrap_err();
        assert!(
            e.contains("no AWS credentials") && e.contains("10 s"),
            "{e}"
        );
        assert_eq!(server.reads(), 0);
    }

    #[test]
    fn the_region_comes_from_an_arn() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123:secret:prod/s3-AbCdEf").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("prod/s3"), None);
    }
}
