//! The gateway's signer: HMAC-SHA256 URLs for the local and memory providers, with the
//! current secret, earlier ones still accepted, and the rotation of the secret's file.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use maskstore_core::{ObjectKey, Secret};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use super::query::{Params, check_query_limits};
use super::{
    Grant, OBJECT_PATH, PARAM_CONTENT_LENGTH, PARAM_CONTENT_TYPE, PARAM_EXPIRES, PARAM_METHOD,
    PARAM_SHA256, PARAM_SIGNATURE, Refusal, SignOptions, SignedMethod,
};
use crate::secret_file::{SecretFiles, rotated};

type HmacSha256 = Hmac<Sha256>;

/// Characters kept as they are in a key segment of a URL path (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Issues and verifies gateway URLs with HMAC-SHA256.
///
/// A signer made by [`GatewaySigner::rotating`] watches the file of its secret: when the
/// file changes, the new secret signs from the next request on and the old one is still
/// accepted for `keep_previous` (the longest URL lifetime), so URLs issued before the
/// rotation work until they expire.
pub struct GatewaySigner {
    base: String,
    keys: RwLock<Arc<Keys>>,
    rotation: Option<Rotation>,
}

/// The secrets in use.
struct Keys {
    current: Key,
    /// Earlier secrets still accepted, newest first: the configured previous one (for
    /// good), then each replaced by a rotation (until the instant given), at most
    /// [`MAX_PREVIOUS_SECRETS`], so rotating twice within `keep_previous` keeps URLs of
    /// the first secret working too.
    previous: Vec<(Key, Option<Instant>)>,
}

/// A secret with its HMAC key schedule (the inner and outer padded key, hashed) computed
/// once: a signature then hashes the message alone, not the key's two blocks again.
#[derive(Clone)]
struct Key {
    secret: Secret,
    keyed: HmacSha256,
}

impl Key {
    fn new(secret: Secret) -> Key {
        let keyed = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        Key { secret, keyed }
    }

    /// The HMAC-SHA256 of `message` (its pieces in order) under this secret.
    fn mac(&self, message: &[&str]) -> Vec<u8> {
        self.hashed(message).finalize().into_bytes().to_vec()
    }

    /// Whether `signature` is this secret's over `message`, compared in constant time.
    fn verifies(&self, message: &[&str], signature: &[u8]) -> bool {
        self.hashed(message).verify_slice(signature).is_ok()
    }

    /// The keyed state after `message`: its pieces are hashed as they are, so no message
    /// is put together in memory first.
    fn hashed(&self, message: &[&str]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        for piece in message {
            mac.update(piece.as_bytes());
        }
        mac
    }
}

/// The most earlier secrets a rotating signer accepts at once; a URL signed with an older
/// one is refused (rotating that often within `signed_url.max_ttl` is not a rotation).
pub const MAX_PREVIOUS_SECRETS: usize = 4;

struct Rotation {
    files: SecretFiles,
    keep_previous: Duration,
}

impl fmt::Debug for GatewaySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().expect("signer lock");
        f.debug_struct("GatewaySigner")
            .field("base", &self.base)
            .field("secrets", &(1 + keys.previous.len()))
            .field("rotating", &self.rotation.is_some())
            .finish()
    }
}

impl GatewaySigner {
    /// A signer for URLs under `public_url`, signing with `current` and also accepting
    /// `previous`.
    pub fn new(public_url: &str, current: Secret, previous: Option<Secret>) -> Self {
        GatewaySigner {
            base: public_url.trim_end_matches('/').to_string(),
            keys: RwLock::new(Arc::new(Keys {
                current: Key::new(current),
                previous: previous.into_iter().map(|p| (Key::new(p), None)).collect(),
            })),
            rotation: None,
        }
    }

    /// Like [`GatewaySigner::new`], with `current` read from `file`, which is watched: a
    /// new secret written there signs from then on, and the one it replaces stays
    /// accepted for `keep_previous`.
    pub fn rotating(
        public_url: &str,
        current: Secret,
        previous: Option<Secret>,
        file: PathBuf,
        keep_previous: Duration,
    ) -> Self {
        GatewaySigner {
            rotation: Some(Rotation {
                files: SecretFiles::new("gateway_signing_secret", vec![file]),
                keep_previous,
            }),
            ..GatewaySigner::new(public_url, current, previous)
        }
    }

