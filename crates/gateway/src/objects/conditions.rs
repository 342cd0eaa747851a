//! What a request asks of an object's version and span, as RFC 9110 and S3 read it:
//! entity-tag lists (`If-Match`, `If-None-Match`, `If-Range`), dates (`If-Modified-Since`,
//! `If-Unmodified-Since`) and one byte range resolved against the object's size.

use std::ops::Range;

use axum::http::header::{self, HeaderMap, HeaderName};
use chrono::{DateTime, Utc};
use maskstore_backends::ObjectInfo;

/// One entity tag: its opaque text (without quotes) and whether it is weak (`W/"…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntityTag {
    weak: bool,
    opaque: String,
}

impl EntityTag {
    /// The tag a stored etag stands for (stores give it quoted or bare, some marked weak).
    pub(super) fn of_store(etag: &str) -> EntityTag {
        let text = etag.trim();
        let (weak, text) = match text.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        EntityTag {
            weak,
            opaque: text.trim_matches('"').to_string(),
        }
    }

    /// RFC 9110 §8.8.3.2 strong comparison: neither weak, the same text.
    fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// RFC 9110 §8.8.3.2 weak comparison: the same text.
    fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }
}

/// An `If-Match` or `If-None-Match` value: `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TagList {
    /// `*`: any current representation.
    Any,
    /// The listed tags (empty when nothing in the value was a tag).
    Tags(Vec<EntityTag>),
}

impl TagList {
    /// Parses a list of `"tag"`, `W/"tag"` and (as S3 accepts them) bare tags, separated
    /// by commas; a comma inside quotes belongs to the tag.
    pub(super) fn parse(text: &str) -> TagList {
        if text.trim() == "*" {
            return TagList::Any;
        }
        let mut tags = Vec::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                return TagList::Tags(tags);
            }
            let (weak, body) = match rest.strip_prefix("W/") {
                Some(body) => (true, body),
                None => (false, rest),
            };
            let (opaque, after) = match body.strip_prefix('"') {
                Some(quoted) => match quoted.split_once('"') {
                    Some((opaque, after)) => (opaque, after),
                    None => (quoted, ""),
                },
                None => match body.split_once(',') {
                    Some((opaque, after)) => (opaque.trim(), after),
                    None => (body.trim(), ""),
                },
            };
            tags.push(EntityTag {
                weak,
                opaque: opaque.to_string(),
            });
            rest = after;
        }
    }

    /// The list `name` holds in `headers`, its field lines taken together (RFC 9110 §5.3: a
    /// list sent on several lines is the one list); `None` when absent or not text.
    pub(super) fn of(headers: &HeaderMap, name: HeaderName) -> Option<TagList> {
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!lines.is_empty()).then(|| TagList::parse(&lines.join(", ")))
    }

    /// The listed tag that strongly matches `current` (`If-Match`), `*` matching any.
    pub(super) fn strong_match(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (TagList::Any, Some(_)) => true,
            (TagList::Tags(tags), Some(current)) => tags.iter().any(|t| t.strong_eq(current)),
        }
    }

    /// Whether a listed tag weakly matches `current` (`If-None-Match`), `*` matching any.
    pub(super) fn weak_match(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (TagList::Any, Some(_)) => true,
            (TagList::Tags(tags), Some(current)) => tags.iter().any(|t| t.weak_eq(current)),
        }
    }
}

/// What a GET or HEAD asks: its conditions and its range.
#[derive(Debug, Clone, Default)]
pub(super) struct Asked {
    pub(super) if_match: Option<TagList>,
    pub(super) if_none_match: Option<TagList>,
    /// `If-Modified-Since`: an HTTP-date (another value is ignored, as RFC 9110 says).
    if_modified_since: Option<DateTime<Utc>>,
    /// `If-Unmodified-Since`: an HTTP-date.
    if_unmodified_since: Option<DateTime<Utc>>,
    /// `If-Range`: an entity tag, or a date (which S3's and our strong validator, the
    /// etag, cannot vouch for, so it never matches: the whole object is served).
    if_range: Option<String>,
    range: Option<RangeSpec>,
}

