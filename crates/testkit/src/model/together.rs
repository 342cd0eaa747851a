//! Concurrent groups: operations started together, checked against every order they
//! could have taken effect in.
//!
//! A group holds puts and whole gets only, and the puts of one key share one mode, so the
//! set of allowed outcomes is small and known: overwrites all succeed and the key ends
//! holding one of them; of create-only puts of a free key exactly one succeeds (the
//! others find it taken), of a taken key none; a get returns the version before the group
//! or one the group wrote, whole, never a mix. The put whose version the key holds after
//! the group reports the etag reads show; a put replaced within the group may report an
//! etag no read shows (the GCS provider reads a write's etag after the write, and a
//! replaced generation has none any more), never the etag of other bytes.

use std::collections::BTreeMap;

use futures::future::join_all;
use maskstore_backends::{Error, PutOutcome, WriteMode, WriteOptions};

use super::op::{Mode, Op};
use super::run::{Divergence, Runner, error_name};
use super::state::{DEFAULT_TYPE, META_NAME, Version};

/// Runs the group `ops` on the runner's storage and checks it.
pub async fn run(runner: &mut Runner, ops: &[Op]) -> Result<(), Divergence> {
    let modes = modes(ops)?;
    let before: BTreeMap<String, Option<Version>> = ops
        .iter()
        .map(|op| key_of(op).to_string())
        .map(|k| (k.clone(), runner.model.get(&k).cloned()))
        .collect();
    // The version each put would make.
    let candidates: Vec<Option<Version>> = ops
        .iter()
        .map(|op| match op {
            Op::Put {
                key,
                body,
                content_type,
                meta,
                ..
            } => Some(runner.model.version(
                key,
                *body,
                content_type.as_deref().unwrap_or(DEFAULT_TYPE),
                meta.as_deref(),
            )),
            _ => None,
        })
        .collect();
    let answers = start_all(runner, ops).await?;
    let mut winners: BTreeMap<String, Vec<(Version, Option<String>)>> = BTreeMap::new();
    for ((op, candidate), answer) in ops.iter().zip(&candidates).zip(&answers) {
        if let (Some(version), Answer::Put(Ok(outcome))) = (candidate, answer) {
            winners
                .entry(key_of(op).to_string())
                .or_default()
                .push((version.clone(), outcome.etag.clone()));
        }
    }
    check_puts(ops, &answers, &modes, &before)?;
    check_gets(runner, ops, &answers, &before, &candidates, &winners)?;
    for (key, mode) in &modes {
        settle(
            runner,
            key,
            *mode,
            &before[key],
            winners.remove(key).unwrap_or_default(),
        )
        .await?;
    }
    Ok(())
}

fn key_of(op: &Op) -> &str {
    match op {
        Op::Put { key, .. } | Op::Get { key, .. } => key,
        _ => "",
    }
}

/// The mode of each written key's puts; refuses a group the checks cannot judge.
fn modes(ops: &[Op]) -> Result<BTreeMap<String, Mode>, Divergence> {
    let mut modes = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put {
                key,
                mode: mode @ (Mode::Overwrite | Mode::CreateOnly),
                ..
            } => {
                if *modes.entry(key.clone()).or_insert(*mode) != *mode {
                    return Err(format!(
                        "invalid history: a group mixes put modes on {key:?}"
                    ));
                }
            }
            Op::Get {
                range: None,
                cond: None,
                ..
            } => {}
            other => return Err(format!("invalid history: {other:?} cannot be in a group")),
        }
    }
    Ok(modes)
}

/// A group member's answer; a get's is boxed, an `Object` being several times a put's size.
enum Answer {
    Put(maskstore_backends::Result<PutOutcome>),
    Get(Box<maskstore_backends::Result<maskstore_backends::Object>>),
}

async fn start_all(runner: &Runner, ops: &[Op]) -> Result<Vec<Answer>, Divergence> {
    let mut started = Vec::new();
    for op in ops {
        let storage = runner.storage.clone();
        let key = runner.key(key_of(op))?;
        let op = op.clone();
        started.push(tokio::spawn(async move {
            match op {
                Op::Put {
                    body,
                    content_type,
                    meta,
                    mode,
                    ..
                } => {
                    let mut options = WriteOptions {
                        content_type,
                        ..Default::default()
                    };
                    if mode == Mode::CreateOnly {
                        options.mode = WriteMode::CreateOnly;
                    }
                    if let Some(value) = meta {
                        options = options.with_metadata(META_NAME, value);
                    }
                    Answer::Put(storage.put_with(&key, body.bytes(), &options).await)
                }
                _ => Answer::Get(Box::new(storage.get(&key).await)),
            }
        }));
    }
    let mut answers = Vec::new();
    for joined in join_all(started).await {
        answers.push(joined.map_err(|e| format!("a grouped operation panicked: {e}"))?);
    }
    Ok(answers)
}

