//! Signed firmware on the server side (docs/signing.md): checking offline signature documents
//! and key announcements against a product's registered public keys, signing at upload with a
//! key kept in `--signing-key-dir` (never in the database), and the push extension's key
//! rotation chain. The signed texts themselves are `otter-protocol`'s.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use otter_core::ProductId;
use otter_protocol::{
    KeyAnnouncement, SIGNED_MESSAGE_TAG, SignatureDoc, SignedRelease, announcement_message,
    key_base64, key_id, parse_private_key,
};
use otter_store::ProductKey;
use std::path::Path;

/// Default validity of a signature made on the server at upload.
pub const DEFAULT_VALIDITY_SECS: u64 = 365 * 24 * 3600;

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn verifying_key(k: &ProductKey) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = STANDARD
        .decode(&k.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("stored key {} is not 32 bytes of base64", k.key_id))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("stored key {}: {e}", k.key_id))
}

fn signature(text: &str) -> Result<Signature, String> {
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| "the signature is not base64 of 64 bytes".to_owned())
}

/// Checks a signature document against the product's registered keys: the right format, a
/// registered key, a verifying signature, not yet expired.
pub fn check_doc(keys: &[ProductKey], doc: &SignatureDoc, now: u64) -> Result<(), String> {
    if doc.format != SIGNED_MESSAGE_TAG {
        return Err(format!(
            "unknown signature format {:?} (expected {SIGNED_MESSAGE_TAG})",
            doc.format
        ));
    }
    let key = keys.iter().find(|k| k.key_id == doc.key).ok_or_else(|| {
        format!(
            "key {} is not a registered signing key of {} (see `otter product key add`)",
            doc.key, doc.release.product
        )
    })?;
    let message = doc.release.message().map_err(|e| e.to_string())?;
    verifying_key(key)?
        .verify_strict(message.as_bytes(), &signature(&doc.sig)?)
        .map_err(|_| format!("the signature does not verify with key {}", doc.key))?;
    if doc.release.expires < now {
        return Err(format!("the signature expired at {}", doc.release.expires));
    }
    if doc.release.expires <= doc.release.issued {
        return Err("the signature expires before it was issued".into());
    }
    Ok(())
}

/// Checks that `signed_by` (a registered key of `product`) signed the announcement of `new`.
pub fn check_announcement(
    keys: &[ProductKey],
    product: &str,
    new: &[u8; 32],
    signed_by: &str,
    sig: &str,
) -> Result<(), String> {
    let signer = keys
        .iter()
        .find(|k| k.key_id == signed_by)
        .ok_or_else(|| format!("key {signed_by} is not a registered signing key of {product}"))?;
    let message = announcement_message(product, new).map_err(|e| e.to_string())?;
    verifying_key(signer)?
        .verify_strict(message.as_bytes(), &signature(sig)?)
        .map_err(|_| format!("the announcement does not verify with key {signed_by}"))
}

/// The announcements leading to `signer` from the product's first key, oldest first; empty
/// when `signer` is a first key. Only what a device needs to trust `signer` is sent.
pub fn rotation_chain(keys: &[ProductKey], signer: &str) -> Vec<KeyAnnouncement> {
    let mut chain = vec![];
    let mut at = signer;
    while let Some(k) = keys.iter().find(|k| k.key_id == at) {
        let (Some(by), Some(sig)) = (&k.signed_by, &k.announcement) else {
            break;
        };
        if chain.len() >= otter_protocol::MAX_ROTATION {
            tracing::warn!(
                key = signer,
                "key rotation chain too long; devices must be given a newer key"
            );
            break;
        }
        chain.push(KeyAnnouncement {
            key: k.public_key.clone(),
            signed_by: by.clone(),
            sig: sig.clone(),
        });
        at = by;
    }
    chain.reverse();
    chain
}

/// The server's signing key of `product` in `dir` (`{product}.pem` or `{product}.key`:
/// PKCS#8 PEM, hex or base64 seed), if there is one.
pub fn load_key(dir: &Path, product: &ProductId) -> Result<Option<SigningKey>, String> {
    for ext in ["pem", "key"] {
        let path = dir.join(format!("{product}.{ext}"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let seed = parse_private_key(&text)
                    .map_err(|e| format!("signing key {}: {e}", path.display()))?;
                return Ok(Some(SigningKey::from_bytes(&seed)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(None)
}

/// Signs a release with `key`.
pub fn sign(key: &SigningKey, release: SignedRelease) -> Result<SignatureDoc, String> {
    let message = release.message().map_err(|e| e.to_string())?;
    Ok(SignatureDoc {
        format: SIGNED_MESSAGE_TAG.into(),
        key: key_id(&key.verifying_key().to_bytes()),
        sig: STANDARD.encode(key.sign(message.as_bytes()).to_bytes()),
        release,
    })
}

/// Base64 of a signing key's public half (how product keys are stored).
pub fn public_base64(key: &SigningKey) -> String {
    key_base64(&key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(product: &str, key: &SigningKey, by: Option<(&SigningKey, String)>) -> ProductKey {
        let pk = key.verifying_key().to_bytes();
        ProductKey {
            product: ProductId::parse(product).unwrap(),
            key_id: key_id(&pk),
            public_key: key_base64(&pk),
            signed_by: by
                .as_ref()
                .map(|(k, _)| key_id(&k.verifying_key().to_bytes())),
            announcement: by.map(|(_, s)| s),
            created_at: 0.into(),
        }
    }

    fn announce(old: &SigningKey, new: &SigningKey) -> String {
        let msg = announcement_message("P", &new.verifying_key().to_bytes()).unwrap();
        STANDARD.encode(old.sign(msg.as_bytes()).to_bytes())
    }

    #[test]
    fn docs_and_chains() {
        let (a, b, c) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
        );
        let keys = vec![
            stored("P", &a, None),
            stored("P", &b, Some((&a, announce(&a, &b)))),
            stored("P", &c, Some((&b, announce(&b, &c)))),
        ];
        let chain = rotation_chain(&keys, &keys[2].key_id);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].signed_by, keys[0].key_id);
        assert!(rotation_chain(&keys, &keys[0].key_id).is_empty());
        let cb = c.verifying_key().to_bytes();
        let ok = check_announcement(&keys, "P", &cb, &keys[1].key_id, &announce(&b, &c));
        assert_eq!(ok, Ok(()));
        assert!(check_announcement(&keys, "P", &cb, &keys[0].key_id, &announce(&b, &c)).is_err());
        let release = SignedRelease {
            product: "P".into(),
            module: "default".into(),
            version: "1".into(),
            size: 1,
            sha256: "ab".into(),
            issued: 10,
            expires: 20,
            downgrade: false,
        };
        let doc = sign(&c, release).unwrap();
        assert_eq!(check_doc(&keys, &doc, 15), Ok(()));
        assert!(check_doc(&keys, &doc, 21).unwrap_err().contains("expired"));
        let mut bad = doc.clone();
        bad.release.size = 2;
        assert!(
            check_doc(&keys, &bad, 15)
                .unwrap_err()
                .contains("does not verify")
        );
        assert!(
            check_doc(&keys[..1], &doc, 15)
                .unwrap_err()
                .contains("not a registered")
        );
    }
}
