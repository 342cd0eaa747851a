//! The `range` cases: range.

use std::sync::atomic::Ordering;

use maskstore_backends::{ByteRange, Error, Storage};

use super::{counted, put};

const RANGE_BODY: &str = "0123456789abcdefghij";

/// A bounded range returns exactly those bytes.
pub async fn bounded_range_returns_exact_bytes(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let part = s.get_range(&k, 3..7).await.unwrap();
    assert_eq!(part.data, "3456");
    assert_eq!(part.range, 3..7);
}

/// A range from an offset reads to the end.
pub async fn range_from_offset_reads_to_the_end(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_eq!(
        s.get_range(&k, ByteRange::From(15)).await.unwrap().data,
        "fghij"
    );
}

/// A suffix range returns the last n bytes.
pub async fn suffix_range_returns_the_last_bytes(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let part = s.get_range(&k, ByteRange::Suffix(4)).await.unwrap();
    assert_eq!(part.data, "ghij");
    assert_eq!(part.range, 16..20);
}

/// A suffix longer than the object returns all of it.
pub async fn suffix_longer_than_object_returns_all_of_it(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_eq!(
        s.get_range(&k, ByteRange::Suffix(100)).await.unwrap().data,
        RANGE_BODY
    );
}

/// A bounded range whose end passes the object's end is cut at the end.
pub async fn range_end_past_the_object_is_cut_at_the_end(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let part = s.get_range(&k, 17..100).await.unwrap();
    assert_eq!(part.data, "hij");
    assert_eq!(part.range, 17..20);
}

/// A range starting at or past the end is InvalidRange.
pub async fn range_starting_past_the_end_is_invalid(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_err!(s.get_range(&k, 20..30).await, Error::InvalidRange { .. });
    assert_err!(
        s.get_range(&k, ByteRange::From(25)).await,
        Error::InvalidRange { .. }
    );
}

/// An empty or reversed range is refused before any I/O.
pub async fn empty_or_reversed_range_is_refused_before_io(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let (s, calls) = counted(&s);
    assert_err!(s.get_range(&k, 5..5).await, Error::InvalidRange { .. });
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 7..3;
    assert_err!(s.get_range(&k, reversed).await, Error::InvalidRange { .. });
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// On an empty object, a suffix is satisfiable and returns all of it, no bytes, with the
/// object's etag (RFC 9110 §14.1.1: "When a selected representation has zero length, the
/// only satisfiable form of range-spec is a suffix-range with a non-zero suffix-length");
/// any start is past the end, `InvalidRange`, as on any object.
pub async fn ranges_of_an_empty_object(s: Storage) {
    let k = put(&s, "empty.bin", "").await;
    let etag = s.head(&k).await.unwrap().etag;
    for n in [1, 2, 100] {
        let part = s.get_range(&k, ByteRange::Suffix(n)).await.unwrap();
        assert!(part.data.is_empty(), "suffix {n}: {:?}", part.data);
        assert_eq!(part.range, 0..0, "suffix {n}");
        assert_eq!((part.info.size, &part.info.etag), (0, &etag), "suffix {n}");
    }
    for range in [
        ByteRange::From(0),
        ByteRange::Bounded(0..1),
        ByteRange::From(3),
    ] {
        assert_err!(
            s.get_range(&k, range.clone()).await,
            Error::InvalidRange { .. }
        );
    }
}

/// A range read still reports the whole object's size.
pub async fn range_read_reports_the_whole_size(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_eq!(s.get_range(&k, 0..2).await.unwrap().info.size, 20);
}
