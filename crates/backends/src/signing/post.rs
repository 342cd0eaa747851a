//! Browser form uploads: a POST policy, the document S3, GCS and the gateway verify before
//! they store a form's file (S3's "Creating a POST Policy", GCS's "POST Object" policy
//! document; the gateway takes the same document, signed with its own secret).
//!
//! A policy names an expiry and the conditions the form must meet: the key (exact, or
//! starting with a prefix), the content type (exact or by prefix), the length range of
//! the file, and the provider's signing fields. Every form field but the file, the policy
//! and the signature must be named by a condition, so a client can add nothing the issuer
//! did not allow.

use std::ops::RangeInclusive;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use maskstore_core::{KeyPrefix, ObjectKey};
use serde_json::{Value, json};

use crate::checksum::ContentSha256;

/// The form field that carries the file (S3's and GCS's name).
pub const FILE_FIELD: &str = "file";
/// The form field that carries the base64 policy document.
pub const POLICY_FIELD: &str = "policy";
/// The form field that carries the gateway's signature of the policy.
pub const GATEWAY_SIGNATURE_FIELD: &str = "x-maskstore-signature";
/// The form field that binds the file's SHA-256 on the gateway (64 hex digits).
pub const GATEWAY_SHA256_FIELD: &str = "x-maskstore-sha256";
/// What a form's key may end with to take the file's name (S3's and GCS's placeholder).
pub const FILENAME_PLACEHOLDER: &str = "${filename}";
/// The largest policy document the gateway reads, base64 as sent; S3 caps the whole form
/// but the file at 20 KB, and a policy this signer writes is under 2 KiB.
pub const MAX_POLICY_BYTES: usize = 8 * 1024;
/// The most conditions a policy the gateway reads may hold.
pub const MAX_POLICY_CONDITIONS: usize = 32;

/// Where a form's file may land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostTarget {
    /// Exactly this key.
    Key(ObjectKey),
    /// Any key below this prefix; the form's key is `<prefix>${filename}`, which the
    /// server completes with the name of the file the browser sends.
    Prefix(KeyPrefix),
}

/// A content type rule of a form upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentTypeRule {
    /// The form's `Content-Type` field must be exactly this.
    Exact(String),
    /// The form's `Content-Type` field must start with this (`image/`).
    Prefix(String),
}

/// What a form upload is held to besides its key and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostOptions {
    /// The file's size in bytes must lie in this range (both ends included).
    pub length: Option<RangeInclusive<u64>>,
    /// The `Content-Type` the form must carry.
    pub content_type: Option<ContentTypeRule>,
    /// The file's SHA-256 (one key only; where the provider can verify one: the gateway).
    pub sha256: Option<ContentSha256>,
}

/// An issued form upload: where to POST, and the fields the form sends before the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPost {
    /// The URL the form posts to.
    pub url: String,
    /// The fields, in the order the form sends them, before the [`FILE_FIELD`].
    pub fields: Vec<(String, String)>,
    /// When the policy stops working.
    pub expires_at: DateTime<Utc>,
}

/// One condition of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The field (lowercase name) must have exactly this value.
    Equals(String, String),
    /// The field (lowercase name) must start with this value.
    StartsWith(String, String),
    /// The file's size must lie in this range.
    LengthRange(u64, u64),
}

/// A policy document: an expiry and conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    /// When it stops working.
    pub expiration: DateTime<Utc>,
    /// What the form must meet.
    pub conditions: Vec<Condition>,
}

impl PostPolicy {
    /// The conditions `target` and `options` set (key, length, content type); the
    /// provider adds its own signing fields.
    pub fn for_upload(
        expiration: DateTime<Utc>,
        target: &PostTarget,
        key_field: &str,
        options: &PostOptions,
    ) -> PostPolicy {
        let mut conditions = vec![match target {
            PostTarget::Key(_) => Condition::Equals("key".into(), key_field.to_string()),
            PostTarget::Prefix(prefix) => {
                Condition::StartsWith("key".into(), prefix.as_str().to_string())
            }
        }];
        if let Some(range) = &options.length {
            conditions.push(Condition::LengthRange(*range.start(), *range.end()));
        }
        match &options.content_type {
            Some(ContentTypeRule::Exact(ct)) => {
                conditions.push(Condition::Equals("content-type".into(), ct.clone()))
            }
            Some(ContentTypeRule::Prefix(p)) => {
                conditions.push(Condition::StartsWith("content-type".into(), p.clone()))
            }
            None => {}
        }
        PostPolicy {
            expiration,
            conditions,
        }
    }

