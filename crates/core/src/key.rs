//! Object keys and key prefixes: the rules every backend obeys.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::Error;

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest segment of a key, in bytes: the longest file name ext4, xfs, btrfs and
/// tmpfs keep, so that a key valid on one backend is valid on all.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// A validated object key, exactly as it appears in the bucket (`mask/…`).
///
/// Rules: 1..=1024 bytes of UTF-8; segments separated by `/`; no empty, `.` or `..`
/// segment (so no leading, trailing or doubled `/`); segments of at most 255 bytes; no
/// control characters, no backslash, and no invisible Unicode format characters (category
/// Cf: bidi overrides, zero-width spaces and joiners, which make a key display as another).
/// Unicode, spaces, `+`, `%`, `=`, `&`, `#`, `?` and emoji are valid.
///
/// ```
/// use maskstore_core::ObjectKey;
/// let key = ObjectKey::parse("mask/1.2/3.4/liver.nii.gz").unwrap();
/// assert_eq!(key.as_str(), "mask/1.2/3.4/liver.nii.gz");
/// assert!(ObjectKey::parse("mask/../etc/passwd").is_err());
/// ```
///
/// # Names found in a store
///
/// Other tools write names maskstore would not (`a//b`, a trailing `/`, a backslash, a
/// zero-width joiner, a newline). A listing carries such a name as a *found* key
/// ([`ObjectKey::found`]): it is exact, [`ObjectKey::foreign`] says which rule it breaks,
/// and its `Display` and `Debug` show it escaped ([`crate::shown`]), so it cannot forge
/// terminal output. A found key reads, heads and deletes the object it names; every write
/// of `Storage` refuses it, so maskstore never creates such a name (sync's explicit carry
/// of a foreign object between stores is the one exception). [`ObjectKey::parse`] stays
/// strict: a name typed by a person or an application is never foreign.
///
/// A key is foreign exactly when its text breaks a rule, so two keys with the same text
/// are equal whichever way they were made.
///
/// A key also carries, once a provider asked for it, that provider's parsed form of its
/// text ([`ObjectKey::provider_form`]), so that a key used for many calls is parsed once;
/// clones share it, and it takes no part in equality, ordering or hashing.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Shared by clones: a key is cloned into every description of its object.
    text: Arc<str>,
    /// Whether the text breaks a key rule (found in a store, never parsed).
    foreign: bool,
    /// The provider's parsed form of `text`, computed on first use.
    parsed: ParsedForm,
}

/// The slot of [`ObjectKey::provider_form`]: a value computed from the key's text alone,
/// of whatever type the provider parses a key into. It is a cache of the text, so it is
/// invisible to comparisons: every key equals, orders and hashes as its text says.
#[derive(Clone, Default)]
struct ParsedForm(OnceLock<Arc<dyn Any + Send + Sync>>);

impl PartialEq for ParsedForm {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ParsedForm {}

impl PartialOrd for ParsedForm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ParsedForm {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl std::hash::Hash for ParsedForm {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// The longest name [`ObjectKey::found`] accepts, in bytes: S3 keys are at most 1,024
/// bytes, Azure blob names 1,024 characters (up to 4 bytes each), a local path at most
/// `PATH_MAX` (4,096) bytes.
pub const MAX_FOUND_BYTES: usize = 4096;

impl ObjectKey {
    /// Validates `key` against the key rules.
    pub fn parse(key: impl AsRef<str>) -> Result<Self, Error> {
        let key = key.as_ref();
        check_key(key)?;
        Ok(ObjectKey {
            // Copied once, into the shared text (a `String` first would be a second copy).
            text: key.into(),
            foreign: false,
            parsed: ParsedForm::default(),
        })
    }

    /// A name found in a store (a listing's entry), exactly as the store holds it: a valid
    /// key when it follows the key rules, else a foreign one ([`ObjectKey::foreign`]) that
    /// can be read and deleted but never written. Refused only when empty or longer than
    /// [`MAX_FOUND_BYTES`], which no store holds.
    pub fn found(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_FOUND_BYTES {
            return Err(Error::invalid_key(
                &name,
                format!(
                    "a name of {} bytes is no object's name (a store's names have 1 to \
                     {MAX_FOUND_BYTES} bytes)",
                    name.len()
                ),
            ));
        }
        let foreign = check_key(&name).is_err();
        Ok(ObjectKey {
            text: name.into(),
            foreign,
            parsed: ParsedForm::default(),
        })
    }

