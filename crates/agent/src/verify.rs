//! Checks that an offer comes from us, is current and moves forward, before anything is
//! downloaded or installed: the ed25519 signature of Otter's offer extension
//! (`docs/protocol-extensions.md`) against the trusted keys (configured, plus keys announced
//! by them), its expiry, its freshness (never older than a signature already accepted: no
//! replay of old releases) and the anti-rollback rule (a lower version only when the signed
//! release allows a downgrade). The download then proves the file matches the signed
//! SHA-256, so a verified image is one the key holder released for this product.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use otter_protocol::{
    KeyAnnouncement, Offer, OfferExt, SignedRelease, announcement_message, key_id,
    parse_public_key_text,
};

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
    #[error("the signed offer carries no issue or expiry time")]
    NoFreshness,
    #[error("no trusted key has id {0:?}")]
    UnknownKey(String),
    #[error("the signature is not valid base64 ed25519")]
    Malformed,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("a key announcement does not verify: {0}")]
    BadAnnouncement(String),
    #[error("the signature expired at {expires} (now {now})")]
    Expired { expires: u64, now: u64 },
    #[error("the signature was issued at {issued}, before {seen} already accepted (replay)")]
    Stale { issued: u64, seen: u64 },
    #[error("{offered} is lower than the running {current} and the release allows no downgrade")]
    Downgrade { offered: String, current: String },
    #[error("the offer cannot be signed: {0}")]
    Unsignable(String),
    #[error("the offer extension is unreadable: {0}")]
    BadExtension(String),
}

/// Parses a public key given as SPKI PEM, or standard base64 or hex of its 32 raw bytes.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let key = parse_public_key_text(text).map_err(|e| format!("{:?}: {e}", text.trim()))?;
    VerifyingKey::from_bytes(&key)
        .map_err(|e| format!("{:?} is not an ed25519 key: {e}", text.trim()))?;
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

/// What the agent trusts and has seen; shared by the upgrades and persisted in the state dir.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trust {
    /// Configured keys, then announced ones.
    pub keys: Vec<TrustedKey>,
    /// The announcements accepted so far, in order (persisted; re-verified at start).
    pub learned: Vec<KeyAnnouncement>,
    /// Highest `issued` accepted, by module.
    pub issued: BTreeMap<String, u64>,
}

impl Trust {
    /// Configured keys extended by `learned` announcements that still verify against them.
    pub(crate) fn new(
        product: &str,
        keys: Vec<TrustedKey>,
        learned: Vec<KeyAnnouncement>,
        issued: BTreeMap<String, u64>,
    ) -> Trust {
        let mut trust = Trust {
            keys,
            learned: vec![],
            issued,
        };
        for a in learned {
            match accept_announcement(&trust.keys, product, &a) {
                Ok(Some(key)) => {
                    trust.keys.push(key);
                    trust.learned.push(a);
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(%why, key = %a.key, "dropping a stored key announcement")
                }
            }
        }
        trust
    }
}

/// What a successful check found.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The offer to download (with the extension's SHA-256 folded in).
    pub offer: Offer,
    /// Keys announced by this offer and now trusted (to persist).
    pub learned: Vec<(KeyAnnouncement, TrustedKey)>,
    /// The signature's issue time (to remember as the newest seen), when signed.
    pub issued: Option<u64>,
}

