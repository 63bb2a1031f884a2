//! Offline signing on an operator's machine (docs/signing.md): key generation, firmware
//! signature documents and key announcements. Private keys never leave this process; the
//! server only ever gets signatures and public keys.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use otter_protocol::{
    SIGNED_MESSAGE_TAG, SignatureDoc, SignedRelease, announcement_message, key_id,
    parse_private_key, parse_public_key_text,
};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// A fresh private key (32 random bytes from the OS-seeded CSPRNG).
pub fn generate() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// Reads a private key file: PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), hex or base64.
pub fn load_private(path: &Path) -> Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = parse_private_key(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{} is not an ed25519 private key", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key given as a file (public PEM, or a private key whose public half is taken) or
/// as text (PEM, hex or base64).
pub fn read_public(arg: &str) -> Result<[u8; 32]> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?
    } else {
        arg.to_owned()
    };
    if text.contains("BEGIN PRIVATE KEY") {
        let seed = parse_private_key(&text).map_err(anyhow::Error::msg)?;
        return Ok(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
    }
    parse_public_key_text(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{arg:?} is not an ed25519 public key"))
}

/// Size and lowercase hex SHA-256 of a file, read in chunks.
pub fn digest_file(path: &Path) -> Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Signs a release.
pub fn sign(key: &SigningKey, release: SignedRelease) -> Result<SignatureDoc> {
    let message = release.message()?;
    Ok(SignatureDoc {
        format: SIGNED_MESSAGE_TAG.into(),
        key: key_id(&key.verifying_key().to_bytes()),
        sig: STANDARD.encode(key.sign(message.as_bytes()).to_bytes()),
        release,
    })
}

/// `old`'s announcement of `new` as a key of `product`: (signer's key id, base64 signature).
pub fn announce(old: &SigningKey, product: &str, new: &[u8; 32]) -> Result<(String, String)> {
    let message = announcement_message(product, new)?;
    Ok((
        key_id(&old.verifying_key().to_bytes()),
        STANDARD.encode(old.sign(message.as_bytes()).to_bytes()),
    ))
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A validity such as `90d`, `12h`, `30m`, `2w` or plain seconds.
pub fn parse_validity(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("bad validity {text:?}: expected e.g. 90d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("bad validity unit in {text:?}: use s, m, h, d or w"),
    };
    n.checked_mul(scale).context("validity too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validities() {
        assert_eq!(parse_validity("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_validity("45").unwrap(), 45);
        assert_eq!(parse_validity("2w").unwrap(), 14 * 86_400);
        assert!(parse_validity("3y").is_err());
        assert!(parse_validity("d").is_err());
    }

    #[test]
    fn public_keys_come_from_files_or_text() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let pk = key.verifying_key().to_bytes();
        let private = dir.path().join("k.pem");
        std::fs::write(&private, otter_protocol::private_key_pem(&[5; 32])).unwrap();
        assert_eq!(read_public(private.to_str().unwrap()).unwrap(), pk);
        assert_eq!(read_public(&otter_protocol::key_base64(&pk)).unwrap(), pk);
        assert_eq!(load_private(&private).unwrap().to_bytes(), [5; 32]);
    }
}
