//! Fuzzes `parse_uplink` and the replies built from it: answers (with and without an offer, and
//! the otter extension), error replies, and the two-way request topic's rule that an answer is
//! recognised as one and never answered. Input: the topic, a newline, then the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_protocol::{
    Answer, Offer, OfferExt, add_ext_to_reply, answer, error_reply, is_own_answer, parse_uplink,
    two_way,
};

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
            assert!(!is_own_answer(topic, payload), "a request taken for an answer");
            let _ = answer(&u, Answer::Ack);
            let _ = answer(&u, Answer::TaskNotFound);
            let offer = Offer {
                module: "default".into(),
                version: "1.1.0".into(),
                url: "http://h/dl/x".into(),
                size: 1,
                md5: "0".repeat(32),
                sha256: "0".repeat(64),
            };
            for a in [Answer::Offer(None), Answer::Offer(Some(offer))] {
                let Some(mut out) = answer(&u, a) else {
                    continue;
                };
                add_ext_to_reply(&mut out, &OfferExt::default());
                if two_way(&out.topic) {
                    assert!(is_own_answer(&out.topic, &out.payload), "answer not recognised");
                    let heard = parse_uplink(&out.topic, &out.payload);
                    assert!(heard.is_err_and(|r| error_reply(&r).is_none()), "answer answered");
                }
            }
        }
        Err(r) => {
            if let Some(out) = error_reply(&r) {
                if two_way(&out.topic) {
                    assert!(is_own_answer(&out.topic, &out.payload), "error reply not recognised");
                }
            }
        }
    }
});