/// Folds the extension's SHA-256 into the offer (dialects without one in their push) and, when
/// keys are configured, checks rotation, signature, expiry, freshness and downgrade.
pub(crate) fn check(
    trust: &Trust,
    product: &str,
    current: &str,
    now: u64,
    mut offer: Offer,
    ext: Result<Option<OfferExt>, String>,
) -> Result<Verified, Refused> {
    let ext = ext.map_err(Refused::BadExtension)?.unwrap_or_default();
    if let Some(sha) = &ext.sha256 {
        if offer.sha256.is_empty() {
            offer.sha256 = sha.clone();
        } else if !offer.sha256.eq_ignore_ascii_case(sha) {
            return Err(Refused::Sha256Conflict(offer.sha256, sha.clone()));
        }
    }
    if trust.keys.is_empty() {
        if ext.sig.is_some() {
            tracing::debug!("the offer is signed but no keys are configured; not checked");
        }
        return Ok(Verified {
            offer,
            learned: vec![],
            issued: None,
        });
    }
    let sig = ext.sig.as_deref().ok_or(Refused::Unsigned)?;
    if offer.sha256.is_empty() {
        return Err(Refused::NoSha256);
    }
    let release = SignedRelease::of_offer(product, &offer, &ext).ok_or(Refused::NoFreshness)?;
    let message = release
        .message()
        .map_err(|e| Refused::Unsignable(e.to_string()))?;
    let sig = STANDARD
        .decode(sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(Refused::Malformed)?;
    let (keys, learned) = with_rotation(&trust.keys, product, &ext.rotation)?;
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
    if !candidates
        .iter()
        .any(|k| k.key.verify_strict(message.as_bytes(), &sig).is_ok())
    {
        return Err(Refused::BadSignature);
    }
    fresh(trust, &release, current, now)?;
    Ok(Verified {
        offer,
        learned,
        issued: Some(release.issued),
    })
}

/// Expiry, replay and rollback rules for a release whose signature verified.
fn fresh(trust: &Trust, r: &SignedRelease, current: &str, now: u64) -> Result<(), Refused> {
    if r.expires < now {
        return Err(Refused::Expired {
            expires: r.expires,
            now,
        });
    }
    if let Some(&seen) = trust.issued.get(&r.module).filter(|&&seen| r.issued < seen) {
        return Err(Refused::Stale {
            issued: r.issued,
            seen,
        });
    }
    if !r.downgrade && otter_core::is_downgrade(current, &r.version) {
        return Err(Refused::Downgrade {
            offered: r.version.clone(),
            current: current.to_owned(),
        });
    }
    Ok(())
}

/// The trusted keys extended by the offer's announcements (each must be signed by a key
/// trusted by then), and the newly learned ones. A forged announcement refuses the offer.
#[allow(clippy::type_complexity)]
fn with_rotation(
    keys: &[TrustedKey],
    product: &str,
    rotation: &[KeyAnnouncement],
) -> Result<(Vec<TrustedKey>, Vec<(KeyAnnouncement, TrustedKey)>), Refused> {
    let mut keys = keys.to_vec();
    let mut learned = vec![];
    for a in rotation {
        if let Some(key) =
            accept_announcement(&keys, product, a).map_err(Refused::BadAnnouncement)?
        {
            keys.push(key.clone());
            learned.push((a.clone(), key));
        }
    }
    Ok((keys, learned))
}

/// The key an announcement introduces: `None` when it is already trusted, an error when the
/// announcement is not signed by a trusted key.
fn accept_announcement(
    keys: &[TrustedKey],
    product: &str,
    a: &KeyAnnouncement,
) -> Result<Option<TrustedKey>, String> {
    let new = parse_public_key(&a.key)?;
    let id = key_id(&new);
    if keys.iter().any(|k| k.id == id) {
        return Ok(None);
    }
    let signer = keys.iter().find(|k| k.id == a.signed_by).ok_or_else(|| {
        format!(
            "key {id} is announced by {}, which is not trusted",
            a.signed_by
        )
    })?;
    let message = announcement_message(product, &new).map_err(|e| e.to_string())?;
    let sig = STANDARD
        .decode(&a.sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| format!("the announcement of key {id} has a malformed signature"))?;
    signer
        .key
        .verify_strict(message.as_bytes(), &sig)
        .map_err(|_| format!("the announcement of key {id} does not verify"))?;
    let key = VerifyingKey::from_bytes(&new).map_err(|e| e.to_string())?;
    Ok(Some(TrustedKey { id, key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use otter_protocol::key_base64;

    const NOW: u64 = 1_750_000_000;

    fn offer(version: &str) -> Offer {
        Offer {
            module: "default".into(),
            version: version.into(),
            url: "http://x".into(),
            size: 5,
            md5: "m".into(),
            sha256: String::new(),
        }
    }

    fn release(product: &str, version: &str, issued: u64) -> SignedRelease {
        SignedRelease {
            product: product.into(),
            module: "default".into(),
            version: version.into(),
            size: 5,
            sha256: "ab".repeat(32),
            issued,
            expires: NOW + 100,
            downgrade: false,
        }
    }

    fn signed_release(key: &SigningKey, r: &SignedRelease) -> OfferExt {
        let msg = r.message().unwrap();
        OfferExt {
            sha256: Some(r.sha256.clone()),
            sig: Some(STANDARD.encode(key.sign(msg.as_bytes()).to_bytes())),
            key: Some(key_id(&key.verifying_key().to_bytes())),
            issued: Some(r.issued),
            expires: Some(r.expires),
            downgrade: r.downgrade,
            rotation: vec![],
        }
    }

    fn signed(key: &SigningKey, product: &str) -> OfferExt {
        signed_release(key, &release(product, "2", NOW))
    }

    fn trust(keys: &[&SigningKey]) -> Trust {
        let keys: Vec<_> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
        Trust::new("P", trusted_keys(&keys).unwrap(), vec![], BTreeMap::new())
    }

    fn announce(old: &SigningKey, new: &SigningKey) -> KeyAnnouncement {
        let pk = new.verifying_key().to_bytes();
        let msg = announcement_message("P", &pk).unwrap();
        KeyAnnouncement {
            key: key_base64(&pk),
            signed_by: key_id(&old.verifying_key().to_bytes()),
            sig: STANDARD.encode(old.sign(msg.as_bytes()).to_bytes()),
        }
    }

    fn run(t: &Trust, current: &str, o: Offer, ext: OfferExt) -> Result<Verified, Refused> {
        check(t, "P", current, NOW, o, Ok(Some(ext)))
    }

    #[test]
    fn signatures_bind_the_offer() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let keys = trust(&[&key]);
        let sha = "ab".repeat(32);
        let ok = run(&keys, "1", offer("2"), signed(&key, "P")).unwrap();
        assert_eq!(ok.offer.sha256, sha);
        assert_eq!(ok.issued, Some(NOW));
        let cases = [
            (Ok(None), Refused::Unsigned),
            (Ok(Some(signed(&key, "Q"))), Refused::BadSignature),
            (
                Ok(Some(OfferExt {
                    key: None,
                    ..signed(&other, "P")
                })),
                Refused::BadSignature,
            ),
            (
                Ok(Some(signed(&other, "P"))),
                Refused::UnknownKey(key_id(&other.verifying_key().to_bytes())),
            ),
            (
                Ok(Some(OfferExt {
                    sig: Some("!!".into()),
                    ..signed(&key, "P")
                })),
                Refused::Malformed,
            ),
            (
                Ok(Some(OfferExt {
                    issued: None,
                    ..signed(&key, "P")
                })),
                Refused::NoFreshness,
            ),
            (
                // The expiry is signed: stretching it breaks the signature.
                Ok(Some(OfferExt {
                    expires: Some(NOW + 1000),
                    ..signed(&key, "P")
                })),
                Refused::BadSignature,
            ),
            (
                Ok(Some(OfferExt {
                    downgrade: true,
                    ..signed(&key, "P")
                })),
                Refused::BadSignature,
            ),
            (Err("x".into()), Refused::BadExtension("x".into())),
        ];
        for (ext, want) in cases {
            let got = check(&keys, "P", "1", NOW, offer("2"), ext).map(|v| v.offer);
            assert_eq!(got, Err(want));
        }
        // Without keys, a signature is not required, but the SHA-256 still rides along.
        let o = run(&trust(&[]), "1", offer("2"), signed(&other, "P")).unwrap();
        assert_eq!(o.offer.sha256, sha);
    }

    #[test]
    fn expired_replayed_and_downgrade_offers_are_refused() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let mut t = trust(&[&key]);
        let expired = SignedRelease {
            expires: NOW - 1,
            ..release("P", "2", NOW - 10)
        };
        assert!(matches!(
            run(&t, "1", offer("2"), signed_release(&key, &expired)),
            Err(Refused::Expired { .. })
        ));
        t.issued.insert("default".into(), NOW);
        let old = release("P", "2", NOW - 1);
        assert_eq!(
            run(&t, "1", offer("2"), signed_release(&key, &old)).map(|v| v.issued),
            Err(Refused::Stale {
                issued: NOW - 1,
                seen: NOW
            })
        );
        // The same signature again (a retry) is not a replay.
        assert!(
            run(
                &t,
                "1",
                offer("2"),
                signed_release(&key, &release("P", "2", NOW))
            )
            .is_ok()
        );
        // 1.10.0 > 1.9.0 (semver-aware): going to 1.9.0 is a downgrade.
        let down = release("P", "1.9.0", NOW);
        assert!(matches!(
            run(&t, "1.10.0", offer("1.9.0"), signed_release(&key, &down)),
            Err(Refused::Downgrade { .. })
        ));
        let allowed = SignedRelease {
            downgrade: true,
            ..down
        };
        assert!(run(&t, "1.10.0", offer("1.9.0"), signed_release(&key, &allowed)).is_ok());
    }

    #[test]
    fn announced_keys_are_trusted_and_forged_announcements_refused() {
        let old = SigningKey::from_bytes(&[1u8; 32]);
        let new = SigningKey::from_bytes(&[2u8; 32]);
        let newer = SigningKey::from_bytes(&[3u8; 32]);
        let t = trust(&[&old]);
        let by_new = signed(&new, "P");
        assert!(matches!(
            run(&t, "1", offer("2"), by_new.clone()),
            Err(Refused::UnknownKey(_))
        ));
        let chain = vec![announce(&old, &new), announce(&new, &newer)];
        let ext = OfferExt {
            rotation: chain.clone(),
            ..signed(&newer, "P")
        };
        let v = run(&t, "1", offer("2"), ext).unwrap();
        assert_eq!(v.learned.len(), 2);
        // An announcement signed by an untrusted key, or with a bad signature, refuses.
        let forged = OfferExt {
            rotation: vec![announce(&newer, &new)],
            ..signed(&new, "P")
        };
        assert!(matches!(
            run(&t, "1", offer("2"), forged),
            Err(Refused::BadAnnouncement(_))
        ));
        let mut bad = announce(&old, &new);
        bad.sig = announce(&old, &newer).sig;
        let forged = OfferExt {
            rotation: vec![bad],
            ..by_new
        };
        assert!(matches!(
            run(&t, "1", offer("2"), forged),
            Err(Refused::BadAnnouncement(_))
        ));
        // Stored announcements are re-verified at start against the configured keys.
        let keys = trusted_keys(&[old.verifying_key().to_bytes()]).unwrap();
        let restored = Trust::new("P", keys.clone(), chain.clone(), BTreeMap::new());
        assert_eq!(restored.keys.len(), 3);
        let other = trusted_keys(&[newer.verifying_key().to_bytes()]).unwrap();
        let restored = Trust::new("P", other, chain, BTreeMap::new());
        assert_eq!(
            restored.keys.len(),
            1,
            "announcements from an untrusted root drop"
        );
    }

    #[test]
    fn public_keys_parse_from_pem_hex_or_base64() {
        let pk = SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(parse_public_key(&hex::encode(pk)).unwrap(), pk);
        assert_eq!(parse_public_key(&STANDARD.encode(pk)).unwrap(), pk);
        assert_eq!(
            parse_public_key(&otter_protocol::public_key_pem(&pk)).unwrap(),
            pk
        );
        assert!(parse_public_key("abcd").is_err());
    }
}
