//! Differential HTTP: the same random request histories (PUT, GET, HEAD, DELETE with
//! `Range`, `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`,
//! `If-Range`, bad signatures and expired URLs) go to the gateway on local disk, the
//! gateway on memory, and S3 presigned URLs on SeaweedFS. Each answer is compared with a
//! small model of AWS S3's documented answers (RFC 9110 where S3 documents nothing), on
//! status, the relevant headers (`ETag`, the one the last stored PUT answered, and
//! `Last-Modified` presence, `Content-Range`,
//! `Content-Length`, `Accept-Ranges`) and the bytes served.
//!
//! Where SeaweedFS departs from AWS, the model follows AWS and the comparison accepts, on
//! SeaweedFS only, the six departures `gateway_conformance` lists (see [`Departures`]).
//! PUT `If-None-Match: <etag>` is left to that table: AWS refuses it (501) where
//! SeaweedFS may write, and the histories would part.
//!
//! Prints `differential: N histories, M requests, 0 divergences (seed …)`; the seed is
//! `MASKSTORE_FUZZ_SEED`'s (fixed under CI), the count `MASKSTORE_DIFF_HISTORIES`.

use std::time::{Duration, Instant};

use maskstore::{ObjectKey, SignOptions, SignedMethod, Storage};
use maskstore_fuzzkit::proptest::prelude::*;
use maskstore_fuzzkit::proptest::strategy::ValueTree;
use maskstore_testkit::servers;

use crate::support::Serve;

const SECRET: &str = "differential-http-test-signing-secret-0123";
const PAST: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
const FUTURE: &str = "Fri, 01 Jan 2100 00:00:00 GMT";
/// An etag no object of the run has.
const OTHER_ETAG: &str = "\"0123456789abcdef0123456789abcdef\"";
/// Histories per run (each of [`OPS`] requests) when `MASKSTORE_DIFF_HISTORIES` is unset.
const CI_HISTORIES: u32 = 200;
const OPS: std::ops::Range<usize> = 6..14;