    /// Why this key is not a valid maskstore key, when it is a name found in a store that
    /// breaks a key rule (`None` for every valid key).
    pub fn foreign(&self) -> Option<String> {
        if !self.foreign {
            return None;
        }
        match check_key(&self.text) {
            Err(Error::InvalidKey { reason, .. }) => Some(reason),
            Err(other) => Some(other.to_string()),
            Ok(()) => None,
        }
    }

    /// Whether this key is a foreign name (see [`ObjectKey::foreign`]).
    pub fn is_foreign(&self) -> bool {
        self.foreign
    }

    /// The key as a string, exact (for a foreign key too: never show it unescaped).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this key lies strictly below `prefix`.
    pub fn is_within(&self, prefix: &KeyPrefix) -> bool {
        self.text.len() > prefix.0.len() && self.text.starts_with(&prefix.0)
    }

    /// The last segment of the key (the "file name").
    pub fn file_name(&self) -> &str {
        self.text.rsplit('/').next().unwrap_or(&self.text)
    }

    /// A provider's parsed form of this key's text (`parse` must depend on the text
    /// alone): computed by `parse` on first use and kept with the key, so later calls
    /// with this key or its clones borrow it instead of parsing again. A key keeps one
    /// form: one of another type is parsed each time and not kept. An error is not kept.
    ///
    /// ```
    /// use maskstore_core::ObjectKey;
    /// let key = ObjectKey::parse("mask/a/b.png").unwrap();
    /// let segments = |text: &str| Ok::<_, ()>(text.split('/').count());
    /// assert_eq!(*key.provider_form(segments).unwrap(), 3);
    /// // Kept: the second call does not parse.
    /// assert_eq!(*key.clone().provider_form(|_| Err::<usize, _>(())).unwrap(), 3);
    /// ```
    pub fn provider_form<T, E>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Cow<'_, T>, E>
    where
        T: Any + Clone + Send + Sync,
    {
        if let Some(kept) = self.parsed.0.get() {
            return match kept.downcast_ref::<T>() {
                Some(form) => Ok(Cow::Borrowed(form)),
                None => parse(&self.text).map(Cow::Owned),
            };
        }
        // Kept as parsed, not a copy of it: a key read once parses once and copies nothing.
        let ours: Arc<dyn Any + Send + Sync> = Arc::new(parse(&self.text)?);
        let lost = self.parsed.0.set(ours).err();
        if let Some(form) = self
            .parsed
            .0
            .get()
            .and_then(|kept| kept.downcast_ref::<T>())
        {
            return Ok(Cow::Borrowed(form));
        }
        // A form of another type was kept first: ours is handed back instead.
        let ours = lost
            .and_then(|ours| ours.downcast::<T>().ok())
            .and_then(|ours| Arc::try_unwrap(ours).ok())
            .expect("the form not kept is ours alone");
        Ok(Cow::Owned(ours))
    }