    /// The secrets in use at `now`, after adopting a settled change of the secret's file.
    fn keys(&self, now: Instant) -> Arc<Keys> {
        self.keys_settled(now, crate::secret_file::SETTLE)
    }

    /// [`GatewaySigner::keys`], adopting a change that has held for `settle`.
    fn keys_settled(&self, now: Instant, settle: Duration) -> Arc<Keys> {
        if let Some(rotation) = &self.rotation
            && let Some(mut values) = rotation.files.poll_settled(now, settle)
        {
            self.adopt(rotation, Secret::new(values.remove(0)), now);
        }
        Arc::clone(&self.keys.read().expect("signer lock"))
    }

    /// Makes `next`, read from the rotated file, the current secret, the one in use
    /// becoming the previous one until `now` + `keep_previous`.
    fn adopt(&self, rotation: &Rotation, next: Secret, now: Instant) {
        let mut keys = self.keys.write().expect("signer lock");
        if next.expose().len() < maskstore_core::config::MIN_SIGNING_SECRET_BYTES {
            tracing::warn!(
                secret = rotation.files.name(),
                "the rotated signing secret is shorter than {} bytes; the secret in use stays (generate one with: openssl rand -hex 32)",
                maskstore_core::config::MIN_SIGNING_SECRET_BYTES
            );
        } else if next != keys.current.secret {
            let mut previous = vec![(keys.current.clone(), Some(now + rotation.keep_previous))];
            previous.extend(
                keys.previous
                    .iter()
                    .filter(|(_, until)| until.is_none_or(|until| now < until))
                    // The configured previous secret was already on its way out.
                    .map(|(key, until)| {
                        (key.clone(), until.or(Some(now + rotation.keep_previous)))
                    }),
            );
            previous.truncate(MAX_PREVIOUS_SECRETS);
            *keys = Arc::new(Keys {
                previous,
                current: Key::new(next),
            });
            rotated(rotation.files.name(), rotation.files.paths());
        }
    }

    /// The base URL signed URLs point at.
    pub fn public_url(&self) -> &str {
        &self.base
    }

    /// A URL granting `method` on `key` until `expires` (Unix seconds).
    pub fn sign(
        &self,
        method: SignedMethod,
        key: &ObjectKey,
        expires: i64,
        options: &SignOptions,
    ) -> String {
        let content_type = options.content_type.as_deref().unwrap_or("");
        let content_length = options
            .content_length
            .map(|n| n.to_string())
            .unwrap_or_default();
        let sha256 = options.sha256.map(|digest| digest.hex());
        let keys = self.keys(Instant::now());
        let signature = hex(&keys.current.mac(&canonical(
            method.as_str(),
            key.as_str(),
            &expires.to_string(),
            content_type,
            &content_length,
            sha256.as_deref(),
        )));
        let path: Vec<String> = key
            .as_str()
            .split('/')
            .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
            .collect();
        let mut url = format!(
            "{}{OBJECT_PATH}{}?{PARAM_METHOD}={method}&{PARAM_EXPIRES}={expires}",
            self.base,
            path.join("/")
        );
        if let Some(ct) = &options.content_type {
            url.push_str(&format!(
                "&{PARAM_CONTENT_TYPE}={}",
                utf8_percent_encode(ct, SEGMENT)
            ));
        }
        if let Some(n) = options.content_length {
            url.push_str(&format!("&{PARAM_CONTENT_LENGTH}={n}"));
        }
        if let Some(sha256) = &sha256 {
            url.push_str(&format!("&{PARAM_SHA256}={sha256}"));
        }
        url.push_str(&format!("&{PARAM_SIGNATURE}={signature}"));
        url
    }

    /// The URL browser forms post to ([`super::FORM_PATH`] below the public URL).
    pub fn form_url(&self) -> String {
        format!("{}{}", self.base, super::FORM_PATH)
    }