fn check_puts(
    ops: &[Op],
    answers: &[Answer],
    modes: &BTreeMap<String, Mode>,
    before: &BTreeMap<String, Option<Version>>,
) -> Result<(), Divergence> {
    for (key, mode) in modes {
        let results: Vec<&maskstore_backends::Result<PutOutcome>> = ops
            .iter()
            .zip(answers)
            .filter(|(op, _)| key_of(op) == key)
            .filter_map(|(_, a)| match a {
                Answer::Put(r) => Some(r),
                Answer::Get(_) => None,
            })
            .collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(Error::AlreadyExists { .. })))
            .count();
        let fine = match mode {
            Mode::CreateOnly if before[key].is_some() => won == 0 && refused == results.len(),
            Mode::CreateOnly => won == 1 && refused + 1 == results.len(),
            _ => won == results.len(),
        };
        if !fine {
            let shown: Vec<String> = results
                .iter()
                .map(|r| match r {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("{} ({e})", error_name(e)),
                })
                .collect();
            return Err(format!(
                "{} concurrent {mode:?} puts of {key:?} (there before: {}) answered {shown:?}",
                results.len(),
                before[key].is_some()
            ));
        }
    }
    Ok(())
}

fn check_gets(
    runner: &mut Runner,
    ops: &[Op],
    answers: &[Answer],
    before: &BTreeMap<String, Option<Version>>,
    candidates: &[Option<Version>],
    winners: &BTreeMap<String, Vec<(Version, Option<String>)>>,
) -> Result<(), Divergence> {
    for (op, answer) in ops.iter().zip(answers) {
        let Answer::Get(got) = answer else { continue };
        let key = key_of(op);
        // A put the store refused (create-only on a taken key) never shows.
        let allowed: Vec<&Version> = before[key]
            .iter()
            .chain(
                ops.iter()
                    .zip(candidates)
                    .zip(answers)
                    .filter(|((o, _), a)| key_of(o) == key && matches!(a, Answer::Put(Ok(_))))
                    .filter_map(|((_, c), _)| c.as_ref()),
            )
            .collect();
        match got.as_ref() {
            Err(Error::NotFound { .. }) if before[key].is_none() => {}
            Ok(object) => {
                let reported = winners.get(key).map(Vec::as_slice).unwrap_or_default();
                let matching = pick(runner, key, allowed.into_iter().cloned(), object, reported);
                let Some(version) = matching else {
                    return Err(format!(
                        "a get of {key:?} during a group read {} bytes matching no version \
                         written (torn or lost)",
                        object.data.len()
                    ));
                };
                let size = object.data.len() as u64;
                runner.check_read(key, Ok(object.clone()), &version, 0..size, true)?;
            }
            Err(e) => return Err(format!("a get of {key:?} during a group failed: {e}")),
        }
    }
    Ok(())
}

/// Reads `key` after the group: it must hold one of the writes that succeeded (or what
/// it held, when none did), which the model then holds too.
async fn settle(
    runner: &mut Runner,
    key: &str,
    mode: Mode,
    before: &Option<Version>,
    winners: Vec<(Version, Option<String>)>,
) -> Result<(), Divergence> {
    let got = runner.storage.get(&runner.key(key)?).await;
    let object = got.map_err(|e| format!("{key:?} after a group of {mode:?} puts: {e}"))?;
    let allowed_etags = winners.clone();
    let allowed: Vec<(Version, Option<String>)> = if winners.is_empty() {
        before.iter().map(|v| (v.clone(), None)).collect()
    } else {
        winners
    };
    let candidates = allowed.into_iter().map(|(v, _)| v);
    let Some(version) = pick(runner, key, candidates, &object, &allowed_etags) else {
        return Err(format!(
            "{key:?} after a group of {mode:?} puts holds {} bytes that no successful put wrote",
            object.data.len()
        ));
    };
    let size = object.data.len() as u64;
    runner.check_read(key, Ok(object), &version, 0..size, true)?;
    check_written_etags(runner, key, &version, &allowed_etags)?;
    runner.model.set(key, Some(version));
    Ok(())
}

/// The etags the group's puts of `key` reported, once the key is read after the group:
/// the put whose version the key holds must report the etag reads show. A put replaced
/// within the group may report an etag no read shows (GCS's provider cannot read a
/// replaced generation's etag any more), but never the etag of another version.
fn check_written_etags(
    runner: &mut Runner,
    key: &str,
    settled: &Version,
    written: &[(Version, Option<String>)],
) -> Result<(), Divergence> {
    for (version, etag) in written {
        let Some(etag) = etag else {
            return Err(format!("a put of {key:?} in a group returned no etag"));
        };
        if version.write == settled.write {
            runner.observe_written(key, version, etag)?;
        } else if let Some(other) = runner.etags.names_other(key, etag, version) {
            return Err(format!(
                "{key:?}: a put replaced within its group (write #{}) reported the etag {etag} \
                 of write #{other}",
                version.write
            ));
        }
    }
    Ok(())
}

/// The version among `allowed` that `object` shows: the one with its bytes, and where
/// several have them (empty puts), the one whose etag it reports: as seen before, or as
/// one of the group's puts (`reported`) reported it.
fn pick(
    runner: &Runner,
    key: &str,
    allowed: impl Iterator<Item = Version>,
    object: &maskstore_backends::Object,
    reported: &[(Version, Option<String>)],
) -> Option<Version> {
    let same: Vec<Version> = allowed
        .filter(|v| object.data.as_ref() == v.body.bytes().as_slice())
        .collect();
    let named = object.info.etag.as_deref().and_then(|etag| {
        runner.etags.write_of(key, etag).or_else(|| {
            reported
                .iter()
                .find(|(_, e)| e.as_deref() == Some(etag))
                .map(|(v, _)| v.write)
        })
    });
    let by_etag = same.iter().find(|v| Some(v.write) == named).cloned();
    by_etag.or_else(|| same.last().cloned())
}
