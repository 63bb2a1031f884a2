//! Signed, expiring download URLs.
//!
//! A download URL is self-contained: it names the blob, the product and device it was issued for,
//! its expiry, and an HMAC over all of them, so any Otter node can check it without a database
//! lookup. The URL has no query string (some device SDKs mangle or drop queries) and stays short
//! (device SDKs keep URLs in small fixed buffers).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Path prefix of download URLs; the router serves `{DL_PREFIX}/{sha256}/{product}/{device}/{expires}/{sig}`.
pub const DL_PREFIX: &str = "/dl";

/// Bytes of the HMAC-SHA256 tag kept in the URL: 128 bits is ample against forgery and keeps the
/// URL short (22 base64url characters).
const TAG_LEN: usize = 16;
/// Separates this use of the key from any other use of the same secret.
const DOMAIN: &[u8] = b"otter-dl-v1";

/// Characters left unescaped in a path segment: RFC 3986 unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a download token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("download URL expired")]
    Expired,
    #[error("download URL signature does not match")]
    Forged,
}

/// Issues download URLs with the current key and checks them against it and, during their
/// grace period, against retired keys — so rotating the key breaks no link already handed out.
pub struct UrlSigner {
    /// HMAC state already keyed; cloned for each tag.
    mac: Hmac<Sha256>,
    /// Retired keys and the Unix time until which links signed with them are still accepted.
    retired: Vec<(Hmac<Sha256>, u64)>,
    public_url: String,
}