/// Which etag a condition names, resolved against what the target answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Current,
    /// The version before the current one (another etag when there is none).
    Stale,
    Other,
    Any,
    /// The current etag marked weak (`W/"…"`): never passes `If-Match` (a strong
    /// comparison), passes `If-None-Match` (a weak one).
    WeakCurrent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Date {
    Past,
    Future,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAsk {
    Span(u64, u64),
    From(u64),
    Suffix(u64),
    Reversed,
    Several,
    OtherUnit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    head: bool,
    range: Option<RangeAsk>,
    if_match: Option<Tag>,
    if_none_match: Option<Tag>,
    if_modified_since: Option<Date>,
    if_unmodified_since: Option<Date>,
    if_range: Option<Tag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteIf {
    Always,
    IfNoneMatchAny,
    IfMatch(Tag),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Put { len: u8, when: WriteIf },
    Read(Read),
    Delete,
    BadSignature(SignedMethod),
    Expired(SignedMethod),
}

fn op() -> impl Strategy<Value = Op> {
    let tag = prop_oneof![
        Just(Tag::Current),
        Just(Tag::Stale),
        Just(Tag::Other),
        Just(Tag::Any),
        Just(Tag::WeakCurrent)
    ];
    let write_tag = prop_oneof![Just(Tag::Current), Just(Tag::Stale), Just(Tag::Other)];
    let date = prop_oneof![Just(Date::Past), Just(Date::Future)];
    let range = prop_oneof![
        (0u64..14, 0u64..14).prop_map(|(a, b)| RangeAsk::Span(a.min(b), a.max(b))),
        (0u64..14).prop_map(RangeAsk::From),
        (0u64..16).prop_map(RangeAsk::Suffix),
        Just(RangeAsk::Reversed),
        Just(RangeAsk::Several),
        Just(RangeAsk::OtherUnit),
    ];
    let read = (
        any::<bool>(),
        prop::option::weighted(0.6, range),
        prop::option::weighted(0.25, tag.clone()),
        prop::option::weighted(0.25, tag.clone()),
        prop::option::weighted(0.2, date.clone()),
        prop::option::weighted(0.2, date),
        prop::option::weighted(0.25, tag),
    )
        .prop_map(|(head, range, im, inm, ims, ius, ir)| {
            Op::Read(Read {
                head,
                range,
                if_match: im,
                if_none_match: inm,
                if_modified_since: ims,
                if_unmodified_since: ius,
                if_range: ir,
            })
        });
    let when = prop_oneof![
        3 => Just(WriteIf::Always),
        1 => Just(WriteIf::IfNoneMatchAny),
        2 => write_tag.prop_map(WriteIf::IfMatch),
    ];
    let method = prop_oneof![
        Just(SignedMethod::Get),
        Just(SignedMethod::Head),
        Just(SignedMethod::Put),
        Just(SignedMethod::Delete)
    ];
    prop_oneof![
        4 => (0u8..12, when).prop_map(|(len, when)| Op::Put { len, when }),
        8 => read,
        1 => Just(Op::Delete),
        1 => method.clone().prop_map(Op::BadSignature),
        1 => method.prop_map(Op::Expired),
    ]
}

/// The histories of a run, from its seed alone.
fn histories(seed: u64, count: u32) -> Vec<Vec<Op>> {
    let mut runner = maskstore_fuzzkit::runner(seed, count);
    let strategy = prop::collection::vec(op(), OPS);
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// The body of the `n`th PUT of a history: distinct bytes, so a read shows its version.
fn body(n: usize, len: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((n * 7 + usize::from(i)) % 26) as u8)
        .collect()
}

/// What the model knows of a key on one target: its bytes, and the etags the target gave.
#[derive(Debug, Default)]
struct State {
    body: Option<Vec<u8>>,
    etags: Vec<String>,
}

impl State {
    fn tag(&self, tag: Tag) -> String {
        let n = self.etags.len();
        match tag {
            Tag::Current if self.body.is_some() => self.etags[n - 1].clone(),
            Tag::Stale if n >= 2 => self.etags[n - 2].clone(),
            Tag::Any => "*".to_string(),
            Tag::WeakCurrent if self.body.is_some() => format!("W/{}", self.etags[n - 1]),
            _ => OTHER_ETAG.to_string(),
        }
    }

    fn current(&self) -> Option<&str> {
        self.body
            .as_ref()
            .map(|_| self.etags.last().unwrap().as_str())
    }
}

/// The answer compared: status, relevant headers, bytes served.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    etag: bool,
    /// The `ETag` a read answered: the one the key's last stored PUT answered.
    etag_value: Option<String>,
    last_modified: bool,
    content_range: Option<String>,
    length: Option<u64>,
    accept_ranges: bool,
    body: Option<Vec<u8>>,
}

impl Answer {
    fn status(status: u16) -> Answer {
        Answer {
            status,
            etag: false,
            etag_value: None,
            last_modified: false,
            content_range: None,
            length: None,
            accept_ranges: false,
            body: None,
        }
    }
}

/// SeaweedFS's departures from AWS that `gateway_conformance`'s table lists; all off for
/// the model of AWS.
#[derive(Debug, Clone, Copy, Default)]
struct Departures {
    /// `bytes=5-2` is 416 (AWS, RFC 9110 §14.2: ignored).
    reversed_range_refused: bool,
    /// HEAD ignores `Range` (AWS: 206 with `Content-Range`).
    head_ignores_range: bool,
    /// `If-Range` is ignored (S3 documents none; RFC 9110 §13.1.5).
    ignores_if_range: bool,
    /// PUT `If-Match` on a missing key is 412 (AWS: 404).
    put_if_match_missing_is_412: bool,
    /// `If-None-Match` compares strongly: `W/"<etag>"` does not match (RFC 9110
    /// §13.1.2: a weak comparison, so it matches; S3 documents nothing).
    if_none_match_strong: bool,
}

impl Departures {
    fn seaweedfs() -> Departures {
        Departures {
            reversed_range_refused: true,
            head_ignores_range: true,
            ignores_if_range: true,
            put_if_match_missing_is_412: true,
            if_none_match_strong: true,
        }
    }
}

fn strong_match(asked: &str, current: &str) -> bool {
    asked == "*" || (!asked.starts_with("W/") && asked == current)
}

/// AWS's documented answer to `read` given `state`.
fn model_read(state: &State, read: &Read, quirks: Departures) -> Answer {
    let (Some(body), Some(current)) = (&state.body, state.current()) else {
        return Answer::status(404);
    };
    let modified_after = |date: Date| date == Date::Past;
    let still = match (read.if_match, read.if_unmodified_since) {
        (Some(tag), _) => strong_match(&state.tag(tag), current),
        (None, Some(date)) => !modified_after(date),
        (None, None) => true,
    };
    if !still {
        return Answer::status(412);
    }
    let unchanged = match (read.if_none_match, read.if_modified_since) {
        (Some(tag), _) => {
            let asked = state.tag(tag);
            let opaque = match asked.strip_prefix("W/") {
                Some(_) if quirks.if_none_match_strong => "",
                Some(opaque) => opaque,
                None => &asked,
            };
            asked == "*" || opaque == current
        }
        (None, Some(date)) => !modified_after(date),
        (None, None) => false,
    };
    let size = body.len() as u64;
    let described = |status| Answer {
        etag: true,
        etag_value: Some(current.to_string()),
        last_modified: true,
        ..Answer::status(status)
    };
    if unchanged {
        return described(304);
    }
    let mut span = read.range.and_then(|r| resolve(r, size, quirks));
    if quirks.head_ignores_range && read.head {
        span = None;
    }
    if let (Some(tag), false) = (read.if_range, quirks.ignores_if_range) {
        let asked = state.tag(tag);
        if asked == "*" || !strong_match(&asked, current) {
            span = None;
        }
    }
    let served = |status, range: std::ops::Range<u64>, content_range| Answer {
        content_range,
        length: Some(range.end - range.start),
        accept_ranges: true,
        body: (!read.head).then(|| body[range.start as usize..range.end as usize].to_vec()),
        ..described(status)
    };
    match span {
        None => served(200, 0..size, None),
        Some(None) => Answer::status(416),
        Some(Some(range)) => {
            let shown = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            served(206, range, Some(shown))
        }
    }
}

/// A `Range` as RFC 9110 reads it on `size` bytes: `None` ignored, `Some(None)`
/// unsatisfiable, else the span.
fn resolve(range: RangeAsk, size: u64, quirks: Departures) -> Option<Option<std::ops::Range<u64>>> {
    match range {
        RangeAsk::Span(first, _) | RangeAsk::From(first) if first >= size => Some(None),
        RangeAsk::Span(first, last) => Some(Some(first..(last + 1).min(size))),
        RangeAsk::From(first) => Some(Some(first..size)),
        RangeAsk::Suffix(0) => Some(None),
        RangeAsk::Suffix(_) if size == 0 => Some(None),
        RangeAsk::Suffix(n) => Some(Some(size.saturating_sub(n)..size)),
        RangeAsk::Reversed if quirks.reversed_range_refused => Some(None),
        RangeAsk::Reversed | RangeAsk::Several | RangeAsk::OtherUnit => None,
    }
}

/// AWS's documented status for a PUT, and whether it stores the body.
fn model_put(state: &State, when: WriteIf, quirks: Departures) -> (u16, bool) {
    match (when, state.current()) {
        (WriteIf::Always, _) | (WriteIf::IfNoneMatchAny, None) => (200, true),
        (WriteIf::IfNoneMatchAny, Some(_)) => (412, false),
        (WriteIf::IfMatch(_), None) if quirks.put_if_match_missing_is_412 => (412, false),
        (WriteIf::IfMatch(_), None) => (404, false),
        (WriteIf::IfMatch(tag), Some(current)) if state.tag(tag) == current => (200, true),
        (WriteIf::IfMatch(_), Some(_)) => (412, false),
    }
}

fn range_header(range: RangeAsk) -> String {
    match range {
        RangeAsk::Span(a, b) => format!("bytes={a}-{b}"),
        RangeAsk::From(a) => format!("bytes={a}-"),
        RangeAsk::Suffix(n) => format!("bytes=-{n}"),
        RangeAsk::Reversed => "bytes=5-2".to_string(),
        RangeAsk::Several => "bytes=0-1,4-5".to_string(),
        RangeAsk::OtherUnit => "items=0-1".to_string(),
    }
}

fn date_header(date: Date) -> &'static str {
    match date {
        Date::Past => PAST,
        Date::Future => FUTURE,
    }
}