    /// The key with `other` appended as further segments (`other` is validated too).
    pub fn join(&self, other: &str) -> Result<ObjectKey, Error> {
        ObjectKey::parse(format!("{}/{}", self.text, other))
    }
}

impl fmt::Display for ObjectKey {
    /// The key; a foreign one escaped ([`crate::shown`]), a valid one as it is (a valid key
    /// has nothing to escape).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::shown(&self.text))
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.foreign {
            write!(f, "ObjectKey(found \"{}\")", crate::shown(&self.text))
        } else {
            write!(f, "ObjectKey({:?})", self.text)
        }
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ObjectKey::parse(s)
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid_key(
            key,
            "a key must not be empty; give a path such as mask/<study>/<series>/<id>.nii.gz",
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid_key(
            key,
            format!(
                "the key is {} bytes long; S3 allows at most {MAX_KEY_BYTES} bytes, use a shorter key",
                key.len()
            ),
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(Error::invalid_key(
            key,
            format!(
                "control character U+{:04X} is not allowed in a key; remove it",
                c as u32
            ),
        ));
    }
    if key.contains('\\') {
        return Err(Error::invalid_key(
            key,
            "backslash is not allowed in a key; separate segments with '/'",
        ));
    }
    if key.starts_with('/') {
        return Err(Error::invalid_key(
            key,
            "a key must not start with '/'; write it relative to the bucket, e.g. mask/…",
        ));
    }
    if key.ends_with('/') {
        return Err(Error::invalid_key(
            key,
            "a key must not end with '/'; that names a folder, not an object",
        ));
    }
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(Error::invalid_key(
                    key,
                    "empty segment ('//'); separate segments with a single '/'",
                ));
            }
            "." | ".." => {
                return Err(Error::invalid_key(
                    key,
                    format!("segment {segment:?} is not allowed; keys cannot step between folders"),
                ));
            }
            _ => {}
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(Error::invalid_key(
                key,
                format!(
                    "segment {:?} is {} bytes long; a segment (the text between '/') may have \
                     at most {MAX_SEGMENT_BYTES} bytes, the longest file name a file system \
                     keeps; shorten it or split it with '/'",
                    short_segment(segment),
                    segment.len()
                ),
            ));
        }
        if let Some(c) = segment.chars().find(|&c| is_format_character(c)) {
            return Err(Error::invalid_key(
                key,
                format!(
                    "segment {:?} contains U+{:04X}, an invisible Unicode format character \
                     (bidi control, zero-width space or joiner) that makes a key display \
                     differently from what it is; remove it",
                    short_segment(segment),
                    c as u32
                ),
            ));
        }
    }
    Ok(())
}

/// A segment for an error message: long ones cut to their first 40 characters.
fn short_segment(segment: &str) -> String {
    match segment.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &segment[..at]),
        None => segment.to_string(),
    }
}