    /// The document as JSON, condition fields named as the form names them
    /// (`Content-Type`, not `content-type`: S3 and GCS compare names case-insensitively,
    /// and this is how their documentation writes them).
    pub fn to_json(&self) -> String {
        let name = |field: &str| match field {
            "content-type" => "Content-Type".to_string(),
            other => other.to_string(),
        };
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| match c {
                Condition::Equals(field, value) => json!({ name(field): value }),
                Condition::StartsWith(field, prefix) => {
                    json!(["starts-with", format!("${}", name(field)), prefix])
                }
                Condition::LengthRange(min, max) => json!(["content-length-range", min, max]),
            })
            .collect();
        json!({
            "expiration": self.expiration.to_rfc3339_opts(SecondsFormat::Secs, true),
            "conditions": conditions,
        })
        .to_string()
    }

    /// The document, base64 as a form carries it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_json())
    }

    /// Reads a base64 policy from a form (at most [`MAX_POLICY_BYTES`], at most
    /// [`MAX_POLICY_CONDITIONS`] conditions); the reason when it is not one.
    pub fn from_base64(text: &str) -> Result<PostPolicy, String> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(format!(
                "the policy is {} bytes, more than the {MAX_POLICY_BYTES} a policy may have",
                text.len()
            ));
        }
        let json = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "the policy is not base64".to_string())?;
        let value: Value =
            serde_json::from_slice(&json).map_err(|_| "the policy is not JSON".to_string())?;
        let expiration = value
            .get("expiration")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or("the policy has no readable expiration")?
            .with_timezone(&Utc);
        let list = value
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or("the policy has no conditions")?;
        if list.len() > MAX_POLICY_CONDITIONS {
            return Err(format!(
                "the policy has {} conditions, more than {MAX_POLICY_CONDITIONS}",
                list.len()
            ));
        }
        let conditions = list
            .iter()
            .map(condition_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PostPolicy {
            expiration,
            conditions,
        })
    }

    /// The length range the file must meet, if any (the narrowest, if several).
    pub fn length_range(&self) -> Option<RangeInclusive<u64>> {
        self.conditions
            .iter()
            .filter_map(|c| match c {
                Condition::LengthRange(min, max) => Some((*min, *max)),
                _ => None,
            })
            .reduce(|(a, b), (c, d)| (a.max(c), b.min(d)))
            .map(|(min, max)| min..=max)
    }

    /// Checks the form's `fields` (lowercase names, the policy, signature and file left
    /// out): each condition met, each field named by one. The reason when not.
    pub fn check(&self, fields: &[(String, String)]) -> Result<(), String> {
        let value = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        for condition in &self.conditions {
            match condition {
                Condition::Equals(name, want) => match value(name) {
                    Some(got) if got == want => {}
                    got => return Err(mismatch(name, got, &format!("exactly {want:?}"))),
                },
                Condition::StartsWith(name, prefix) => match value(name) {
                    Some(got) if got.starts_with(prefix.as_str()) => {}
                    got => return Err(mismatch(name, got, &format!("starting with {prefix:?}"))),
                },
                Condition::LengthRange(..) => {}
            }
        }
        let named = |name: &str| {
            self.conditions.iter().any(|c| match c {
                Condition::Equals(n, _) | Condition::StartsWith(n, _) => n == name,
                Condition::LengthRange(..) => false,
            })
        };
        if let Some((name, _)) = fields
            .iter()
            .find(|(name, _)| !named(name) && !name.starts_with("x-ignore-"))
        {
            return Err(format!(
                "the form carries the field {:?}, which the policy does not allow; send only \
                 the fields the application gave",
                maskstore_core::shown_cut(name, 64)
            ));
        }
        Ok(())
    }
}