/// Where a history's requests go.
enum Target {
    Gateway { name: &'static str, serve: Serve },
    S3 { storage: Storage, prefix: String },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Gateway { name, .. } => name,
            Target::S3 { .. } => "seaweedfs",
        }
    }

    fn quirks(&self) -> Departures {
        match self {
            Target::Gateway { .. } => Departures::default(),
            Target::S3 { .. } => Departures::seaweedfs(),
        }
    }

    /// A URL granting `method` on `key`, valid for `ttl` seconds.
    async fn url(&self, method: SignedMethod, key: &str, ttl: u64) -> String {
        match self {
            Target::Gateway { serve, .. } => {
                use maskstore_backends::signing::GatewaySigner;
                let secret = maskstore_core::Secret::new(SECRET);
                let signer = GatewaySigner::new(&serve.base, secret, None);
                let key = ObjectKey::parse(format!("mask/{key}")).unwrap();
                let expires = chrono::Utc::now().timestamp() + ttl as i64;
                signer.sign(method, &key, expires, &SignOptions::default())
            }
            Target::S3 { storage, prefix } => {
                let key = ObjectKey::parse(format!("{prefix}{key}")).unwrap();
                let options = SignOptions::default();
                let signed = storage.signed_url(method, &key, Some(ttl), &options).await;
                signed.unwrap().url
            }
        }
    }
}

