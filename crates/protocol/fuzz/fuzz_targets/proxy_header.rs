//! Fuzzes the PROXY protocol (v1 and v2) header reader in front of the broker's listener for
//! TLS terminators: any bytes, never a panic, and a header it accepts is not empty and not
//! longer than the bytes it was given (what follows is the device's MQTT stream).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_peer, len)) = rmqtt_net::read_proxy_header(data) {
        assert!(
            len > 0 && len <= data.len(),
            "header length {len} of {}",
            data.len()
        );
    }
});
