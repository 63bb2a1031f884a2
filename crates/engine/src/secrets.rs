//! Device secrets at rest: sealed with a server key before they reach the database.
//!
//! The vendor login schemes are HMACs keyed with the device secret itself, so the server must be
//! able to recover it: hashing is not possible, encryption is. Each secret is sealed with
//! XChaCha20-Poly1305 under a key that lives outside the database (`<data-dir>/secret-key` or
//! `--secret-key-file`), with the product and device name as associated data, so a database dump
//! alone reveals no secret and a sealed value copied onto another device's row does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Prefix of a sealed value; anything without it is a secret stored before sealing existed.
pub const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("a stored secret is not valid base64")]
    Encoding,
    #[error("a stored secret does not open with this server's secret key")]
    WrongKey,
}

/// Seals and opens device secrets with one server key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

impl SecretBox {
    pub fn new(key: &[u8]) -> Result<Self, SecretError> {
        let cipher = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| SecretError::KeyLength(key.len()))?;
        Ok(Self { cipher })
    }

    /// The stored form of `secret` for device `product/device`.
    pub fn seal(&self, product: &str, device: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(product, device);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: &aad,
        };
        // Encryption into a Vec only fails for messages beyond the cipher's limit (256 GiB).
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The secret behind a stored value; unsealed legacy values are returned as they are.
    pub fn open(&self, product: &str, device: &str, stored: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Encoding)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Encoding);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Encoding)?;
        let aad = associated_data(product, device);
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::WrongKey)
    }
}

/// Binds a sealed value to its row: length-prefixed so no two (product, device) pairs collide.
fn associated_data(product: &str, device: &str) -> Vec<u8> {
    let mut aad = format!("otter-device-secret-v1:{}:", product.len()).into_bytes();
    aad.extend_from_slice(product.as_bytes());
    aad.push(b'/');
    aad.extend_from_slice(device.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(byte: u8) -> SecretBox {
        SecretBox::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_for_their_device_and_key() {
        let sealed = sb(1).seal("P1", "dev1", "s3cret==");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(sb(1).open("P1", "dev1", &sealed).unwrap(), "s3cret==");
        assert_eq!(
            sb(1).open("P1", "dev2", &sealed),
            Err(SecretError::WrongKey)
        );
        assert_eq!(
            sb(1).open("P", "1dev1", &sealed),
            Err(SecretError::WrongKey)
        );
        assert_eq!(
            sb(2).open("P1", "dev1", &sealed),
            Err(SecretError::WrongKey)
        );
    }

    #[test]
    fn sealing_twice_gives_different_values() {
        assert_ne!(sb(1).seal("P", "d", "x"), sb(1).seal("P", "d", "x"));
    }

    #[test]
    fn legacy_plain_values_and_garbage() {
        assert_eq!(sb(1).open("P", "d", "plain").unwrap(), "plain");
        let garbage = format!("{SEALED_PREFIX}!!!");
        assert_eq!(sb(1).open("P", "d", &garbage), Err(SecretError::Encoding));
        let short = format!("{SEALED_PREFIX}AAAA");
        assert_eq!(sb(1).open("P", "d", &short), Err(SecretError::Encoding));
        assert_eq!(
            SecretBox::new(&[0; 16]).err(),
            Some(SecretError::KeyLength(16))
        );
    }
}