/// `url` with the first character of its signature changed.
fn tampered(url: &str) -> String {
    let at = url
        .rfind("ignature=")
        .expect("a signed URL names its signature")
        + 9;
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

/// A run over one target: its client, and the URLs signed to expire.
struct Runner<'a> {
    target: &'a Target,
    http: reqwest::Client,
    run: String,
    /// URLs signed for one second, and when they were signed.
    expiring: Vec<(SignedMethod, String)>,
    signed_at: Instant,
}

impl Runner<'_> {
    async fn send(
        &self,
        method: SignedMethod,
        url: String,
        read: Option<&Read>,
        state: &State,
        put: Option<(Vec<u8>, WriteIf)>,
    ) -> (Answer, Option<String>) {
        let mut request = self.http.request(method.as_str().parse().unwrap(), url);
        if let Some(read) = read {
            let headers = [
                ("range", read.range.map(range_header)),
                ("if-match", read.if_match.map(|t| state.tag(t))),
                ("if-none-match", read.if_none_match.map(|t| state.tag(t))),
                (
                    "if-modified-since",
                    read.if_modified_since.map(|d| date_header(d).to_string()),
                ),
                (
                    "if-unmodified-since",
                    read.if_unmodified_since.map(|d| date_header(d).to_string()),
                ),
                ("if-range", read.if_range.map(|t| state.tag(t))),
            ];
            for (name, value) in headers {
                if let Some(value) = value {
                    request = request.header(name, value);
                }
            }
        }
        if let Some((bytes, when)) = put {
            request = match when {
                WriteIf::Always => request,
                WriteIf::IfNoneMatchAny => request.header("if-none-match", "*"),
                WriteIf::IfMatch(tag) => request.header("if-match", state.tag(tag)),
            };
            // Every PUT names its length, as S3 requires (411 otherwise); reqwest leaves
            // it out of an empty body.
            request = request.header("content-length", bytes.len()).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let mut answer = Answer {
            status,
            etag: etag.is_some(),
            etag_value: etag.clone(),
            last_modified: header("last-modified").is_some(),
            content_range: header("content-range"),
            length: header("content-length").and_then(|v| v.parse().ok()),
            accept_ranges: header("accept-ranges").as_deref() == Some("bytes"),
            body: None,
        };
        let bytes = response.bytes().await.unwrap().to_vec();
        if method == SignedMethod::Get && matches!(status, 200 | 206) {
            answer.body = Some(bytes);
        }
        (answer, etag)
    }
}

