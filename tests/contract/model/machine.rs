//! The generator of random histories: a proptest-state-machine reference machine whose
//! state is only what generation needs (the next body tag, so that every write of a
//! history has its own bytes). What a history must answer is the test kit's model's
//! business (`maskstore_testkit::model`), checked as the history runs.

use maskstore_testkit::model::{Body, EtagRef, Mode, Op, Pos, RangeSpec, ReadCond};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest_state_machine::ReferenceStateMachine;

/// Hostile but valid keys: Korean, spaces, `%`, `+`, `#`, `?`, `&`, `=`, a long segment,
/// and keys that are prefixes of one another's folders (`a/b.png`, `a/b/c.png`, `a/bc.png`).
pub fn keys() -> Vec<String> {
    vec![
        "a.png".to_string(),
        "a/b.png".to_string(),
        "a/b/c.png".to_string(),
        "a/bc.png".to_string(),
        "스캔 결과/뇌 1.png".to_string(),
        "x/100% +#?&=.bin".to_string(),
        "x/%20+%2B y".to_string(),
        format!("long/{}.png", "마스크".repeat(22)),
    ]
}

const FOLDERS: [&str; 5] = ["a", "a/b", "x", "스캔 결과", "long"];
const TYPES: [&str; 2] = ["image/png", "text/plain; charset=utf-8"];
const METAS: [&str; 2] = ["v1", "a b=c/d"];

/// The machine, for streaming uploads cut into parts of `PART` bytes.
pub struct Machine<const PART: u32>;

/// What generation remembers: the tag the next body takes.
#[derive(Debug, Clone)]
pub struct Tags(pub u32);

impl<const PART: u32> ReferenceStateMachine for Machine<PART> {
    type State = Tags;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Tags> {
        Just(Tags(1)).boxed()
    }

    fn transitions(state: &Tags) -> BoxedStrategy<Op> {
        let next = state.0;
        op(PART)
            .prop_map(move |mut op| {
                let mut tag = next;
                retag(&mut op, &mut tag);
                op
            })
            .boxed()
    }

    fn apply(state: Tags, op: &Op) -> Tags {
        let mut tag = state.0;
        retag(&mut op.clone(), &mut tag);
        Tags(tag)
    }
}

/// Gives each body of `op` the next tag.
fn retag(op: &mut Op, tag: &mut u32) {
    match op {
        Op::Put { body, .. } | Op::Upload { body, .. } | Op::SignedPut { body, .. } => {
            body.tag = *tag;
            *tag += 1;
        }
        Op::Together(ops) => ops.iter_mut().for_each(|op| retag(op, tag)),
        _ => {}
    }
}

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(keys())
}

fn folder() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.8,
        proptest::sample::select(&FOLDERS[..]).prop_map(str::to_string),
    )
}

/// Small bodies mostly, some empty, a few of some KiB.
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => Just(0u32),
        14 => 1u32..=40,
        4 => 41u32..=3000,
    ]
    .prop_map(|len| Body { tag: 0, len })
}

/// Upload sizes across the part size (the multipart threshold): below, at, just past,
/// and over two parts; the large ones are rare so that the budget holds.
fn upload_body(part: u32) -> impl Strategy<Value = Body> {
    prop_oneof![
        6 => 0u32..=2000,
        1 => Just(part - 1),
        1 => Just(part),
        1 => Just(part + 1),
        1 => (1u32..=4096).prop_map(move |extra| 2 * part + extra),
    ]
    .prop_map(|len| Body { tag: 0, len })
}

fn etag_ref() -> impl Strategy<Value = EtagRef> {
    prop_oneof![5 => Just(EtagRef::Fresh), 4 => Just(EtagRef::Stale), 1 => Just(EtagRef::Bogus)]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        5 => Just(Mode::Overwrite),
        2 => Just(Mode::CreateOnly),
        3 => etag_ref().prop_map(Mode::IfMatch),
    ]
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        (0u32..=3).prop_map(Pos::Start),
        (0u32..=50).prop_map(Pos::Start),
        (-3i32..=2).prop_map(Pos::End),
    ]
}

