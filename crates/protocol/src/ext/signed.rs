//! The signed texts: what a firmware signature and a key announcement cover, byte for byte.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{KEY_ANNOUNCEMENT_TAG, OfferExt, SIGNED_MESSAGE_TAG};
use crate::downlink::Offer;
use crate::{ProtocolError, json};

/// Everything a firmware signature covers. Also the body of a signature document (see
/// [`SignatureDoc`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRelease {
    pub product: String,
    pub module: String,
    pub version: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the image.
    pub sha256: String,
    /// Unix seconds the signature was made.
    pub issued: u64,
    /// Unix seconds after which it is no longer valid.
    pub expires: u64,
    /// May be installed over a newer version.
    #[serde(default)]
    pub downgrade: bool,
}

impl SignedRelease {
    /// The release an offer and its extension describe; `None` when the extension lacks the
    /// issue or expiry time (an offer that cannot carry a v2 signature).
    pub fn of_offer(product: &str, offer: &Offer, ext: &OfferExt) -> Option<SignedRelease> {
        Some(SignedRelease {
            product: product.to_owned(),
            module: offer.module.clone(),
            version: offer.version.clone(),
            size: offer.size,
            sha256: offer.sha256.to_ascii_lowercase(),
            issued: ext.issued?,
            expires: ext.expires?,
            downgrade: ext.downgrade,
        })
    }

    /// The exact bytes an Otter firmware signature covers:
    ///
    /// ```text
    /// otter-firmware-signature-v2\nproduct:{product}\nmodule:{module}\nversion:{version}\nsize:{size}\nsha256:{sha256}\nissued:{issued}\nexpires:{expires}\ndowngrade:{yes|no}\n
    /// ```
    ///
    /// Refused (so no two releases share a text) when a value is empty or holds a control
    /// character.
    pub fn message(&self) -> Result<String, ProtocolError> {
        for (field, value) in [
            ("product", &self.product),
            ("module", &self.module),
            ("version", &self.version),
            ("sha256", &self.sha256),
        ] {
            check_text(field, value)?;
        }
        let SignedRelease {
            product,
            module,
            version,
            size,
            issued,
            expires,
            ..
        } = self;
        let sha256 = self.sha256.to_ascii_lowercase();
        let downgrade = if self.downgrade { "yes" } else { "no" };
        Ok(format!(
            "{SIGNED_MESSAGE_TAG}\nproduct:{product}\nmodule:{module}\nversion:{version}\nsize:{size}\nsha256:{sha256}\nissued:{issued}\nexpires:{expires}\ndowngrade:{downgrade}\n"
        ))
    }
}

fn check_text(field: &str, value: &str) -> Result<(), ProtocolError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(ProtocolError::WrongType {
            field: field.into(),
            expected: "non-empty text without control characters",
            got: json::show(&Value::from(value)),
        });
    }
    Ok(())
}

/// What `otter firmware sign` writes and the server stores: the signed release, the signing
/// key's id and the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureDoc {
    /// Always [`SIGNED_MESSAGE_TAG`].
    pub format: String,
    #[serde(flatten)]
    pub release: SignedRelease,
    /// [`key_id`] of the signing key.
    pub key: String,
    /// Standard base64 of the 64-byte signature over [`SignedRelease::message`].
    pub sig: String,
}

/// The exact bytes of a key announcement, signed by an already trusted key of the product:
///
/// ```text
/// otter-key-announcement-v1\nproduct:{product}\nkey:{64 lowercase hex of the new public key}\n
/// ```
pub fn announcement_message(product: &str, new_key: &[u8; 32]) -> Result<String, ProtocolError> {
    check_text("product", product)?;
    Ok(format!(
        "{KEY_ANNOUNCEMENT_TAG}\nproduct:{product}\nkey:{}\n",
        hex::encode(new_key)
    ))
}
