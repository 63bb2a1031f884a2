//! Fuzzes `parse_login` and `verify` for every dialect. Input: client id, username and password
//! separated by NUL bytes (a missing part means the field was absent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_protocol::{Credentials, DeviceAddr, Dialect, parse_login, verify};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let client_id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let username = parts
        .next()
        .map(|u| String::from_utf8_lossy(u).into_owned());
    let password = parts.next().map(<[u8]>::to_vec);
    let c = Credentials {
        client_id,
        username,
        password,
    };
    let _ = parse_login(&c);
    let dev = DeviceAddr::new("a1B2c3D4e5F", "device01");
    for d in Dialect::ALL {
        let _ = verify(d, &dev, "MDEyMzQ1Njc4OWFiY2RlZg==", &c);
    }
});
