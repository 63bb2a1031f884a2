//! Device authentication at MQTT CONNECT for the three dialects (`PROTOCOL.md` §1–3): reading
//! who a client claims to be, checking its password against the device secret, and producing
//! the credentials a vendor SDK would send (for the device agent and tests).
//!
//! All signature comparisons are constant-time and hex is compared case-insensitively, as the
//! SDKs disagree on case.

mod aliyun;
mod enos;
mod tencent;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{DeviceAddr, Dialect};

pub use aliyun::DEFAULT_REGIONS;

/// What a client sent in its CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

/// Who a client claims to be, before any secret is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// Tencent: `{productId}{deviceName}` with no separator; the caller, which knows the product
    /// ids, splits it.
    Tencent { client_id: String },
    /// A `{device}&{product}` username (Aliyun `dn&pk`, EnOS `dk&pk`).
    Keyed { product: String, device: String },
}

/// Why a CONNECT was refused (map to CONNACK 4 or 5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no username")]
    MissingUsername,
    #[error("no password")]
    MissingPassword,
    #[error("username {0:?} is neither `clientId;sdkappid;connid;expiry` nor `device&product`")]
    BadUsername(String),
    #[error("username names {claimed}, not the device {expected}")]
    WrongDevice { claimed: String, expected: String },
    #[error("client id {0:?} is not of the form `id|key=value,...|`")]
    BadClientId(String),
    #[error("client id lacks the {0} parameter")]
    MissingParam(&'static str),
    #[error("unsupported sign method {0:?}")]
    UnsupportedSignMethod(String),
    #[error("unsupported securemode {0:?}")]
    UnsupportedSecureMode(String),
    #[error("password is not text")]
    BadPassword,
    #[error("password does not match the device secret")]
    BadSignature,
}

/// Reads the claimed identity from the username (no secret involved).
pub fn parse_login(c: &Credentials) -> Result<Login, AuthError> {
    let user = c.username.as_deref().ok_or(AuthError::MissingUsername)?;
    if let Some((first, _)) = user.split_once(';') {
        if first.is_empty() || first != c.client_id {
            return Err(AuthError::WrongDevice {
                claimed: first.to_owned(),
                expected: c.client_id.clone(),
            });
        }
        return Ok(Login::Tencent {
            client_id: c.client_id.clone(),
        });
    }
    match user.split_once('&') {
        Some((device, product))
            if !device.is_empty() && !product.is_empty() && !product.contains('&') =>
        {
            Ok(Login::Keyed {
                product: product.to_owned(),
                device: device.to_owned(),
            })
        }
        _ => Err(AuthError::BadUsername(user.to_owned())),
    }
}

/// Checks the credentials of `dev` against its secret; Aliyun region ids come from
/// [`DEFAULT_REGIONS`].
pub fn verify(
    d: Dialect,
    dev: &DeviceAddr,
    secret: &str,
    c: &Credentials,
) -> Result<(), AuthError> {
    verify_with_regions(d, dev, secret, c, DEFAULT_REGIONS)
}

/// [`verify`] with the Aliyun region ids to accept in signed content (ignored by the other
/// dialects).
pub fn verify_with_regions(
    d: Dialect,
    dev: &DeviceAddr,
    secret: &str,
    c: &Credentials,
    regions: &[&str],
) -> Result<(), AuthError> {
    match d {
        Dialect::Tencent => tencent::verify(dev, secret, c),
        Dialect::Aliyun => aliyun::verify(dev, secret, c, regions),
        Dialect::Enos => enos::verify(dev, secret, c),
    }
}

/// The credentials a well-behaved SDK device sends at `timestamp_ms` (Tencent HMAC-SHA256,
/// Aliyun `hmacsha256`, EnOS `hmacsha256`, i.e. plain SHA-256).
pub fn sign(d: Dialect, dev: &DeviceAddr, secret: &str, timestamp_ms: u64) -> Credentials {
    match d {
        Dialect::Tencent => tencent::sign(dev, secret, timestamp_ms),
        Dialect::Aliyun => aliyun::sign(dev, secret, timestamp_ms),
        Dialect::Enos => enos::sign(dev, secret, timestamp_ms),
    }
}

/// A device secret in the dialect's usual format, from caller-supplied random bytes (pass 16):
/// Tencent base64 of all bytes; Aliyun/EnOS lowercase hex of the first 16 bytes (32 chars).
pub fn generate_secret_format(d: Dialect, random_bytes: &[u8]) -> String {
    use base64::Engine;
    match d {
        Dialect::Tencent => base64::engine::general_purpose::STANDARD.encode(random_bytes),
        Dialect::Aliyun | Dialect::Enos => {
            hex::encode(random_bytes.get(..16).unwrap_or(random_bytes))
        }
    }
}

/// Hash functions the dialects sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Md5,
    Sha1,
    Sha256,
}

/// Lowercase hex HMAC. HMAC accepts keys of any length, so the error branch is unreachable;
/// it yields an empty string, which never matches a password.
fn hmac_hex(h: Hash, key: &[u8], msg: &[u8]) -> String {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> String {
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(msg);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }
    match h {
        Hash::Md5 => run::<Hmac<Md5>>(key, msg),
        Hash::Sha1 => run::<Hmac<Sha1>>(key, msg),
        Hash::Sha256 => run::<Hmac<Sha256>>(key, msg),
    }
}

/// Lowercase hex of a plain digest.
fn digest_hex(h: Hash, msg: &[u8]) -> String {
    match h {
        Hash::Md5 => hex::encode(Md5::digest(msg)),
        Hash::Sha1 => hex::encode(Sha1::digest(msg)),
        Hash::Sha256 => hex::encode(Sha256::digest(msg)),
    }
}

/// Constant-time, case-insensitive comparison of a hex password with a lowercase hex digest.
fn hex_matches(given: &str, expected_lower: &str) -> bool {
    !expected_lower.is_empty()
        && bool::from(
            given
                .to_ascii_lowercase()
                .as_bytes()
                .ct_eq(expected_lower.as_bytes()),
        )
}

/// The password as text.
fn password(c: &Credentials) -> Result<&str, AuthError> {
    let raw = c.password.as_deref().ok_or(AuthError::MissingPassword)?;
    std::str::from_utf8(raw).map_err(|_| AuthError::BadPassword)
}

/// The `{device}&{product}` username of Aliyun and EnOS, checked against `dev`.
fn keyed_login(dev: &DeviceAddr, c: &Credentials) -> Result<(), AuthError> {
    match parse_login(c)? {
        Login::Keyed { product, device } if product == dev.product && device == dev.device => {
            Ok(())
        }
        Login::Keyed { product, device } => Err(AuthError::WrongDevice {
            claimed: format!("{product}/{device}"),
            expected: dev.to_string(),
        }),
        Login::Tencent { .. } => Err(AuthError::BadUsername(
            c.username.clone().unwrap_or_default(),
        )),
    }
}

/// A client id of the form `{id}|k=v,k=v|` (Aliyun and EnOS): the id and its parameters.
struct ClientId<'a> {
    id: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> ClientId<'a> {
    fn parse(client_id: &'a str) -> Result<Self, AuthError> {
        let bad = || AuthError::BadClientId(client_id.to_owned());
        let (id, rest) = client_id.split_once('|').ok_or_else(bad)?;
        let body = rest.strip_suffix('|').ok_or_else(bad)?;
        let params = body
            .split(',')
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').map(|(k, v)| (k.trim(), v.trim())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        Ok(ClientId { id, params })
    }

    /// A parameter by case-insensitive name.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests;
