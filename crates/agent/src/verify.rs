//! Checks that an offer comes from us before anything is downloaded or installed: the ed25519
//! signature of Otter's offer extension (`docs/protocol-extensions.md`) against the trusted
//! public keys of the agent's configuration. The download then proves the file matches the
//! signed SHA-256, so a verified image is one the key holder released for this product.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use otter_protocol::{Offer, OfferExt, key_id, signed_message};

/// A public key the agent trusts, with its id.
#[derive(Clone, Debug)]
pub(crate) struct TrustedKey {
    id: String,
    key: VerifyingKey,
}

/// Why an offer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Refused {
    #[error("the offer is not signed and signatures are required")]
    Unsigned,
    #[error("the offer carries no SHA-256 for its signature to bind")]
    NoSha256,
    #[error("the offer's SHA-256 values disagree ({0} vs {1})")]
    Sha256Conflict(String, String),
    #[error("no trusted key has id {0:?}")]
    UnknownKey(String),
    #[error("the signature is not valid base64 ed25519")]
    Malformed,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the offer cannot be signed: {0}")]
    Unsignable(String),
    #[error("the offer extension is unreadable: {0}")]
    BadExtension(String),
}

/// Parses a public key given as standard base64 or hex of its 32 raw bytes.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| STANDARD.decode(text).ok())
        .ok_or_else(|| format!("{text:?} is neither hex nor base64"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{text:?} is not 32 bytes"))?;
    VerifyingKey::from_bytes(&key).map_err(|e| format!("{text:?} is not an ed25519 key: {e}"))?;
    Ok(key)
}

pub(crate) fn trusted_keys(keys: &[[u8; 32]]) -> Result<Vec<TrustedKey>, String> {
    keys.iter()
        .map(|k| {
            let key = VerifyingKey::from_bytes(k).map_err(|e| format!("bad trusted key: {e}"))?;
            Ok(TrustedKey { id: key_id(k), key })
        })
        .collect()
}

/// Folds the extension's SHA-256 into the offer (dialects without one in their push) and, when
/// keys are configured, checks the signature. Returns the offer to download.
pub(crate) fn check(
    keys: &[TrustedKey],
    product: &str,
    mut offer: Offer,
    ext: Result<Option<OfferExt>, String>,
) -> Result<Offer, Refused> {
    let ext = ext.map_err(Refused::BadExtension)?.unwrap_or_default();
    if let Some(sha) = &ext.sha256 {
        if offer.sha256.is_empty() {
            offer.sha256 = sha.clone();
        } else if !offer.sha256.eq_ignore_ascii_case(sha) {
            return Err(Refused::Sha256Conflict(offer.sha256, sha.clone()));
        }
    }
    if keys.is_empty() {
        if ext.sig.is_some() {
            tracing::debug!("the offer is signed but no keys are configured; not checked");
        }
        return Ok(offer);
    }
    let sig = ext.sig.as_deref().ok_or(Refused::Unsigned)?;
    if offer.sha256.is_empty() {
        return Err(Refused::NoSha256);
    }
    let message = signed_message(
        product,
        &offer.module,
        &offer.version,
        offer.size,
        &offer.sha256,
    )
    .map_err(|e| Refused::Unsignable(e.to_string()))?;
    let sig = STANDARD
        .decode(sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(Refused::Malformed)?;
    let candidates: Vec<&TrustedKey> = match &ext.key {
        Some(id) => {
            let k: Vec<_> = keys.iter().filter(|k| k.id == *id).collect();
            if k.is_empty() {
                return Err(Refused::UnknownKey(id.clone()));
            }
            k
        }
        None => keys.iter().collect(),
    };
    if candidates
        .iter()
        .any(|k| k.key.verify_strict(message.as_bytes(), &sig).is_ok())
    {
        Ok(offer)
    } else {
        Err(Refused::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn offer() -> Offer {
        Offer {
            module: "default".into(),
            version: "2".into(),
            url: "http://x".into(),
            size: 5,
            md5: "m".into(),
            sha256: String::new(),
        }
    }

    fn signed(key: &SigningKey, product: &str, sha: &str) -> OfferExt {
        let msg = signed_message(product, "default", "2", 5, sha).unwrap();
        OfferExt {
            sha256: Some(sha.into()),
            sig: Some(STANDARD.encode(key.sign(msg.as_bytes()).to_bytes())),
            key: Some(key_id(&key.verifying_key().to_bytes())),
        }
    }

    #[test]
    fn signatures_bind_the_offer() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let keys = trusted_keys(&[key.verifying_key().to_bytes()]).unwrap();
        let sha = "ab".repeat(32);
        let ok = check(&keys, "P", offer(), Ok(Some(signed(&key, "P", &sha)))).unwrap();
        assert_eq!(ok.sha256, sha);
        let cases = [
            (Ok(None), Refused::Unsigned),
            (Ok(Some(signed(&key, "Q", &sha))), Refused::BadSignature),
            (
                Ok(Some(OfferExt {
                    key: None,
                    ..signed(&other, "P", &sha)
                })),
                Refused::BadSignature,
            ),
            (
                Ok(Some(signed(&other, "P", &sha))),
                Refused::UnknownKey(key_id(&other.verifying_key().to_bytes())),
            ),
            (
                Ok(Some(OfferExt {
                    sig: Some("!!".into()),
                    ..signed(&key, "P", &sha)
                })),
                Refused::Malformed,
            ),
            (Err("x".into()), Refused::BadExtension("x".into())),
        ];
        for (ext, want) in cases {
            assert_eq!(check(&keys, "P", offer(), ext), Err(want));
        }
        // Without keys, a signature is not required, but the SHA-256 still rides along.
        let o = check(&[], "P", offer(), Ok(Some(signed(&other, "P", &sha)))).unwrap();
        assert_eq!(o.sha256, sha);
    }

    #[test]
    fn public_keys_parse_from_hex_or_base64() {
        let pk = SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(parse_public_key(&hex::encode(pk)).unwrap(), pk);
        assert_eq!(parse_public_key(&STANDARD.encode(pk)).unwrap(), pk);
        assert!(parse_public_key("abcd").is_err());
    }
}
