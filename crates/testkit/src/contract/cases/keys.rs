//! The `keys` cases: keys.

use std::sync::atomic::Ordering;

use maskstore_backends::{Error, Storage, WriteOptions};
use maskstore_core::{MAX_KEY_BYTES, MAX_SEGMENT_BYTES, ObjectKey};

use super::{counted, data, key, listed};

async fn unusual_key_round_trips(s: &Storage, relative: &str) {
    let k = key(s, relative);
    s.put(&k, relative.to_string()).await.unwrap();
    assert_eq!(data(s, &k).await, relative.to_string());
    assert_eq!(s.head(&k).await.unwrap().key, k);
    assert_eq!(
        listed(s, None).await,
        vec![k.to_string()],
        "listed differently"
    );
    s.delete(&k).await.unwrap();
    assert!(!s.exists(&k).await.unwrap());
}

/// Spaces in keys round-trip and list exactly.
pub async fn key_with_spaces_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "with space/a  b .png").await;
}

/// `+` and `%` (including a valid-looking escape) are kept literally.
pub async fn key_with_plus_and_percent_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "a+b/100%/c%20d%2Fe").await;
}

/// `=` and `&` are kept literally.
pub async fn key_with_equals_and_ampersand_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "q=1&r=2/x=y&z").await;
}

/// `#` and `?` are kept literally.
pub async fn key_with_hash_and_question_mark_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "why?/#1 seg?x=1#frag").await;
}

/// Non-ASCII letters round-trip.
pub async fn key_with_unicode_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "환자/Müller/マスク/naïve.nii.gz").await;
}

/// Emoji round-trip.
pub async fn key_with_emoji_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "🧠/🫀 mask 🩻.png").await;
}

/// A key of exactly 1024 bytes (segments of at most 200 bytes) round-trips.
pub async fn key_of_1024_bytes_round_trips(s: Storage) {
    let prefix_len = s.prefix().as_str().len();
    let mut relative = String::new();
    while prefix_len + relative.len() < MAX_KEY_BYTES {
        if !relative.is_empty() {
            relative.push('/');
        }
        let room = (MAX_KEY_BYTES - prefix_len - relative.len()).min(200);
        relative.push_str(&"k".repeat(room));
    }
    assert_eq!(prefix_len + relative.len(), MAX_KEY_BYTES);
    unusual_key_round_trips(&s, &relative).await;
}

fn assert_invalid(s: &Storage, relative: &str) {
    match s.key(relative) {
        Err(Error::InvalidKey { reason, .. }) => assert!(!reason.is_empty()),
        other => panic!("{relative:?}: expected InvalidKey, got {other:?}"),
    }
}

/// A `..` segment is refused.
pub async fn dot_dot_segment_is_refused(s: Storage) {
    assert_invalid(&s, "../escape.png");
    assert_invalid(&s, "a/../../b");
}

/// An empty segment (`//`, leading or trailing `/`) is refused.
pub async fn empty_segment_is_refused(s: Storage) {
    assert_invalid(&s, "a//b");
    assert_invalid(&s, "a/");
    assert_invalid(&s, "");
}

/// Control characters are refused.
pub async fn control_character_is_refused(s: Storage) {
    assert_invalid(&s, "a\nb");
    assert_invalid(&s, "a\u{0}b");
    assert_invalid(&s, "tab\there");
}

/// Backslashes are refused.
pub async fn backslash_is_refused(s: Storage) {
    assert_invalid(&s, "a\\b");
}

/// A key over 1024 bytes is refused.
pub async fn key_over_1024_bytes_is_refused(s: Storage) {
    assert_invalid(&s, &"k/".repeat(520));
}

/// A valid key outside the storage's prefix is refused by every operation before I/O.
pub async fn key_outside_the_prefix_is_refused_before_io(s: Storage) {
    let (s, calls) = counted(&s);
    let outside = ObjectKey::parse("outside/the/prefix.png").unwrap();
    let inside = key(&s, "inside.png");
    assert_err!(s.put(&outside, "x").await, Error::InvalidKey { .. });
    assert_err!(s.get(&outside).await, Error::InvalidKey { .. });
    assert_err!(s.head(&outside).await, Error::InvalidKey { .. });
    assert_err!(s.delete(&outside).await, Error::InvalidKey { .. });
    assert_err!(
        s.delete_many(std::slice::from_ref(&outside)).await,
        Error::InvalidKey { .. }
    );
    assert_err!(s.copy(&inside, &outside).await, Error::InvalidKey { .. });
    assert_err!(s.rename(&outside, &inside).await, Error::InvalidKey { .. });
    assert_err!(
        s.upload(&outside, &WriteOptions::default()).await,
        Error::InvalidKey { .. }
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a refused key reached the backend"
    );
}

/// A segment of 255 bytes (the longest file name) round-trips.
pub async fn segment_of_255_bytes_round_trips(s: Storage) {
    unusual_key_round_trips(&s, &format!("long/{}", "s".repeat(MAX_SEGMENT_BYTES))).await;
}

/// A segment of 256 bytes is refused, naming the segment and the rule, before I/O.
pub async fn segment_of_256_bytes_is_refused(s: Storage) {
    let (s, calls) = counted(&s);
    match s.key(&format!("long/{}/x.png", "s".repeat(MAX_SEGMENT_BYTES + 1))) {
        Err(Error::InvalidKey { reason, .. }) => {
            assert!(reason.contains("256 bytes"), "{reason}");
            assert!(reason.contains("\"ssss"), "{reason}");
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Unicode format characters (a right-to-left override, zero-width space and joiner, a
/// byte order mark) are refused, naming the segment and the character.
pub async fn unicode_format_character_is_refused(s: Storage) {
    for (c, code) in [
        ('\u{202E}', "U+202E"),
        ('\u{200B}', "U+200B"),
        ('\u{200D}', "U+200D"),
        ('\u{FEFF}', "U+FEFF"),
    ] {
        match s.key(&format!("scans/evil{c}gnp.exe")) {
            Err(Error::InvalidKey { reason, .. }) => {
                assert!(reason.contains(code), "{reason}");
                assert!(reason.contains("segment \"evil"), "{reason}");
            }
            other => panic!("{code}: expected InvalidKey, got {other:?}"),
        }
    }
}