/// What a request was, for which parts of its answer are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Put,
    Other,
}

/// The parts of `answer` that S3 documents for its status: headers and bytes of a 200 or
/// 206 read, the etag of a 304 (the current one) and of a stored PUT (present), the status
/// alone otherwise.
fn relevant(answer: &Answer, kind: Kind) -> Answer {
    match (kind, answer.status) {
        (Kind::Read, 200 | 206) => answer.clone(),
        (Kind::Read, 304) => Answer {
            etag: answer.etag,
            etag_value: answer.etag_value.clone(),
            ..Answer::status(answer.status)
        },
        // A stored PUT's etag is opaque: the model learns it from this answer.
        (Kind::Put, 200) => Answer {
            etag: answer.etag,
            ..Answer::status(answer.status)
        },
        _ => Answer::status(answer.status),
    }
}

/// The divergences of one history on one target, and the requests sent.
struct Outcome {
    requests: usize,
    departures: usize,
    divergences: Vec<String>,
}

impl Runner<'_> {
    async fn history(&mut self, index: usize, ops: &[Op]) -> Outcome {
        let key = format!("diff-{}/h{index}", self.run);
        let mut state = State::default();
        let mut out = Outcome {
            requests: 0,
            departures: 0,
            divergences: Vec::new(),
        };
        for (step, op) in ops.iter().enumerate() {
            let (kind, got, want, quirky) = self.step(&key, op, step, &mut state).await;
            out.requests += 1;
            let got = relevant(&got, kind);
            if got == relevant(&want, kind) {
                continue;
            }
            if quirky.as_ref().is_some_and(|q| got == relevant(q, kind)) {
                out.departures += 1;
                continue;
            }
            out.divergences.push(format!(
                "{}: history {index} step {step}: {op:?}\n  got  {got:?}\n  want {want:?}\n  history {ops:?}",
                self.target.name()
            ));
        }
        out
    }

    /// Sends `op`, updates `state` from the answer, and gives the answer, AWS's, and
    /// SeaweedFS's documented departure where the target is SeaweedFS.
    async fn step(
        &mut self,
        key: &str,
        op: &Op,
        n: usize,
        state: &mut State,
    ) -> (Kind, Answer, Answer, Option<Answer>) {
        let quirks = self.target.quirks();
        let ttl = 300;
        match op {
            Op::Read(read) => {
                let method = if read.head {
                    SignedMethod::Head
                } else {
                    SignedMethod::Get
                };
                let url = self.target.url(method, key, ttl).await;
                let (got, _) = self.send(method, url, Some(read), state, None).await;
                let want = model_read(state, read, Departures::default());
                let quirky = quirks
                    .reversed_range_refused
                    .then(|| model_read(state, read, quirks));
                (Kind::Read, got, want, quirky)
            }
            Op::Put { len, when } => {
                let bytes = body(n, *len);
                let url = self.target.url(SignedMethod::Put, key, ttl).await;
                let (got, etag) = self
                    .send(
                        SignedMethod::Put,
                        url,
                        None,
                        state,
                        Some((bytes.clone(), *when)),
                    )
                    .await;
                let want = Answer {
                    etag: true,
                    ..Answer::status(model_put(state, *when, Departures::default()).0)
                };
                let quirky = quirks.put_if_match_missing_is_412.then(|| Answer {
                    etag: true,
                    ..Answer::status(model_put(state, *when, quirks).0)
                });
                if got.status == 200 {
                    state.body = Some(bytes);
                    state.etags.push(etag.unwrap_or_default());
                }
                (Kind::Put, got, want, quirky)
            }
            Op::Delete => {
                let url = self.target.url(SignedMethod::Delete, key, ttl).await;
                let (got, _) = self
                    .send(SignedMethod::Delete, url, None, state, None)
                    .await;
                if got.status == 204 {
                    state.body = None;
                }
                (Kind::Other, got, Answer::status(204), None)
            }
            Op::BadSignature(method) => {
                let url = tampered(&self.target.url(*method, key, ttl).await);
                let put = (*method == SignedMethod::Put).then(|| (b"x".to_vec(), WriteIf::Always));
                let (got, _) = self.send(*method, url, None, state, put).await;
                (Kind::Other, got, Answer::status(403), None)
            }
            Op::Expired(method) => {
                let wait = Duration::from_millis(2_100).saturating_sub(self.signed_at.elapsed());
                tokio::time::sleep(wait).await;
                let url = self
                    .expiring
                    .iter()
                    .find(|(m, _)| m == method)
                    .unwrap()
                    .1
                    .clone();
                let put = (*method == SignedMethod::Put).then(|| (b"x".to_vec(), WriteIf::Always));
                let (got, _) = self.send(*method, url, None, state, put).await;
                (Kind::Other, got, Answer::status(403), None)
            }
        }
    }
}