/// The outcome of the request's conditions on the current object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Serve it.
    Proceed,
    /// 412: `If-Match` or `If-Unmodified-Since` failed.
    PreconditionFailed,
    /// 304: `If-None-Match` matched, or `If-Modified-Since` found no change.
    NotModified,
}

/// The part of the object to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Span {
    /// The whole object, with 200 (no usable range asked).
    Whole,
    /// These bytes, with 206 (possibly all of them).
    Part(Range<u64>),
    /// 416: the range lies beyond the object.
    Unsatisfiable,
}

/// The headers a GET or HEAD asks its conditions and its range with.
const ASKING: [HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

impl Asked {
    /// What `headers` ask; unreadable values are ignored, as HTTP allows.
    pub(super) fn from_headers(headers: &HeaderMap) -> Asked {
        // Most requests ask none of them: one pass over their few names, not six lookups.
        if !headers.keys().any(|name| ASKING.contains(name)) {
            return Asked::default();
        }
        let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        Asked {
            if_match: TagList::of(headers, header::IF_MATCH),
            if_none_match: TagList::of(headers, header::IF_NONE_MATCH),
            if_modified_since: text(header::IF_MODIFIED_SINCE).and_then(http_date),
            if_unmodified_since: text(header::IF_UNMODIFIED_SINCE).and_then(http_date),
            if_range: text(header::IF_RANGE).map(|v| v.trim().to_string()),
            range: text(header::RANGE).and_then(RangeSpec::parse),
        }
    }

    /// Whether a usable range was asked for.
    pub(super) fn has_range(&self) -> bool {
        self.range.is_some()
    }

    /// RFC 9110 §13.2.2, which is also the precedence AWS documents for GetObject and
    /// HeadObject: `If-Match` (strong), or without it `If-Unmodified-Since`; then
    /// `If-None-Match` (weak), or without it `If-Modified-Since`. Dates compare to the
    /// second, the precision of `Last-Modified`.
    pub(super) fn verdict(&self, info: &ObjectInfo) -> Verdict {
        // Read only when a condition names tags.
        let current = || info.etag.as_deref().map(EntityTag::of_store);
        let changed_after =
            |date: &DateTime<Utc>| info.last_modified.timestamp() > date.timestamp();
        let still = match (&self.if_match, &self.if_unmodified_since) {
            (Some(list), _) => list.strong_match(current().as_ref()),
            (None, Some(date)) => !changed_after(date),
            (None, None) => true,
        };
        if !still {
            return Verdict::PreconditionFailed;
        }
        let unchanged = match (&self.if_none_match, &self.if_modified_since) {
            (Some(list), _) => list.weak_match(current().as_ref()),
            (None, Some(date)) => !changed_after(date),
            (None, None) => false,
        };
        if unchanged {
            return Verdict::NotModified;
        }
        Verdict::Proceed
    }

    /// The span to serve of `info`'s object: the range, unless `If-Range` names another
    /// version (RFC 9110 §13.1.5: then the whole object, 200).
    pub(super) fn span(&self, info: &ObjectInfo) -> Span {
        let Some(range) = &self.range else {
            return Span::Whole;
        };
        if let Some(validator) = &self.if_range {
            let current = info.etag.as_deref().map(EntityTag::of_store);
            let asked = validator
                .starts_with(['"', 'W'])
                .then(|| TagList::parse(validator));
            let same = match (asked, current) {
                (Some(TagList::Tags(tags)), Some(current)) => {
                    tags.len() == 1 && tags[0].strong_eq(&current)
                }
                _ => false,
            };
            if !same {
                return Span::Whole;
            }
        }
        range.resolve(info.size)
    }
}

/// An HTTP-date in any of RFC 9110's three forms; `None` for anything else.
fn http_date(text: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(text.trim())
        .ok()
        .map(DateTime::from)
}

/// One `bytes=` range as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// `a-b`, `a-`.
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// `bytes=a-b`, `bytes=a-` or `bytes=-n`. Anything else (several ranges, other
    /// units, `b < a`, not numbers) is ignored and the whole object served, as RFC 9110
    /// §14.2 allows and S3 does.
    fn parse(text: &str) -> Option<RangeSpec> {
        let spec = text.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        // A position too large for u64 lies past the end of any object: it saturates
        // (a first position there is unsatisfiable, a last one or a suffix is cut to the
        // object), rather than voiding the range.
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().unwrap_or(u64::MAX))
        };
        match (first.trim(), last.trim()) {
            ("", n) => Some(RangeSpec::Suffix(number(n)?)),
            (a, "") => Some(RangeSpec::From {
                first: number(a)?,
                last: None,
            }),
            (a, b) => {
                let (first, last) = (number(a)?, number(b)?);
                (last >= first).then_some(RangeSpec::From {
                    first,
                    last: Some(last),
                })
            }
        }
    }

    /// RFC 9110 §14.1.2 against an object of `size` bytes: a last position past the end
    /// is cut to it, a first position at or past the end is unsatisfiable, and so is a
    /// suffix of 0 bytes or any range of an empty object (S3 answers these 416).
    fn resolve(self, size: u64) -> Span {
        match self {
            RangeSpec::From { first, .. } if first >= size => Span::Unsatisfiable,
            RangeSpec::From { first, last } => {
                let end = last.map_or(size, |last| last.saturating_add(1).min(size));
                Span::Part(first..end)
            }
            RangeSpec::Suffix(0) => Span::Unsatisfiable,
            RangeSpec::Suffix(_) if size == 0 => Span::Unsatisfiable,
            RangeSpec::Suffix(n) => Span::Part(size.saturating_sub(n)..size),
        }
    }
}

