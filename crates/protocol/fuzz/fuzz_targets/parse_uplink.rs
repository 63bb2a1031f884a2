//! Fuzzes `parse_uplink` and the error replies built from its rejections. Input: the topic, a
//! newline, then the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_protocol::{Answer, answer, error_reply, parse_uplink};

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    match parse_uplink(topic, payload) {
        Ok(u) => {
            let _ = answer(&u, Answer::Ack);
            let _ = answer(&u, Answer::Offer(None));
            let _ = answer(&u, Answer::TaskNotFound);
        }
        Err(r) => {
            let _ = error_reply(&r);
        }
    }
});
