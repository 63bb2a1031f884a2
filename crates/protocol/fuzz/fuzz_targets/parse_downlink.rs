//! Fuzzes `parse_downlink` (the device agent's parser) and `reply_offers`. Input: the topic, a
//! newline, then the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_protocol::{Downlink, parse_downlink, reply_offers};

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    if let Ok((d, _, Downlink::Reply { data, .. })) = parse_downlink(topic, payload) {
        let _ = reply_offers(d, &data);
    }
});