#[cfg(test)]
#[path = "conditions_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(weak: bool, opaque: &str) -> EntityTag {
        EntityTag {
            weak,
            opaque: opaque.to_string(),
        }
    }

    #[test]
    fn tag_lists_split_on_commas_outside_quotes() {
        assert_eq!(TagList::parse(" * "), TagList::Any);
        assert_eq!(
            TagList::parse(r#""a", W/"b" ,"c,d",bare"#),
            TagList::Tags(vec![
                tag(false, "a"),
                tag(true, "b"),
                tag(false, "c,d"),
                tag(false, "bare")
            ])
        );
        assert_eq!(TagList::parse(" , "), TagList::Tags(vec![]));
        assert_eq!(
            TagList::parse(r#""unterminated"#),
            TagList::Tags(vec![tag(false, "unterminated")])
        );
    }

    #[test]
    fn if_match_compares_strongly_and_if_none_match_weakly() {
        let current = EntityTag::of_store("\"e1\"");
        let list = TagList::parse(r#""a", "e1""#);
        assert!(list.strong_match(Some(&current)));
        let weak = TagList::parse(r#"W/"e1""#);
        assert!(!weak.strong_match(Some(&current)));
        assert!(weak.weak_match(Some(&current)));
        assert!(!TagList::Any.strong_match(None));
        assert!(TagList::Any.weak_match(Some(&current)));
    }

    fn info(etag: &str, modified: &str) -> ObjectInfo {
        ObjectInfo {
            key: "mask/a.png".parse().unwrap(),
            size: 10,
            last_modified: http_date(modified).unwrap(),
            etag: Some(etag.to_string()),
            content_type: None,
            metadata: Default::default(),
            checksum: None,
            native_checksum: None,
            unreadable_checksum: None,
            content_encoding: None,
        }
    }

    fn asked(pairs: &[(HeaderName, &str)]) -> Asked {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name.clone(), value.parse().unwrap());
        }
        Asked::from_headers(&headers)
    }

    #[test]
    fn dates_are_judged_in_rfc_9110_order_as_s3_documents() {
        let object = info("\"e1\"", "Tue, 01 Dec 2026 10:00:00 GMT");
        let (before, same, after) = (
            "Mon, 30 Nov 2026 10:00:00 GMT",
            "Tuesday, 01-Dec-26 10:00:00 GMT",
            "Tue Dec  1 10:00:01 2026",
        );
        let verdict = |pairs: &[(HeaderName, &str)]| asked(pairs).verdict(&object);
        assert_eq!(
            verdict(&[(header::IF_UNMODIFIED_SINCE, before)]),
            Verdict::PreconditionFailed
        );
        assert_eq!(
            verdict(&[(header::IF_UNMODIFIED_SINCE, same)]),
            Verdict::Proceed
        );
        assert_eq!(
            verdict(&[(header::IF_MODIFIED_SINCE, same)]),
            Verdict::NotModified
        );
        assert_eq!(
            verdict(&[(header::IF_MODIFIED_SINCE, after)]),
            Verdict::NotModified
        );
        assert_eq!(
            verdict(&[(header::IF_MODIFIED_SINCE, before)]),
            Verdict::Proceed
        );
        // AWS: If-Match true and If-Unmodified-Since false is 200; If-None-Match false (the
        // tag differs) and If-Modified-Since "not modified" is 200 too, since If-None-Match
        // decides when present (RFC 9110 §13.1.3, §13.1.4).
        let matched = [
            (header::IF_MATCH, "\"e1\""),
            (header::IF_UNMODIFIED_SINCE, before),
        ];
        assert_eq!(verdict(&matched), Verdict::Proceed);
        let other = [
            (header::IF_NONE_MATCH, "\"e0\""),
            (header::IF_MODIFIED_SINCE, after),
        ];
        assert_eq!(verdict(&other), Verdict::Proceed);
        let failed = [
            (header::IF_MATCH, "\"e0\""),
            (header::IF_NONE_MATCH, "\"e1\""),
        ];
        assert_eq!(verdict(&failed), Verdict::PreconditionFailed);
        assert_eq!(
            verdict(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
            Verdict::Proceed
        );
    }

    #[test]
    fn a_tag_list_on_several_lines_is_one_list() {
        let object = info("\"e1\"", "Tue, 01 Dec 2026 10:00:00 GMT");
        let mut headers = HeaderMap::new();
        headers.append(header::IF_MATCH, "\"a\"".parse().unwrap());
        headers.append(header::IF_MATCH, "\"e1\"".parse().unwrap());
        assert_eq!(
            Asked::from_headers(&headers).verdict(&object),
            Verdict::Proceed
        );
        headers.append(header::IF_NONE_MATCH, "\"b\"".parse().unwrap());
        headers.append(header::IF_NONE_MATCH, "W/\"e1\"".parse().unwrap());
        assert_eq!(
            Asked::from_headers(&headers).verdict(&object),
            Verdict::NotModified
        );
    }

    #[test]
    fn ranges_resolve_like_rfc_9110_and_s3() {
        let span = |text: &str, size: u64| RangeSpec::parse(text).map(|r| r.resolve(size));
        assert_eq!(span("bytes=0-4", 10), Some(Span::Part(0..5)));
        assert_eq!(span("bytes=5-100", 10), Some(Span::Part(5..10)));
        assert_eq!(span("bytes=10-", 10), Some(Span::Unsatisfiable));
        assert_eq!(span("bytes=-3", 10), Some(Span::Part(7..10)));
        assert_eq!(span("bytes=-30", 10), Some(Span::Part(0..10)));
        assert_eq!(span("bytes=-0", 10), Some(Span::Unsatisfiable));
        assert_eq!(span("bytes=-5", 0), Some(Span::Unsatisfiable));
        assert_eq!(span("bytes=0-", 0), Some(Span::Unsatisfiable));
        let huge = "99999999999999999999999";
        assert_eq!(
            span(&format!("bytes=2-{huge}"), 10),
            Some(Span::Part(2..10))
        );
        assert_eq!(
            span(&format!("bytes={huge}-"), 10),
            Some(Span::Unsatisfiable)
        );
        assert_eq!(span(&format!("bytes=-{huge}"), 10), Some(Span::Part(0..10)));
        for ignored in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=+1-2",
        ] {
            assert_eq!(RangeSpec::parse(ignored), None, "{ignored}");
        }
    }
}
