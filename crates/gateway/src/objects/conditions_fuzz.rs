//! The gateway's parsers of request headers (`Range`, `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since`, `If-Range`) under random and mutated input
//! ([`maskstore_fuzzkit`]): no panic, no hang, bounded allocation, a range parsed back
//! from its own form, a tag list parsed back from its own form, and every span the
//! gateway would serve inside the object. The signed URL's query is checked with the
//! backends' parsers (`maskstore-backends`' `parsers_fuzz`), where its parser lives.
//!
//! One test prints `parsers[gateway]: N parsers, M cases, 0 failures (seed …)`.

use axum::http::{HeaderMap, HeaderValue};
use maskstore_fuzzkit::proptest::prelude::*;
use maskstore_fuzzkit::{Parsers, Verdict as Case, bounded, ensure, mutated, mutated_text};

use super::*;

const RANGES: &[&[u8]] = &[b"bytes=0-99", b"bytes=-5", b"bytes=7-", b"bytes= 3 - 9 "];
const TAGS: &[&[u8]] = &[
    b"\"9b2cf535f27731c974343645a3985328\"",
    b"W/\"a\", \"b\",\"c\"",
    b"*",
    b"\"d41d8cd98f00b204e9800998ecf8427e-2\", W/\"0x8DD1A2B3C4D5E6F\"",
];
const DATES: &[&[u8]] = &[
    b"Mon, 07 Dec 2026 01:00:00 GMT",
    b"Monday, 07-Dec-26 01:00:00 GMT",
    b"Mon Dec  7 01:00:00 2026",
];

#[test]
fn the_condition_headers_survive_random_and_mutated_input() {
    let mut run = Parsers::new("gateway");
    run.check("Range", range_text(), |text| {
        let spec = bounded(text.len(), || RangeSpec::parse(&text))?;
        if let Some(spec) = spec {
            let again = RangeSpec::parse(&format_range(spec));
            ensure(again == Some(spec), || {
                format!("{text:?} → {spec:?} → {again:?}")
            })?;
        }
        Ok(())
    });
    run.check(
        "Range resolved",
        (range_spec(), any::<u64>()),
        |(spec, size)| match spec.resolve(size) {
            Span::Part(r) => ensure(r.start < r.end && r.end <= size, || {
                format!("{spec:?} of {size} bytes serves {r:?}")
            }),
            Span::Whole | Span::Unsatisfiable => Ok(()),
        },
    );
    run.check("entity-tag list", mutated_text(TAGS), |text| {
        bounded(text.len(), || TagList::parse(&text))?;
        Ok(())
    });
    run.check("entity-tag list ↔ its form", tag_list(), |tags| {
        let text = tags
            .iter()
            .map(|t| format!("{}\"{}\"", if t.weak { "W/" } else { "" }, t.opaque))
            .collect::<Vec<_>>()
            .join(", ");
        let parsed = TagList::parse(&text);
        ensure(parsed == TagList::Tags(tags.clone()), || {
            format!("{text:?} → {parsed:?}")
        })
    });
    run.check("HTTP date", mutated_text(DATES), |text| {
        if let Some(date) = bounded(text.len(), || http_date(&text))? {
            let shown = httpdate::fmt_http_date(date.into());
            ensure(http_date(&shown) == Some(date), || {
                format!("{text:?} → {shown:?}")
            })?;
        }
        Ok(())
    });
    run.check("conditional request", condition_headers(), judged);
    run.finish();
}

/// Whatever the headers, the verdict and span are computed without a panic, and a
/// span served lies inside the object.
fn judged((pairs, size, etag): Request) -> Case {
    let mut headers = HeaderMap::new();
    let mut len = 0;
    for (name, value) in pairs {
        len += value.len();
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(name, value);
        }
    }
    let info = ObjectInfo {
        key: "mask/a.png".parse().unwrap(),
        size,
        last_modified: http_date("Mon, 07 Dec 2026 01:00:00 GMT").unwrap(),
        etag,
        content_type: None,
        metadata: Default::default(),
        checksum: None,
        native_checksum: None,
        unreadable_checksum: None,
        content_encoding: None,
    };
    let (_, span) = bounded(len, || {
        let asked = Asked::from_headers(&headers);
        (asked.verdict(&info), asked.span(&info))
    })?;
    match span {
        Span::Part(r) => ensure(r.start < r.end && r.end <= size, || {
            format!("{headers:?} on {size} bytes serves {r:?}")
        }),
        Span::Whole | Span::Unsatisfiable => Ok(()),
    }
}

fn format_range(spec: RangeSpec) -> String {
    match spec {
        RangeSpec::From {
            first,
            last: Some(last),
        } => format!("bytes={first}-{last}"),
        RangeSpec::From { first, last: None } => format!("bytes={first}-"),
        RangeSpec::Suffix(n) => format!("bytes=-{n}"),
    }
}

fn number() -> impl Strategy<Value = u64> + Send {
    prop_oneof![0u64..2000, any::<u64>(), Just(u64::MAX)]
}

fn range_spec() -> impl Strategy<Value = RangeSpec> + Send {
    prop_oneof![
        (number(), prop::option::of(number())).prop_map(|(first, last)| RangeSpec::From {
            first,
            last: last.map(|l| l.max(first)),
        }),
        number().prop_map(RangeSpec::Suffix),
    ]
}

fn range_text() -> impl Strategy<Value = String> + Send {
    prop_oneof![
        range_spec().prop_map(format_range),
        mutated_text(RANGES),
        "bytes=[0-9 ,-]{0,40}",
        any::<String>(),
    ]
}

fn tag_list() -> impl Strategy<Value = Vec<EntityTag>> + Send {
    let opaque = "[!#-~]{0,20}".prop_filter("an opaque tag holds no quote", |o| !o.contains('"'));
    prop::collection::vec(
        (any::<bool>(), opaque).prop_map(|(weak, opaque)| EntityTag { weak, opaque }),
        0..5,
    )
}

/// A request's condition headers (raw values), the object's size and its etag.
type Request = (Vec<(HeaderName, Vec<u8>)>, u64, Option<String>);

fn condition_headers() -> impl Strategy<Value = Request> + Send {
    let name = prop::sample::select(vec![
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ]);
    let value = prop_oneof![
        mutated(RANGES),
        mutated(TAGS),
        mutated(DATES),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    let etag = prop::option::of(mutated_text(TAGS));
    (prop::collection::vec((name, value), 0..6), number(), etag)
}