fn range() -> impl Strategy<Value = Option<RangeSpec>> {
    proptest::option::weighted(
        0.5,
        prop_oneof![
            3 => (pos(), pos()).prop_map(|(start, end)| RangeSpec::Bounded { start, end }),
            1 => pos().prop_map(RangeSpec::From),
            1 => prop_oneof![1u32..=3, 1u32..=100].prop_map(RangeSpec::Suffix),
        ],
    )
}

fn cond() -> impl Strategy<Value = Option<ReadCond>> {
    proptest::option::weighted(
        0.25,
        prop_oneof![
            etag_ref().prop_map(ReadCond::IfMatch),
            etag_ref().prop_map(ReadCond::IfNoneMatch),
        ],
    )
}

fn put() -> impl Strategy<Value = Op> {
    (
        key(),
        body(),
        proptest::option::weighted(0.5, proptest::sample::select(&TYPES[..])),
        proptest::option::weighted(0.3, proptest::sample::select(&METAS[..])),
        mode(),
    )
        .prop_map(|(key, body, content_type, meta, mode)| Op::Put {
            key,
            body,
            content_type: content_type.map(str::to_string),
            meta: meta.map(str::to_string),
            mode,
        })
}

/// A group: puts of one or two keys (each key's puts in one mode) and whole gets of them.
fn together() -> impl Strategy<Value = Op> {
    (
        key(),
        key(),
        any::<bool>(),
        any::<bool>(),
        2usize..=4,
        proptest::collection::vec(body(), 4),
    )
        .prop_map(|(k1, k2, create1, create2, n, bodies)| {
            let mode = |create: bool| {
                if create {
                    Mode::CreateOnly
                } else {
                    Mode::Overwrite
                }
            };
            let mut ops = Vec::new();
            for (i, body) in bodies.into_iter().take(n).enumerate() {
                let (key, create) = if i % 2 == 0 {
                    (&k1, create1)
                } else {
                    (&k2, create2)
                };
                let create = if k1 == k2 { create1 } else { create };
                ops.push(Op::Put {
                    key: key.clone(),
                    body,
                    content_type: None,
                    meta: None,
                    mode: mode(create),
                });
            }
            ops.push(Op::Get {
                key: k1.clone(),
                range: None,
                cond: None,
            });
            Op::Together(ops)
        })
}

fn copy_or_rename() -> impl Strategy<Value = Op> {
    (key(), key(), any::<bool>(), any::<bool>()).prop_map(|(from, to, if_absent, rename)| {
        if rename {
            Op::Rename {
                from,
                to,
                if_absent,
            }
        } else {
            Op::Copy {
                from,
                to,
                if_absent,
            }
        }
    })
}

fn op(part: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => put(),
        20 => (key(), range(), cond()).prop_map(|(key, range, cond)| Op::Get { key, range, cond }),
        8 => key().prop_map(|key| Op::Head { key }),
        6 => key().prop_map(|key| Op::Delete { key }),
        2 => proptest::collection::vec(key(), 1..=3).prop_map(|keys| Op::DeleteMany { keys }),
        5 => folder().prop_map(|folder| Op::List { folder }),
        5 => folder().prop_map(|folder| Op::ListLevel { folder }),
        11 => copy_or_rename(),
        4 => (key(), upload_body(part), proptest::option::weighted(0.5, proptest::sample::select(&TYPES[..])), proptest::bool::weighted(0.25))
            .prop_map(|(key, body, content_type, abort)| Op::Upload {
                key,
                body,
                content_type: content_type.map(str::to_string),
                abort,
            }),
        3 => key().prop_map(|key| Op::SignedGet { key }),
        3 => (key(), body()).prop_map(|(key, body)| Op::SignedPut { key, body }),
        3 => together(),
    ]
}