    /// The signature of a form's policy (its base64 text, as the form carries it): 64
    /// lowercase hex digits, under a domain of its own so no URL's signature is a policy's.
    pub fn sign_policy(&self, policy: &str) -> String {
        hex(&self
            .keys(Instant::now())
            .current
            .mac(&policy_message(policy)))
    }

    /// Whether `signature` (as a form carries it) is one of the secrets in use over
    /// `policy`.
    pub fn verify_policy(&self, policy: &str, signature: &str) -> bool {
        match super::query::signature_bytes(signature) {
            Ok(bytes) => self.signed_by_us(&policy_message(policy), &bytes),
            Err(_) => false,
        }
    }

    /// Checks a request for `encoded_key` (the path below [`OBJECT_PATH`], still
    /// percent-encoded) with query string `query`, made with HTTP method `used`, at `now`.
    pub fn verify(
        &self,
        used: &str,
        encoded_key: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<Grant, Refusal> {
        check_query_limits(query).map_err(|limit| Refusal::Malformed(limit.to_string()))?;
        let params = Params::parse(query)?;
        let key_text = percent_decode_str(encoded_key)
            .decode_utf8()
            .map_err(|_| Refusal::InvalidKey("the path is not UTF-8".to_string()))?;
        let key =
            ObjectKey::parse(key_text.as_ref()).map_err(|e| Refusal::InvalidKey(e.to_string()))?;
        let query = params.checked()?;
        let message = canonical(
            query.method,
            key.as_str(),
            query.expires,
            query.content_type.as_deref().unwrap_or(""),
            query.content_length.unwrap_or(""),
            query.sha256,
        );
        if !self.signed_by_us(&message, &query.signature) {
            return Err(Refusal::BadSignature);
        }
        let signed = query.values()?;
        if now.timestamp() > signed.expires {
            let at = DateTime::from_timestamp(signed.expires, 0).unwrap_or_default();
            return Err(Refusal::Expired(at));
        }
        if !used.eq_ignore_ascii_case(signed.method.as_str()) {
            return Err(Refusal::WrongMethod {
                signed: signed.method,
                used: used.to_string(),
            });
        }
        Ok(Grant {
            method: signed.method,
            key,
            content_type: query.content_type,
            content_length: signed.content_length,
            sha256: signed.sha256,
        })
    }

    /// Whether one of the secrets in use (or, when rotating, a new one in the secret's
    /// file) made `signature` over `message`.
    fn signed_by_us(&self, message: &[&str], signature: &[u8]) -> bool {
        // Every secret is tried, so the time taken does not tell which one matched.
        let checked = Instant::now();
        let matches = |keys: &Keys| {
            let previous = keys
                .previous
                .iter()
                .filter(|(_, until)| until.is_none_or(|until| checked < until))
                .map(|(key, _)| key);
            std::iter::once(&keys.current)
                .chain(previous)
                .map(|key| key.verifies(message, signature))
                .fold(false, |any, ok| any | ok)
        };
        let mut matched = matches(&self.keys(checked));
        if !matched && let Some(rotation) = &self.rotation {
            // The issuer of this URL may have read a new secret before this process
            // settled on it: take a change of the file at once (a stat when there is
            // none), but only when the new secret signed this URL. Any request can get
            // here, so a file caught half rewritten is never adopted on a client's say-so.
            let signed_it = |values: &[String]| {
                values[0].len() >= maskstore_core::config::MIN_SIGNING_SECRET_BYTES
                    && Key::new(Secret::new(values[0].clone())).verifies(message, signature)
            };
            if let Some(mut values) = rotation.files.poll_early(signed_it) {
                self.adopt(rotation, Secret::new(values.remove(0)), checked);
                matched = matches(&self.keys.read().expect("signer lock"));
            }
        }
        matched
    }
}

/// The signed message, as the pieces it is hashed from, in order:
/// `maskstore-url-v1\n{method}\n{key}\n{expires}\n{content_type}\n{length}`. A bound
/// SHA-256 is one more line (`\nsha256:{hex}`), so URLs without one keep their message
/// (and stay valid), and none can be made to look like one with a SHA-256: the length line
/// before it holds digits only.
fn canonical<'a>(
    method: &'a str,
    key: &'a str,
    expires: &'a str,
    content_type: &'a str,
    length: &'a str,
    sha256: Option<&'a str>,
) -> [&'a str; 12] {
    let (sha256_line, sha256) = match sha256 {
        Some(hex) => ("\nsha256:", hex),
        None => ("", ""),
    };
    [
        "maskstore-url-v1\n",
        method,
        "\n",
        key,
        "\n",
        expires,
        "\n",
        content_type,
        "\n",
        length,
        sha256_line,
        sha256,
    ]
}

