//! Fuzzes the download-link check: arbitrary path fields and signatures never panic and are never
//! accepted, while the genuine link for the same fields always is. Input: NUL-separated
//! sha256, product, device, signature; then 8 bytes of expiry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_download::{TokenError, UrlSigner};

fuzz_target!(|data: &[u8]| {
    let signer = UrlSigner::new(b"fuzz key", "http://h").accept_retired(b"old key", 1_000);
    let mut parts = data.splitn(5, |b| *b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (sha, product, device, sig) = (next(), next(), next(), next());
    let expires = u64::from(u32::from_le_bytes(
        data.get(..4).and_then(|b| b.try_into().ok()).unwrap_or_default(),
    ));
    let genuine_url = signer.url(&sha, &product, &device, expires);
    let genuine = genuine_url.rsplit('/').next().unwrap_or_default();
    if sig != genuine {
        assert_eq!(
            signer.verify(&sha, &product, &device, expires, &sig, 0),
            Err(TokenError::Forged),
            "a signature we did not make was accepted"
        );
    }
    if expires > 0 {
        assert_eq!(signer.verify(&sha, &product, &device, expires, genuine, 0), Ok(()));
        assert_eq!(
            signer.verify(&sha, &product, &device, expires, genuine, expires),
            Err(TokenError::Expired)
        );
    }
});
