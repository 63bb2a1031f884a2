//! Tencent key-mode authentication: HMAC over the username, keyed with the base64-decoded
//! device secret, password `{hex};hmacsha1|hmacsha256`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::{AuthError, Credentials, Hash, hex_matches, hmac_hex, password};
use crate::DeviceAddr;

/// The sdkappid Tencent's SDKs send (never checked).
const SDKAPPID: &str = "21010406";

/// The HMAC key: the base64-decoded secret. A secret that is not base64 (no real device could
/// use it) is used as raw bytes so that [`super::sign`] stays infallible and consistent.
fn key(secret: &str) -> Vec<u8> {
    let s = secret.trim();
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .unwrap_or_else(|_| s.as_bytes().to_vec())
}

pub(super) fn verify(dev: &DeviceAddr, secret: &str, c: &Credentials) -> Result<(), AuthError> {
    let user = c.username.as_deref().ok_or(AuthError::MissingUsername)?;
    let (first, _) = user
        .split_once(';')
        .ok_or_else(|| AuthError::BadUsername(user.to_owned()))?;
    let expected_id = format!("{}{}", dev.product, dev.device);
    if first != c.client_id || c.client_id != expected_id {
        return Err(AuthError::WrongDevice {
            claimed: first.to_owned(),
            expected: expected_id,
        });
    }
    let pw = password(c)?;
    // Without a suffix the SDKs of the time meant SHA-1.
    let (mac, method) = pw.rsplit_once(';').unwrap_or((pw, "hmacsha1"));
    let hash = match method.to_ascii_lowercase().as_str() {
        "hmacsha1" => Hash::Sha1,
        "hmacsha256" => Hash::Sha256,
        _ => return Err(AuthError::UnsupportedSignMethod(method.to_owned())),
    };
    // The expiry field is deliberately not checked: the C SDK sends LONG_MAX, Python a time
    // in milliseconds.
    if hex_matches(mac, &hmac_hex(hash, &key(secret), user.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// Five connection-id characters derived from the time (the SDKs use random ones).
fn connid(timestamp_ms: u64) -> String {
    let mut n = timestamp_ms;
    (0..5)
        .map(|_| {
            let digit = u32::try_from(n % 36).unwrap_or_default();
            n /= 36;
            char::from_digit(digit, 36).unwrap_or('0')
        })
        .collect()
}

pub(super) fn sign(dev: &DeviceAddr, secret: &str, timestamp_ms: u64) -> Credentials {
    let client_id = format!("{}{}", dev.product, dev.device);
    let expiry = timestamp_ms / 1000 + 3600;
    let username = format!("{client_id};{SDKAPPID};{};{expiry}", connid(timestamp_ms));
    let mac = hmac_hex(Hash::Sha256, &key(secret), username.as_bytes());
    Credentials {
        client_id,
        username: Some(username),
        password: Some(format!("{mac};hmacsha256").into_bytes()),
    }
}