fn mismatch(name: &str, got: Option<&str>, want: &str) -> String {
    match got {
        None => format!("the form has no {name:?} field; the policy wants it {want}"),
        Some(got) => format!(
            "the form's {name:?} is {:?}; the policy wants it {want}",
            maskstore_core::shown_cut(got, 128)
        ),
    }
}

/// One condition as S3 writes it: `{"field": "value"}`, `["eq", "$field", "value"]`,
/// `["starts-with", "$field", "prefix"]` or `["content-length-range", min, max]`.
fn condition_of(value: &Value) -> Result<Condition, String> {
    let unreadable = || "the policy has a condition it cannot read".to_string();
    if let Some(object) = value.as_object() {
        let (name, value) = object
            .iter()
            .next()
            .filter(|_| object.len() == 1)
            .ok_or_else(unreadable)?;
        let value = value.as_str().ok_or_else(unreadable)?;
        return Ok(Condition::Equals(name.to_ascii_lowercase(), value.into()));
    }
    let items = value.as_array().ok_or_else(unreadable)?;
    let op = items
        .first()
        .and_then(Value::as_str)
        .ok_or_else(unreadable)?;
    if op.eq_ignore_ascii_case("content-length-range") {
        let bound = |i: usize| items.get(i).and_then(Value::as_u64).ok_or_else(unreadable);
        let (min, max) = (bound(1)?, bound(2)?);
        if items.len() != 3 || min > max {
            return Err(unreadable());
        }
        return Ok(Condition::LengthRange(min, max));
    }
    let text = |i: usize| items.get(i).and_then(Value::as_str).ok_or_else(unreadable);
    let field = text(1)?
        .strip_prefix('$')
        .ok_or_else(unreadable)?
        .to_ascii_lowercase();
    let operand = text(2)?.to_string();
    if items.len() != 3 {
        return Err(unreadable());
    }
    match op.to_ascii_lowercase().as_str() {
        "eq" => Ok(Condition::Equals(field, operand)),
        "starts-with" => Ok(Condition::StartsWith(field, operand)),
        _ => Err(unreadable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_policy_reads_back_as_written_and_holds_its_conditions() {
        let target = PostTarget::Prefix(KeyPrefix::parse("mask/in/").unwrap());
        let options = PostOptions {
            length: Some(1..=1024),
            content_type: Some(ContentTypeRule::Prefix("image/".into())),
            sha256: None,
        };
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let policy = PostPolicy::for_upload(at, &target, "mask/in/${filename}", &options);
        let json = policy.to_json();
        assert!(
            json.contains(r#"["starts-with","$Content-Type","image/"]"#),
            "{json}"
        );
        let read = PostPolicy::from_base64(&policy.to_base64()).unwrap();
        assert_eq!(read, policy);
        assert_eq!(read.length_range(), Some(1..=1024));
        let ok = fields(&[("key", "mask/in/a.png"), ("content-type", "image/png")]);
        assert_eq!(read.check(&ok), Ok(()));
        let outside = fields(&[("key", "mask/other/a.png"), ("content-type", "image/png")]);
        assert!(read.check(&outside).unwrap_err().contains("\"key\""));
        let html = fields(&[("key", "mask/in/a.png"), ("content-type", "text/html")]);
        assert!(read.check(&html).unwrap_err().contains("content-type"));
        let extra = fields(&[
            ("key", "mask/in/a.png"),
            ("content-type", "image/png"),
            ("acl", "public-read"),
        ]);
        assert!(read.check(&extra).unwrap_err().contains("\"acl\""));
    }

    #[test]
    fn an_unreadable_or_oversized_policy_is_refused_with_the_reason() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases = [
            ("!!!".to_string(), "base64"),
            (b64("not json"), "JSON"),
            (b64(r#"{"conditions":[]}"#), "expiration"),
            (
                b64(
                    r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["content-length-range",9,1]]}"#,
                ),
                "cannot read",
            ),
            (
                b64(
                    r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["matches","$key","x"]]}"#,
                ),
                "cannot read",
            ),
            ("A".repeat(MAX_POLICY_BYTES + 1), "more than"),
        ];
        for (text, why) in cases {
            let got = PostPolicy::from_base64(&text).unwrap_err();
            assert!(got.contains(why), "{got}");
        }
    }
}
