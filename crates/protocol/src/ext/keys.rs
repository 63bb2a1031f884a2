//! Key text formats (PKCS#8 / SPKI PEM, hex, base64) and key ids, so the CLI, the server and
//! the agent agree on them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The id of an ed25519 public key (its 32 raw bytes): the first 16 lowercase hex characters
/// of their SHA-256.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let mut id = hex::encode(Sha256::digest(public_key));
    id.truncate(16);
    id
}

/// DER prefix of an ed25519 private key in PKCS#8 v1 (RFC 8410), before the 32-byte seed.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A private key (32-byte seed) as PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes.
pub fn private_key_pem(seed: &[u8; 32]) -> String {
    pem("PRIVATE KEY", &[&PKCS8_PREFIX[..], seed].concat())
}

/// A public key as SubjectPublicKeyInfo PEM (`openssl pkey -pubout`).
pub fn public_key_pem(key: &[u8; 32]) -> String {
    pem("PUBLIC KEY", &[&SPKI_PREFIX[..], key].concat())
}

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

/// Reads a private key: PKCS#8 PEM (`BEGIN PRIVATE KEY`), or hex / standard base64 of the
/// 32-byte seed.
pub fn parse_private_key(text: &str) -> Result<[u8; 32], String> {
    key_bytes(text, "PRIVATE KEY", &PKCS8_PREFIX)
}

/// Reads a public key: SPKI PEM (`BEGIN PUBLIC KEY`), or hex / standard base64 of its 32
/// bytes. Whether the bytes are a valid curve point is for the caller's ed25519 library.
pub fn parse_public_key_text(text: &str) -> Result<[u8; 32], String> {
    key_bytes(text, "PUBLIC KEY", &SPKI_PREFIX)
}

fn key_bytes(text: &str, label: &str, prefix: &[u8]) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if let Some(body) = text.strip_prefix(&format!("-----BEGIN {label}-----")) {
        let body = body
            .split_once(&format!("-----END {label}-----"))
            .map(|(b, _)| b)
            .ok_or_else(|| format!("unterminated {label} PEM"))?;
        let body: String = body.split_whitespace().collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| format!("bad base64 in {label} PEM: {e}"))?;
        der.strip_prefix(prefix)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("the {label} PEM is not an ed25519 key"))?
    } else if text.starts_with("-----BEGIN") {
        return Err(format!("expected a {label} PEM"));
    } else {
        hex::decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| STANDARD.decode(text).ok())
            .ok_or_else(|| "neither PEM, hex nor base64".to_owned())?
    };
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("an ed25519 key is 32 bytes, not {}", b.len()))
}

/// Standard base64 of 32 key bytes (the form announcements carry).
pub fn key_base64(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}