async fn run_target(target: &Target, histories: &[Vec<Op>]) -> Outcome {
    let run = format!("{:08x}", rand::random::<u32>());
    let mut expiring = Vec::new();
    let key = format!("diff-{run}/expired");
    for method in [
        SignedMethod::Get,
        SignedMethod::Head,
        SignedMethod::Put,
        SignedMethod::Delete,
    ] {
        expiring.push((method, target.url(method, &key, 1).await));
    }
    let mut runner = Runner {
        target,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        run,
        expiring,
        signed_at: Instant::now(),
    };
    let mut total = Outcome {
        requests: 0,
        departures: 0,
        divergences: Vec::new(),
    };
    for (index, ops) in histories.iter().enumerate() {
        let out = runner.history(index, ops).await;
        total.requests += out.requests;
        total.departures += out.departures;
        total.divergences.extend(out.divergences);
    }
    total
}

fn gateway(name: &'static str, dir: &std::path::Path, provider: &str) -> Target {
    let root = dir.join("data").display().to_string();
    let serve = Serve::start(
        dir,
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", provider),
            ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
            ("APP_OBJECT_STORAGE__FSYNC", "false"),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ],
    );
    Target::Gateway { name, serve }
}

fn history_count() -> u32 {
    match std::env::var("MASKSTORE_DIFF_HISTORIES") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("MASKSTORE_DIFF_HISTORIES={text:?} is no count; give a whole number")
        }),
        Err(_) => CI_HISTORIES,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_and_s3_answer_random_histories_as_s3_documents() {
    let seed = maskstore_fuzzkit::seed();
    // Before the first request too: a panic mid-run (a target gone) would show no seed.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("differential: seed {seed:#x} (MASKSTORE_FUZZ_SEED replays it)\n").as_bytes(),
    );
    let histories = histories(seed, history_count());
    let (local_dir, memory_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut targets = vec![
        gateway("gateway[local]", local_dir.path(), "local"),
        gateway("gateway[memory]", memory_dir.path(), "memory"),
    ];
    if let Some(server) = servers::seaweedfs() {
        let config = server.config();
        let prefix = config.object_storage.prefix.to_string();
        let storage = Storage::connect(&config).unwrap();
        targets.push(Target::S3 { storage, prefix });
    }
    let outcomes =
        futures::future::join_all(targets.iter().map(|t| run_target(t, &histories))).await;
    let requests: usize = outcomes.iter().map(|o| o.requests).sum();
    let departures: usize = outcomes.iter().map(|o| o.departures).sum();
    let divergences: Vec<&String> = outcomes.iter().flat_map(|o| &o.divergences).collect();
    let line = format!(
        "differential: {} histories, {requests} requests on {}, {} divergences, {departures} documented SeaweedFS departures (seed {seed:#x}; MASKSTORE_FUZZ_SEED replays it)",
        histories.len(),
        targets
            .iter()
            .map(Target::name)
            .collect::<Vec<_>>()
            .join(", "),
        divergences.len(),
    );
    // Past libtest's capture, beside the contract lines.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
    let shown: Vec<&str> = divergences.iter().take(10).map(|d| d.as_str()).collect();
    assert!(divergences.is_empty(), "{line}\n{}", shown.join("\n"));
}
