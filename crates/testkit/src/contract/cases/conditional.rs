//! The `conditional` cases: conditional writes.

use maskstore_backends::{Error, Storage, WriteMode, WriteOptions};

use super::{data, key, put};

fn create_only() -> WriteOptions {
    WriteOptions::default().with_mode(WriteMode::CreateOnly)
}

fn if_match(etag: &str) -> WriteOptions {
    WriteOptions::default().with_mode(WriteMode::IfMatch(etag.to_string()))
}

/// A create-only put of a new key writes it.
pub async fn create_only_put_on_a_new_key_writes(s: Storage) {
    let k = key(&s, "new.bin");
    s.put_with(&k, "first", &create_only()).await.unwrap();
    assert_eq!(data(&s, &k).await, "first");
}

/// A create-only put of an existing key is AlreadyExists; the content is unchanged.
pub async fn create_only_put_on_an_existing_key_is_already_exists(s: Storage) {
    let k = put(&s, "taken.bin", "original").await;
    assert_err!(
        s.put_with(&k, "intruder", &create_only()).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(data(&s, &k).await, "original");
}

/// An update with a stale etag is Precondition; the content is unchanged.
pub async fn update_with_stale_etag_is_precondition_failed(s: Storage) {
    let k = key(&s, "u.bin");
    let stale = s.put(&k, "v1").await.unwrap().etag.unwrap();
    s.put(&k, "v2").await.unwrap();
    assert_err!(
        s.put_with(&k, "v3", &if_match(&stale)).await,
        Error::Precondition { .. }
    );
    assert_eq!(data(&s, &k).await, "v2");
}

/// An update with the current etag writes and returns a new etag.
pub async fn update_with_current_etag_writes(s: Storage) {
    let k = key(&s, "u.bin");
    let current = s.put(&k, "v1").await.unwrap().etag.unwrap();
    let next = s.put_with(&k, "v2", &if_match(&current)).await.unwrap();
    assert_eq!(data(&s, &k).await, "v2");
    assert_ne!(next.etag.as_deref(), Some(current.as_str()));
}

/// An update of a key that does not exist is Precondition and creates nothing.
pub async fn update_of_missing_key_is_precondition_failed(s: Storage) {
    let k = key(&s, "absent.bin");
    assert_err!(
        s.put_with(&k, "x", &if_match("\"some-etag\"")).await,
        Error::Precondition { .. }
    );
    assert!(!s.exists(&k).await.unwrap());
}

/// Of 20 concurrent create-only puts of one key, exactly one succeeds, and its content is
/// the one stored.
pub async fn twenty_concurrent_create_only_puts_have_one_winner(s: Storage) {
    let k = key(&s, "race.bin");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move {
                (
                    i,
                    s.put_with(&k, format!("writer-{i}"), &create_only()).await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(Error::AlreadyExists { .. } | Error::Precondition { .. })) => {}
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(data(&s, &k).await, format!("writer-{}", winners[0]));
}