/// Whether `c` is of Unicode general category Cf (format), as of Unicode 16.0: invisible
/// characters such as the zero-width space and the byte-order mark.
pub(crate) fn is_format_character(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A validated key prefix: one or more key segments followed by `/` (default `mask/`).
///
/// Every key a `Storage` touches lies below its prefix, as the deployment guide's IAM
/// policy (`arn:aws:s3:::<bucket>/mask/*`) demands.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Validates a prefix such as `mask/` or `mask/run-42/`.
    pub fn parse(prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        let Some(body) = prefix.strip_suffix('/') else {
            return Err(Error::invalid_key(
                &prefix,
                format!("a prefix must end with '/'; write {prefix:?} as \"{prefix}/\""),
            ));
        };
        check_key(body).map_err(|e| match e {
            Error::InvalidKey { reason, .. } => {
                Error::invalid_key(&prefix, format!("not a valid key prefix: {reason}"))
            }
            other => other,
        })?;
        Ok(KeyPrefix(prefix))
    }

    /// The prefix as a string, ending with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A narrower prefix below this one (`sub` is one or more segments, with or without a
    /// trailing `/`).
    pub fn child(&self, sub: &str) -> Result<KeyPrefix, Error> {
        let sub = sub.strip_suffix('/').unwrap_or(sub);
        KeyPrefix::parse(format!("{}{}/", self.0, sub))
    }

    /// The key `relative` below this prefix.
    pub fn key(&self, relative: &str) -> Result<ObjectKey, Error> {
        ObjectKey::parse(format!("{}{}", self.0, relative))
    }

    /// Whether `other` lies at or below this prefix.
    pub fn contains_prefix(&self, other: &KeyPrefix) -> bool {
        other.0.starts_with(&self.0)
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        KeyPrefix("mask/".to_string())
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for KeyPrefix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        KeyPrefix::parse(s)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        match ObjectKey::parse(key) {
            Err(Error::InvalidKey { reason, .. }) => reason,
            other => panic!("expected InvalidKey for {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_parsed_form_is_kept_shared_by_clones_and_ignored_by_comparisons() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let parses = std::cell::Cell::new(0);
        let parse = |text: &str| {
            parses.set(parses.get() + 1);
            Ok::<_, ()>(text.to_uppercase())
        };
        let key = ObjectKey::parse("mask/a.png").unwrap();
        let fresh = ObjectKey::parse("mask/a.png").unwrap();
        assert!(matches!(key.provider_form(parse), Ok(Cow::Borrowed(s)) if s == "MASK/A.PNG"));
        let clone = key.clone();
        assert!(matches!(clone.provider_form(parse), Ok(Cow::Borrowed(_))));
        assert_eq!(parses.get(), 1, "the clone borrowed the kept form");
        // A form of another type is parsed each time, never replaces the kept one.
        assert_eq!(*key.provider_form(|t| Ok::<_, ()>(t.len())).unwrap(), 10);
        assert!(matches!(key.provider_form(parse), Ok(Cow::Borrowed(_))));
        // A failed parse keeps nothing.
        assert_eq!(fresh.provider_form(|_| Err::<String, _>("no")), Err("no"));
        assert_eq!(key, fresh);
        assert_eq!(key.cmp(&fresh), std::cmp::Ordering::Equal);
        let hash = |k: &ObjectKey| {
            let mut h = DefaultHasher::new();
            k.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&key), hash(&fresh));
        assert!(key < ObjectKey::parse("mask/b.png").unwrap());
    }

    #[test]
    fn unusual_but_valid_keys_are_accepted_verbatim() {
        for key in [
            "mask/a b/c+d%20e=f&g#h?i",
            "mask/Ünïcödé/한국어/マスク.png",
            "mask/🧠/🫀.nii.gz",
            "mask/.hidden",
            "mask/...",
            "a",
        ] {
            assert_eq!(ObjectKey::parse(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn key_of_exactly_1024_bytes_is_valid_and_1025_is_not() {
        let key = format!("mask/{}", vec!["k".repeat(200); 5].join("/")) + "/" + &"k".repeat(14);
        assert_eq!(key.len(), 1024);
        ObjectKey::parse(key.clone()).unwrap();
        let long = format!("{key}k");
        assert!(reason(&long).contains("1025 bytes"));
        assert!(reason(&long).contains("at most 1024"));
    }

    #[test]
    fn each_broken_rule_names_itself() {
        assert!(reason("").contains("must not be empty"));
        assert!(reason("/mask/a").contains("must not start with '/'"));
        assert!(reason("mask/a/").contains("must not end with '/'"));
        assert!(reason("mask//a").contains("empty segment"));
        assert!(reason("mask/../a").contains("\"..\" is not allowed"));
        assert!(reason("mask/./a").contains("\".\" is not allowed"));
        assert!(reason("mask/a\\b").contains("backslash"));
        assert!(reason("mask/a\nb").contains("U+000A"));
        assert!(reason("mask/a\u{7f}b").contains("U+007F"));
        assert!(reason("mask/a\u{85}b").contains("U+0085"));
    }

    #[test]
    fn segments_longer_than_255_bytes_are_refused_naming_the_segment() {
        let ok = format!("mask/{}", "k".repeat(255));
        ObjectKey::parse(ok).unwrap();
        // 255 bytes of two-byte letters is fine too; one byte more is not.
        ObjectKey::parse(format!("mask/{}k", "é".repeat(127))).unwrap();
        let long = format!("mask/{}/x", "k".repeat(256));
        let why = reason(&long);
        assert!(why.contains("256 bytes"), "{why}");
        assert!(why.contains("at most 255"), "{why}");
        assert!(why.contains("\"kkkk"), "{why}");
        assert!(reason(&format!("mask/{}k", "é".repeat(128))).contains("257 bytes"));
    }

    #[test]
    fn unicode_format_characters_are_refused_naming_segment_and_character() {
        for (c, code) in [
            ('\u{202E}', "U+202E"),
            ('\u{202A}', "U+202A"),
            ('\u{2066}', "U+2066"),
            ('\u{200B}', "U+200B"),
            ('\u{200D}', "U+200D"),
            ('\u{200E}', "U+200E"),
            ('\u{FEFF}', "U+FEFF"),
            ('\u{00AD}', "U+00AD"),
            ('\u{2060}', "U+2060"),
            ('\u{E0041}', "U+E0041"),
        ] {
            let key = format!("mask/scan{c}gnp.png");
            let why = reason(&key);
            assert!(why.contains(code), "{code}: {why}");
            assert!(why.contains("segment \"scan"), "{code}: {why}");
            assert!(why.contains("remove it"), "{code}: {why}");
        }
        // Neighbours of the ranges, and letters from other scripts, are fine.
        for c in ['\u{2010}', '\u{2029}', '\u{2070}', '\u{00AC}', 'ا', '한'] {
            ObjectKey::parse(format!("mask/a{c}b")).unwrap();
        }
    }

    #[test]
    fn a_found_name_is_exact_marked_foreign_and_shown_escaped() {
        for (name, why) in [
            ("mask/f4/typo//double.bin", "empty segment"),
            ("mask/folder/", "must not end with '/'"),
            ("mask/a\\b.png", "backslash"),
            ("mask/\u{1b}]0;pwned\u{7}\nx", "U+001B"),
            ("mask/👨\u{200D}👩.png", "U+200D"),
            ("mask/./a", "\".\" is not allowed"),
        ] {
            let key = ObjectKey::found(name).unwrap();
            assert_eq!(key.as_str(), name);
            assert!(key.is_foreign());
            let reason = key.foreign().unwrap();
            assert!(reason.contains(why), "{name:?}: {reason}");
            for shown in [key.to_string(), format!("{key:?}")] {
                assert!(
                    !shown.contains('\u{1b}') && !shown.contains('\n'),
                    "{shown}"
                );
                assert!(!shown.contains('\u{200D}'), "{shown}");
            }
            // Parsing stays strict.
            assert!(ObjectKey::parse(name).is_err());
        }
        let valid = ObjectKey::found("mask/a/b.png").unwrap();
        assert_eq!(valid, ObjectKey::parse("mask/a/b.png").unwrap());
        assert!(valid.foreign().is_none());
        assert_eq!(valid.to_string(), "mask/a/b.png");
        assert!(ObjectKey::found("").is_err());
        assert!(ObjectKey::found("k".repeat(MAX_FOUND_BYTES + 1)).is_err());
        ObjectKey::found("k/".repeat(1500)).unwrap();
    }

    #[test]
    fn long_keys_are_shortened_in_errors() {
        let err = ObjectKey::parse("k/".repeat(2000)).unwrap_err().to_string();
        assert!(err.len() < 400, "{err}");
    }

    #[test]
    fn prefix_must_end_with_slash_and_be_a_valid_key() {
        assert_eq!(KeyPrefix::parse("mask/").unwrap().as_str(), "mask/");
        assert_eq!(
            KeyPrefix::parse("mask/run 1/").unwrap().as_str(),
            "mask/run 1/"
        );
        let err = KeyPrefix::parse("mask").unwrap_err().to_string();
        assert!(err.contains("must end with '/'"), "{err}");
        assert!(KeyPrefix::parse("/").is_err());
        assert!(KeyPrefix::parse("").is_err());
        assert!(KeyPrefix::parse("mask//").is_err());
        assert!(KeyPrefix::parse("../").is_err());
    }

    #[test]
    fn keys_lie_within_a_prefix_only_below_it() {
        let prefix = KeyPrefix::parse("mask/").unwrap();
        assert!(ObjectKey::parse("mask/a").unwrap().is_within(&prefix));
        assert!(!ObjectKey::parse("mask").unwrap().is_within(&prefix));
        assert!(!ObjectKey::parse("masks/a").unwrap().is_within(&prefix));
        assert!(!ObjectKey::parse("other/a").unwrap().is_within(&prefix));
    }

    #[test]
    fn child_prefix_and_key_compose() {
        let prefix = KeyPrefix::default().child("run-1").unwrap();
        assert_eq!(prefix.as_str(), "mask/run-1/");
        assert_eq!(prefix.key("x/y").unwrap().as_str(), "mask/run-1/x/y");
        assert!(KeyPrefix::default().contains_prefix(&prefix));
        assert!(!prefix.contains_prefix(&KeyPrefix::default()));
        assert!(prefix.key("../x").is_err());
    }
}