/// The message a form's policy signature is over, as its pieces.
fn policy_message(policy: &str) -> [&str; 2] {
    ["maskstore-post-v1\n", policy]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random secret of 32 bytes, hex-encoded.
pub fn random_secret() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(hex(&bytes))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const NOW: i64 = 1_800_000_000;

    pub(crate) fn signer() -> GatewaySigner {
        GatewaySigner::new("http://127.0.0.1:9000/", random_secret(), None)
    }

    pub(crate) fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    pub(crate) fn split(url: &str) -> (String, String) {
        let rest = url.strip_prefix("http://127.0.0.1:9000/o/").unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        (path.to_string(), query.to_string())
    }

    fn flip_last_hex_digit(query: &str) -> String {
        let mut text = query.to_string();
        let last = text.pop().unwrap();
        text.push(if last == '0' { '1' } else { '0' });
        text
    }

    pub(crate) fn key(text: &str) -> ObjectKey {
        ObjectKey::parse(text).unwrap()
    }

    /// A GET URL for `key` by `signer`, expiring at `expires`, as its path and query.
    pub(crate) fn signed_get(signer: &GatewaySigner, key: &str, expires: i64) -> (String, String) {
        split(&signer.sign(
            SignedMethod::Get,
            &ObjectKey::parse(key).unwrap(),
            expires,
            &SignOptions::default(),
        ))
    }

    const BASE: &str = "http://127.0.0.1:9000";

    /// A GET URL for `key` until `expires`, signed with `secret` alone.
    fn get_signed_with(secret: &str, key: &ObjectKey, expires: i64) -> String {
        GatewaySigner::new(BASE, Secret::new(secret), None).sign(
            SignedMethod::Get,
            key,
            expires,
            &SignOptions::default(),
        )
    }

    /// Whether `secret` alone accepts `url` now.
    fn accepted_by(secret: &str, url: &str) -> bool {
        let (path, query) = split(url);
        GatewaySigner::new(BASE, Secret::new(secret), None)
            .verify("GET", &path, &query, Utc::now())
            .is_ok()
    }

    /// A signer rotating from `secret`, which is written to `path` first.
    fn rotating(path: &std::path::Path, secret: &str, keep_previous: Duration) -> GatewaySigner {
        replace(path, secret);
        GatewaySigner::rotating(
            BASE,
            Secret::new(secret),
            None,
            path.to_path_buf(),
            keep_previous,
        )
    }

    /// Puts `text` in the secret file `path`, owner-only, renamed into place as an atomic
    /// update does.
    fn replace(path: &std::path::Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let temp = path.with_file_name("next");
        std::fs::write(&temp, text).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }

    #[test]
    fn a_signed_url_verifies_with_its_method_key_and_bound_headers() {
        let s = signer();
        let options = SignOptions {
            content_type: Some("application/gzip".into()),
            content_length: Some(42),
            sha256: None,
        };
        let url = s.sign(
            SignedMethod::Put,
            &key("mask/a b/c?#%.nii.gz"),
            NOW + 60,
            &options,
        );
        let (path, query) = split(&url);
        assert!(
            !path.contains(' ') && !path.contains('?') && !path.contains('#'),
            "{path}"
        );
        let grant = s.verify("PUT", &path, &query, at(NOW)).unwrap();
        assert_eq!(grant.key.as_str(), "mask/a b/c?#%.nii.gz");
        assert_eq!(grant.content_type.as_deref(), Some("application/gzip"));
        assert_eq!(grant.content_length, Some(42));
    }

    #[test]
    fn every_changed_part_breaks_the_signature() {
        let s = signer();
        let options = SignOptions {
            content_type: Some("image/png".into()),
            content_length: None,
            sha256: None,
        };
        let url = s.sign(SignedMethod::Get, &key("mask/x.png"), NOW + 60, &options);
        let (path, query) = split(&url);
        let tampered = [
            ("mask/y.png".to_string(), query.clone()),
            (path.clone(), query.replace("method=GET", "method=DELETE")),
            (
                path.clone(),
                query.replace(&format!("{}", NOW + 60), &format!("{}", NOW + 6000)),
            ),
            (path.clone(), query.replace("image%2Fpng", "text%2Fplain")),
            (path.clone(), flip_last_hex_digit(&query)),
        ];
        for (path, query) in tampered {
            assert_eq!(
                s.verify("GET", &path, &query, at(NOW)),
                Err(Refusal::BadSignature),
                "{path}?{query}"
            );
        }
    }

    #[test]
    fn expired_wrong_method_and_missing_parameters_are_refused() {
        let s = signer();
        let (path, query) = signed_get(&s, "mask/x", NOW);
        assert!(matches!(
            s.verify("GET", &path, &query, at(NOW + 1)),
            Err(Refusal::Expired(_))
        ));
        assert!(matches!(
            s.verify("PUT", &path, &query, at(NOW)),
            Err(Refusal::WrongMethod {
                signed: SignedMethod::Get,
                ..
            })
        ));
        let no_sig = query.split("&x-maskstore-signature").next().unwrap();
        assert!(matches!(
            s.verify("GET", &path, no_sig, at(NOW)),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            s.verify("GET", "mask/..%2Fetc", &query, at(NOW)),
            Err(Refusal::InvalidKey(_))
        ));
    }

    #[test]
    fn a_key_schedule_computed_once_signs_as_hmac_sha256_every_time() {
        // RFC 4231, test case 2, twice from one key: the kept state is not consumed.
        let key = Key::new(Secret::new("Jefe"));
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let message = "what do ya want for nothing?";
        for _ in 0..2 {
            assert_eq!(hex(&key.mac(&[message])), expected);
            assert!(key.verifies(&[message], &key.mac(&[message])));
            // The same message in pieces is the same message.
            assert_eq!(
                hex(&key.mac(&["what do ya", "", " want for nothing?"])),
                expected
            );
        }
        let mut forged = key.mac(&[message]);
        forged[31] ^= 1;
        assert!(!key.verifies(&[message], &forged));
        assert!(!key.verifies(&["what do ya want for nothing!"], &key.mac(&[message])));
        assert!(!Key::new(Secret::new("Jeff")).verifies(&[message], &key.mac(&[message])));
    }

    #[test]
    fn urls_sign_the_message_issued_urls_were_signed_over() {
        // The message as one text, as URLs issued by earlier versions were signed: a
        // change of it would turn every URL in circulation down.
        let secret = "0123456789abcdef0123456789abcdef";
        let s = GatewaySigner::new("http://127.0.0.1:9000", Secret::new(secret), None);
        let whole = |message: &str| hex(&Key::new(Secret::new(secret)).mac(&[message]));
        let plain = s.sign(
            SignedMethod::Get,
            &key("mask/a b.png"),
            NOW,
            &SignOptions::default(),
        );
        let text = format!("maskstore-url-v1\nGET\nmask/a b.png\n{NOW}\n\n");
        assert!(
            plain.ends_with(&format!("signature={}", whole(&text))),
            "{plain}"
        );
        let digest = crate::checksum::ContentSha256::parse(&"ab".repeat(32)).unwrap();
        let options = SignOptions {
            content_type: Some("image/png".into()),
            content_length: Some(42),
            sha256: Some(digest),
        };
        let bound = s.sign(SignedMethod::Put, &key("mask/a.png"), NOW, &options);
        let text = format!(
            "maskstore-url-v1\nPUT\nmask/a.png\n{NOW}\nimage/png\n42\nsha256:{}",
            "ab".repeat(32)
        );
        assert!(
            bound.ends_with(&format!("signature={}", whole(&text))),
            "{bound}"
        );
        let policy = whole("maskstore-post-v1\neyJwb2xpY3kiOnt9fQ==");
        assert_eq!(s.sign_policy("eyJwb2xpY3kiOnt9fQ=="), policy);
        assert!(s.verify_policy("eyJwb2xpY3kiOnt9fQ==", &policy));
    }

    #[test]
    fn another_secret_is_refused_and_the_previous_one_accepted_during_rotation() {
        let old = random_secret();
        let before = GatewaySigner::new("http://127.0.0.1:9000", old.clone(), None);
        let (path, query) = signed_get(&before, "mask/x", NOW + 60);
        let stranger = signer();
        assert_eq!(
            stranger.verify("GET", &path, &query, at(NOW)),
            Err(Refusal::BadSignature)
        );
        let rotated = GatewaySigner::new("http://127.0.0.1:9000", random_secret(), Some(old));
        rotated.verify("GET", &path, &query, at(NOW)).unwrap();
    }

    #[test]
    fn debug_never_shows_secrets() {
        let secret = random_secret();
        let s = GatewaySigner::new("http://x", secret.clone(), None);
        assert!(!format!("{s:?}").contains(secret.expose()));
    }

    #[test]
    fn a_rewritten_secret_file_rotates_and_the_old_secret_lasts_keep_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let write = |text: &str| replace(&path, text);
        let old = "old-signing-secret-0123456789abcdef0123";
        let new = "new-signing-secret-0123456789abcdef0123";
        write(old);
        let base = "http://127.0.0.1:9000";
        let kept = GatewaySigner::rotating(
            base,
            Secret::new(old),
            None,
            path.clone(),
            Duration::from_secs(3600),
        );
        let dropped =
            GatewaySigner::rotating(base, Secret::new(old), None, path.clone(), Duration::ZERO);
        let expires = Utc::now().timestamp() + 600;
        let k = key("mask/a.png");
        let before = kept.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        write(new);
        let check = |signer: &GatewaySigner, url: &str| {
            let (path, query) = split(url);
            signer.verify("GET", &path, &query, Utc::now())
        };
        assert!(check(&kept, &before).is_ok());
        assert!(
            check(&dropped, &before).is_ok(),
            "not settled yet: the old secret signs"
        );
        std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(50));
        // The first request after the settle adopts the new secret.
        assert!(
            check(&kept, &before).is_ok(),
            "signed before the rotation, still valid"
        );
        assert_eq!(check(&dropped, &before), Err(Refusal::BadSignature));
        let after = kept.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        assert!(check(&kept, &after).is_ok());
        let only_new = GatewaySigner::new(base, Secret::new(new), None);
        assert!(
            check(&only_new, &after).is_ok(),
            "signed with the new secret"
        );
        assert!(format!("{kept:?}").contains("secrets: 2"), "{kept:?}");
        assert!(!format!("{kept:?}").contains("signing-secret"));
    }

    #[test]
    fn a_url_of_the_new_secret_is_taken_at_once_and_a_forged_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let (old, new) = (
            "old-signing-secret-0123456789abcdef0123",
            "new-signing-secret-0123456789abcdef0123",
        );
        let gateway = rotating(&path, old, Duration::from_secs(60));
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let check = |url: &str| {
            let (path, query) = split(url);
            gateway.verify("GET", &path, &query, Utc::now())
        };
        let forged = get_signed_with("an-attacker-guess-0123456789abcdef", &k, expires);
        assert_eq!(check(&forged), Err(Refusal::BadSignature));
        // The issuer read the new secret first: its URL is accepted without waiting.
        replace(&path, new);
        let issued = get_signed_with(new, &k, expires);
        assert!(check(&issued).is_ok());
        assert_eq!(check(&forged), Err(Refusal::BadSignature));
        let before = get_signed_with(old, &k, expires);
        assert!(check(&before).is_ok(), "the old secret is the previous one");
    }

    #[test]
    fn a_secret_caught_half_rewritten_is_not_adopted_on_a_forged_request() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let old = "old-signing-secret-0123456789abcdef0123";
        let new = "new-signing-secret-0123456789abcdef0123456789abcdef0123456789";
        let gateway = rotating(&path, old, Duration::from_secs(3600));
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let check = |url: &str| {
            let (path, query) = split(url);
            gateway.verify("GET", &path, &query, Utc::now())
        };
        let before = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        let forged = get_signed_with("an-attacker-guess-0123456789abcdef", &k, expires);
        // `echo $NEW > file`: truncated, then written; caught with 40 bytes written.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(&new.as_bytes()[..40]).unwrap();
        assert_eq!(check(&forged), Err(Refusal::BadSignature));
        file.write_all(&new.as_bytes()[40..]).unwrap();
        drop(file);
        // Seen changed now, adopted by the first request once the change has held.
        gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(50));
        let after = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        assert!(accepted_by(new, &after), "the whole new secret signs");
        assert!(
            check(&before).is_ok(),
            "signed before the rotation: the previous secret must be the old one, not a half secret"
        );
    }

    #[test]
    fn fifty_threads_sign_and_verify_across_a_rotation_without_a_failure() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let old = "old-signing-secret-0123456789abcdef0123";
        let new = "new-signing-secret-0123456789abcdef0123";
        let keep_previous = Duration::from_secs(2);
        let gateway = rotating(&path, old, keep_previous);
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let before = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        let (before_path, before_query) = split(&before);
        let (stop, done, failed) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|scope| {
            for _ in 0..50 {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let url =
                            gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
                        let (p, q) = split(&url);
                        let fresh = gateway.verify("GET", &p, &q, Utc::now());
                        let old_url =
                            gateway.verify("GET", &before_path, &before_query, Utc::now());
                        done.fetch_add(2, Ordering::Relaxed);
                        if fresh.is_err() || old_url.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(200));
            replace(&path, new);
            // Adopted by the first request after the settle, on an idle machine while the
            // threads still run.
            std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(400));
            stop.store(true, Ordering::Relaxed);
        });
        let (done, failed) = (done.into_inner(), failed.into_inner());
        eprintln!("rotation under 50 threads: {done} verifications, {failed} failed");
        assert!(done > 1000, "{done}");
        assert_eq!(failed, 0, "of {done}");
        // On a loaded machine the threads may have first seen the change late, so that it
        // settles only now: wait for it, within a bound far above the settle time.
        let deadline = Instant::now() + Duration::from_secs(10);
        let adopted_at = loop {
            let after = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
            if accepted_by(new, &after) {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "the rewritten secret was not adopted within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The grace runs from the adoption, at or before `adopted_at`.
        std::thread::sleep(
            keep_previous.saturating_sub(adopted_at.elapsed()) + Duration::from_millis(100),
        );
        assert_eq!(
            gateway.verify("GET", &before_path, &before_query, Utc::now()),
            Err(Refusal::BadSignature),
            "the previous secret is refused once keep_previous has passed"
        );
    }

    #[test]
    fn two_rotations_within_keep_previous_keep_urls_of_the_first_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let write = |text: &str| replace(&path, text);
        let secrets = [
            "first-signing-secret-0123456789abcdef0123",
            "second-signing-secret-0123456789abcdef012",
            "third-signing-secret-0123456789abcdef0123",
        ];
        write(secrets[0]);
        let gateway = GatewaySigner::rotating(
            "http://127.0.0.1:9000",
            Secret::new(secrets[0]),
            Some(Secret::new("configured-previous-0123456789abcdef0123")),
            path.clone(),
            Duration::from_secs(3600),
        );
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let mut signed =
            vec![gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default())];
        for next in &secrets[1..] {
            write(next);
            gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
            std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(50));
            signed.push(gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default()));
        }
        assert!(format!("{gateway:?}").contains("secrets: 4"), "{gateway:?}");
        for (url, secret) in signed.iter().zip(secrets) {
            let (p, q) = split(url);
            assert!(
                gateway.verify("GET", &p, &q, Utc::now()).is_ok(),
                "a URL signed with {secret} during keep_previous"
            );
        }
    }
}
