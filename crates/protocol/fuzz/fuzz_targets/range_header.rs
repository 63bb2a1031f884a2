//! Fuzzes the download `Range` header parser: any header, any size, never a panic, and a partial
//! range is never empty and never past the file. Input: 8 bytes of size, then the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_download::range::{ByteRange, parse};

fuzz_target!(|data: &[u8]| {
    let (size, header) = data.split_at(data.len().min(8));
    let mut size_bytes = [0u8; 8];
    size_bytes[..size.len()].copy_from_slice(size);
    let size = u64::from_le_bytes(size_bytes);
    let header = String::from_utf8_lossy(header);
    if let ByteRange::Partial(r) = parse(&header, size) {
        assert!(r.start < r.end && r.end <= size, "{header:?} {size} -> {r:?}");
    }
});
