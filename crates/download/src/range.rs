//! `Range` header parsing for firmware downloads.
//!
//! Pure and lenient on purpose: devices resume interrupted downloads with `Range`, and what
//! deployed SDKs send is not always RFC-exact. Tencent's SDKs send `bytes={offset}-{file_size}`
//! (end one past the last byte), so an end beyond the file is clamped, never refused; `416` is
//! only for a start at or past the end of the file.
//!
//! Multi-range requests (`bytes=0-9,20-29`) are answered with the FIRST range only, as a plain
//! single-part `206` with its `Content-Range` (no `multipart/byteranges`). Resuming clients only
//! ever ask for one range; a client that appends whatever it gets at the offset it asked for still
//! ends up with correct bytes, which a `200` with the whole file would break.
//!
//! A header that does not parse is ignored (the whole file is served), as RFC 9110 allows.

use std::ops::Range;

/// What to send for a request, given the blob's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) range: `200` with the whole file.
    Full,
    /// `206` with these bytes (end exclusive, never empty, never past the size).
    Partial(Range<u64>),
    /// `416`: the range starts at or past the end of the file.
    Unsatisfiable,
}

/// Interprets a `Range` header value against a blob of `size` bytes.
pub fn parse(value: &str, size: u64) -> ByteRange {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return ByteRange::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ByteRange::Full;
    }
    let Some(first) = set.split(',').map(str::trim).find(|s| !s.is_empty()) else {
        return ByteRange::Full;
    };
    let Some((first_pos, last_pos)) = first.split_once('-') else {
        return ByteRange::Full;
    };
    let (first_pos, last_pos) = (first_pos.trim(), last_pos.trim());
    if first_pos.is_empty() {
        return suffix(last_pos, size);
    }
    let Some(start) = number(first_pos) else {
        return ByteRange::Full;
    };
    let end = if last_pos.is_empty() {
        size
    } else {
        match number(last_pos) {
            // `last` is inclusive; clamping here is what makes Tencent's one-past-the-end work.
            Some(last) if last >= start => last.saturating_add(1).min(size),
            _ => return ByteRange::Full,
        }
    };
    if start >= size {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Partial(start..end)
    }
}

/// `bytes=-K`: the last K bytes (the whole file when it is shorter).
fn suffix(len: &str, size: u64) -> ByteRange {
    match number(len) {
        None => ByteRange::Full,
        Some(0) => ByteRange::Unsatisfiable,
        Some(_) if size == 0 => ByteRange::Unsatisfiable,
        Some(k) => ByteRange::Partial(size.saturating_sub(k)..size),
    }
}

/// A run of ASCII digits; absurdly large values saturate rather than fail.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn table() {
        let size = 1000;
        let cases: &[(&str, ByteRange)] = &[
            ("bytes=0-", Partial(0..1000)),
            ("bytes=500-", Partial(500..1000)),
            ("bytes=0-0", Partial(0..1)),
            ("bytes=10-19", Partial(10..20)),
            ("bytes=0-999", Partial(0..1000)),
            // Tencent: end one past the last byte, and offsets with the file size as end.
            ("bytes=0-1000", Partial(0..1000)),
            ("bytes=400-1000", Partial(400..1000)),
            ("bytes=400-99999999", Partial(400..1000)),
            ("bytes=400-99999999999999999999999", Partial(400..1000)),
            ("bytes=999-1000", Partial(999..1000)),
            ("bytes=-100", Partial(900..1000)),
            ("bytes=-5000", Partial(0..1000)),
            ("bytes=-0", Unsatisfiable),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=1000-1000", Unsatisfiable),
            ("bytes=5000-6000", Unsatisfiable),
            ("bytes=99999999999999999999999-", Unsatisfiable),
            // Spacing and case variations.
            (" Bytes = 10 - 19 ", Partial(10..20)),
            // Multi-range: the first range only.
            ("bytes=0-9,20-29", Partial(0..10)),
            ("bytes=, 5-9", Partial(5..10)),
            // Garbage: ignored, whole file.
            ("", Full),
            ("bytes", Full),
            ("bytes=", Full),
            ("bytes=abc-", Full),
            ("bytes=5", Full),
            ("bytes=9-5", Full),
            ("bytes=--5", Full),
            ("bytes=-", Full),
            ("bytes=+5-", Full),
            ("bytes=0x10-", Full),
            ("items=0-5", Full),
            ("0-5", Full),
            ("bytes=é-", Full),
        ];
        for (value, want) in cases {
            assert_eq!(&parse(value, size), want, "{value:?}");
        }
    }

    #[test]
    fn empty_file() {
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), Unsatisfiable);
        assert_eq!(parse("junk", 0), Full);
    }
}