impl std::fmt::Debug for UrlSigner {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl UrlSigner {
    /// `public_url` is the base devices dial (e.g. `http://host:8080`), which may differ from the
    /// listen address (Tencent's SDK always dials port 80; a proxy or CDN may sit in front).
    pub fn new(key: &[u8], public_url: &str) -> Self {
        Self {
            mac: keyed(key),
            retired: Vec::new(),
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Also accepts links signed with a retired `key` until `until_unix` (its grace period: at
    /// least the longest link lifetime after the rotation).
    pub fn accept_retired(mut self, key: &[u8], until_unix: u64) -> Self {
        self.retired.push((keyed(key), until_unix));
        self
    }

    /// Full URL for downloading blob `sha256` by `device` of `product` until `expires_unix`.
    pub fn url(&self, sha256: &str, product: &str, device: &str, expires_unix: u64) -> String {
        format!(
            "{}{}",
            self.public_url,
            self.path(sha256, product, device, expires_unix)
        )
    }

    /// Path part of [`Self::url`] (what the router matches).
    pub fn path(&self, sha256: &str, product: &str, device: &str, expires_unix: u64) -> String {
        let sig = URL_SAFE_NO_PAD.encode(tag(&self.mac, sha256, product, device, expires_unix));
        format!(
            "{DL_PREFIX}/{}/{}/{}/{expires_unix}/{sig}",
            segment(sha256),
            segment(product),
            segment(device)
        )
    }

    /// Checks a token taken from a URL path (segments already percent-decoded).
    /// A bad signature is reported as [`TokenError::Forged`] even when the expiry has passed too,
    /// so only genuine tokens are ever reported as expired.
    pub fn verify(
        &self,
        sha256: &str,
        product: &str,
        device: &str,
        expires_unix: u64,
        sig: &str,
        now_unix: u64,
    ) -> Result<(), TokenError> {
        let given = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Forged)?;
        // ct_eq on slices of different lengths is false, in time independent of the contents.
        let matches = |mac: &Hmac<Sha256>| {
            let expected = tag(mac, sha256, product, device, expires_unix);
            bool::from(expected.as_slice().ct_eq(given.as_slice()))
        };
        let genuine = matches(&self.mac)
            || self
                .retired
                .iter()
                .any(|(mac, until)| now_unix < *until && matches(mac));
        if !genuine {
            return Err(TokenError::Forged);
        }
        if now_unix >= expires_unix {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long ones are hashed), so this never fails; the key
    // comes from the operator's configuration, not from the network.
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Truncated HMAC-SHA256 over the fields, each length-prefixed so no two field lists collide.
fn tag(
    mac: &Hmac<Sha256>,
    sha256: &str,
    product: &str,
    device: &str,
    expires_unix: u64,
) -> [u8; TAG_LEN] {
    let mut mac = mac.clone();
    mac.update(DOMAIN);
    for field in [sha256, product, device] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.update(&expires_unix.to_be_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG_LEN];
    tag.iter_mut().zip(full.iter()).for_each(|(t, f)| *t = *f);
    tag
}

/// Percent-encodes one path segment. Segments made only of dots are fully escaped, since clients
/// would otherwise resolve `.` and `..` as relative path steps.
fn segment(raw: &str) -> String {
    if !raw.is_empty() && raw.bytes().all(|b| b == b'.') {
        return "%2E".repeat(raw.len());
    }
    utf8_percent_encode(raw, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";

    fn sig_of(url: &str) -> &str {
        url.rsplit('/').next().unwrap_or_default()
    }

    #[test]
    fn url_is_short_and_path_only() {
        let s = UrlSigner::new(b"k", "http://otter.example.com:8080/");
        let url = s.url(SHA, "ABCDE12345", "dev-001", 1_900_000_000);
        assert!(url.starts_with("http://otter.example.com:8080/dl/"));
        assert!(!url.contains('?'));
        assert!(!url.contains("//dl"));
        assert!(url.len() < 200, "{} chars: {url}", url.len());
    }

    #[test]
    fn segments_are_escaped() {
        let s = UrlSigner::new(b"k", "http://h");
        let url = s.url(SHA, "p/x y", "..", 5);
        assert!(url.contains("/p%2Fx%20y/%2E%2E/5/"), "{url}");
    }

    #[test]
    fn verify_accepts_own_and_rejects_changes() {
        let s = UrlSigner::new(b"secret", "http://h");
        let url = s.url(SHA, "prod", "dev", 1000);
        let sig = sig_of(&url);
        assert_eq!(s.verify(SHA, "prod", "dev", 1000, sig, 999), Ok(()));
        assert_eq!(
            s.verify(SHA, "prod", "dev", 1000, sig, 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.verify(SHA, "prod", "dev2", 1000, sig, 999),
            Err(TokenError::Forged)
        );
        assert_eq!(
            s.verify(SHA, "prod", "dev", 1001, sig, 999),
            Err(TokenError::Forged)
        );
        // Shifting characters between fields must not keep the signature valid.
        assert_eq!(
            s.verify(SHA, "prodd", "ev", 1000, sig, 999),
            Err(TokenError::Forged)
        );
        let other = UrlSigner::new(b"other", "http://h");
        assert_eq!(
            other.verify(SHA, "prod", "dev", 1000, sig, 999),
            Err(TokenError::Forged)
        );
        for junk in ["", "!!!", "AAAA", &sig[..sig.len() - 1], &format!("{sig}A")] {
            assert_eq!(
                s.verify(SHA, "prod", "dev", 1000, junk, 999),
                Err(TokenError::Forged),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn retired_keys_work_only_during_their_grace() {
        let old = UrlSigner::new(b"old", "http://h");
        let sig_old = old.url(SHA, "p", "d", 5000);
        let rotated = UrlSigner::new(b"new", "http://h").accept_retired(b"old", 2000);
        let sig_new = rotated.url(SHA, "p", "d", 5000);
        assert_ne!(sig_old, sig_new, "new links use the new key");
        assert_eq!(
            rotated.verify(SHA, "p", "d", 5000, sig_of(&sig_new), 1999),
            Ok(())
        );
        assert_eq!(
            rotated.verify(SHA, "p", "d", 5000, sig_of(&sig_old), 1999),
            Ok(())
        );
        assert_eq!(
            rotated.verify(SHA, "p", "d", 5000, sig_of(&sig_old), 2000),
            Err(TokenError::Forged),
            "after the grace period the old key is gone"
        );
    }

    #[test]
    fn debug_hides_key() {
        let s = UrlSigner::new(b"supersecret", "http://h");
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
