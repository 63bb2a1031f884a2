//! Otter's optional extension to the vendors' firmware offers: an `"otter"` object beside the
//! offer's own fields carrying the image's SHA-256 and an ed25519 signature over a canonical
//! text (see `docs/protocol-extensions.md`). Vendor SDKs ignore unknown fields, so devices built
//! on them are unaffected; the Otter agent uses it to refuse images that are not from us.
//!
//! Pure like the rest of the crate: the server signs [`signed_message`]'s bytes, the agent
//! verifies them; neither needs the other's code.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::downlink::{Offer, Outbound, encode_push};
use crate::json::{self, Object};
use crate::topic::{self, DownKind};
use crate::{DeviceAddr, Dialect, ProtocolError};

/// Name of the extension object inside an offer.
pub const EXT_FIELD: &str = "otter";

/// First line of the signed text; a new layout gets a new tag.
pub const SIGNED_MESSAGE_TAG: &str = "otter-firmware-signature-v1";

/// Longest value accepted for any extension field (a base64 ed25519 signature is 88 chars).
const MAX_FIELD_LEN: usize = 256;

/// The extension fields of one offer; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferExt {
    /// Lowercase hex SHA-256 of the image (for dialects whose push has no SHA-256).
    pub sha256: Option<String>,
    /// Standard base64 of the 64-byte ed25519 signature over [`signed_message`].
    pub sig: Option<String>,
    /// Which key signed: [`key_id`] of its public key.
    pub key: Option<String>,
}

impl OfferExt {
    /// True when no field is set (nothing is added to the push then).
    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.sig.is_none() && self.key.is_none()
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (name, v) in [
            ("sha256", &self.sha256),
            ("sig", &self.sig),
            ("key", &self.key),
        ] {
            if let Some(v) = v {
                m.insert(name.into(), Value::from(v.as_str()));
            }
        }
        Value::Object(m)
    }

    /// Reads the `"otter"` object of an offer object; `None` when absent or `null`.
    fn from_offer_object(offer: &Object) -> Result<Option<OfferExt>, ProtocolError> {
        let Some(ext) = json::opt_obj(offer, EXT_FIELD)? else {
            return Ok(None);
        };
        let field = |name: &str| -> Result<Option<String>, ProtocolError> {
            match json::opt_str(ext, name)? {
                Some(s) if s.len() > MAX_FIELD_LEN => Err(ProtocolError::WrongType {
                    field: format!("{EXT_FIELD}.{name}"),
                    expected: "a string of at most 256 characters",
                    got: format!("{} characters", s.len()),
                }),
                Some(s) => Ok(Some(s.trim().to_owned())),
                None => Ok(None),
            }
        };
        Ok(Some(OfferExt {
            sha256: field("sha256")?.map(|s| s.to_ascii_lowercase()),
            sig: field("sig")?,
            key: field("key")?,
        }))
    }
}

/// The exact bytes an Otter signature covers, binding product, module, version, size and
/// SHA-256 (lowercased):
///
/// ```text
/// otter-firmware-signature-v1\nproduct:{product}\nmodule:{module}\nversion:{version}\nsize:{size}\nsha256:{sha256}\n
/// ```
///
/// Refused (so no two offers share a text) when a value is empty or holds a control character.
pub fn signed_message(
    product: &str,
    module: &str,
    version: &str,
    size: u64,
    sha256: &str,
) -> Result<String, ProtocolError> {
    for (field, value) in [
        ("product", product),
        ("module", module),
        ("version", version),
        ("sha256", sha256),
    ] {
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(ProtocolError::WrongType {
                field: field.into(),
                expected: "non-empty text without control characters",
                got: json::show(&Value::from(value)),
            });
        }
    }
    let sha256 = sha256.to_ascii_lowercase();
    Ok(format!(
        "{SIGNED_MESSAGE_TAG}\nproduct:{product}\nmodule:{module}\nversion:{version}\nsize:{size}\nsha256:{sha256}\n"
    ))
}

/// The id of an ed25519 public key (its 32 raw bytes): the first 16 lowercase hex characters
/// of their SHA-256.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let mut id = hex::encode(Sha256::digest(public_key));
    id.truncate(16);
    id
}

/// [`encode_push`] with the extension object added beside the offer's fields (Tencent: the
/// payload itself, Aliyun: `data`, EnOS: `params`). Every vendor field is unchanged.
pub fn encode_push_ext(
    d: Dialect,
    dev: &DeviceAddr,
    offer: &Offer,
    ext: &OfferExt,
    id: u64,
) -> Outbound {
    let mut out = encode_push(d, dev, offer, id);
    if ext.is_empty() {
        return out;
    }
    if let Ok(mut payload) = serde_json::from_slice::<Value>(&out.payload) {
        if let Some(obj) = offer_object_mut(d, &mut payload) {
            obj.insert(EXT_FIELD.into(), ext.to_json());
        }
        out.payload = payload.to_string().into_bytes();
    }
    out
}

/// Adds the extension to one offer as a firmware-request reply carries it (Aliyun `get_reply`
/// data, one item of EnOS's `getversion_reply` list), for servers answering with it.
pub fn add_ext_to_offer_value(offer: &mut Value, ext: &OfferExt) {
    if let (Value::Object(m), false) = (offer, ext.is_empty()) {
        m.insert(EXT_FIELD.into(), ext.to_json());
    }
}

fn offer_object_mut(d: Dialect, payload: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = payload.as_object_mut()?;
    match d {
        Dialect::Tencent => Some(obj),
        Dialect::Aliyun => obj.get_mut("data")?.as_object_mut(),
        Dialect::Enos => obj.get_mut("params")?.as_object_mut(),
    }
}

/// The extension of a downstream push (the same publish [`crate::parse_downlink`] read);
/// `None` when it has none or is not a push.
pub fn push_ext(topic: &str, payload: &[u8]) -> Result<Option<OfferExt>, ProtocolError> {
    let (d, kind, _) = topic::parse_down_topic(topic)
        .ok_or_else(|| ProtocolError::UnknownTopic(topic.to_owned()))?;
    if kind != DownKind::Push {
        return Ok(None);
    }
    let obj = json::parse_object(payload)?;
    let offer = match d {
        Dialect::Tencent => Some(&obj),
        Dialect::Aliyun => json::opt_obj(&obj, "data")?,
        Dialect::Enos => json::opt_obj(&obj, "params")?,
    };
    offer.map_or(Ok(None), OfferExt::from_offer_object)
}

/// The extensions of the offers in a firmware-request reply's data, in the order
/// [`crate::reply_offers`] returns the offers.
pub fn reply_exts(d: Dialect, data: &Value) -> Result<Vec<Option<OfferExt>>, ProtocolError> {
    let items: Vec<&Value> = match (d, data) {
        (Dialect::Aliyun, Value::Object(m)) if !m.is_empty() => vec![data],
        (Dialect::Enos, Value::Array(items)) => items.iter().collect(),
        _ => vec![],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(m) => OfferExt::from_offer_object(m),
            _ => Ok(None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Downlink, parse_downlink};

    fn offer() -> Offer {
        Offer {
            module: "default".into(),
            version: "1.3.0".into(),
            url: "http://h/f".into(),
            size: 175_436,
            md5: "0123456789abcdef0123456789abcdef".into(),
            sha256: String::new(),
        }
    }

    #[test]
    fn signed_message_is_exact() {
        let m = signed_message("P1", "default", "1.3.0", 42, &"AB".repeat(32)).unwrap();
        assert_eq!(
            m,
            format!(
                "otter-firmware-signature-v1\nproduct:P1\nmodule:default\nversion:1.3.0\nsize:42\nsha256:{}\n",
                "ab".repeat(32)
            )
        );
        assert!(signed_message("P1", "default", "1.3.0\nsize:1", 42, "ab").is_err());
        assert!(signed_message("P1", "", "1", 42, "ab").is_err());
    }

    #[test]
    fn key_ids_are_16_hex() {
        let id = key_id(&[0u8; 32]);
        assert_eq!(id, "66687aadf862bd77");
    }

    #[test]
    fn extension_rides_along_in_every_dialect_and_vendor_fields_are_unchanged() {
        let dev = DeviceAddr::new("P1", "d1");
        let ext = OfferExt {
            sha256: Some("ab".repeat(32)),
            sig: Some("c2ln".into()),
            key: Some("0011223344556677".into()),
        };
        for d in Dialect::ALL {
            let plain = encode_push(d, &dev, &offer(), 7);
            let with = encode_push_ext(d, &dev, &offer(), &ext, 7);
            assert_eq!(plain.topic, with.topic);
            let (_, _, a) = parse_downlink(&plain.topic, &plain.payload).unwrap();
            let (_, _, b) = parse_downlink(&with.topic, &with.payload).unwrap();
            assert_eq!(a, b, "{d}: the vendor view is the same");
            assert!(matches!(b, Downlink::Push(_)));
            assert_eq!(
                push_ext(&with.topic, &with.payload).unwrap(),
                Some(ext.clone())
            );
            assert_eq!(push_ext(&plain.topic, &plain.payload).unwrap(), None);
        }
    }

    #[test]
    fn reply_extensions_line_up_with_offers() {
        let ext = OfferExt {
            sig: Some("c2ln".into()),
            ..OfferExt::default()
        };
        let mut item = serde_json::json!({"version": "2", "fileUrl": "u", "fileSize": 1});
        add_ext_to_offer_value(&mut item, &ext);
        let data = Value::Array(vec![item, serde_json::json!({"version": "3"})]);
        assert_eq!(
            reply_exts(Dialect::Enos, &data).unwrap(),
            vec![Some(ext.clone()), None]
        );
        assert_eq!(
            reply_exts(Dialect::Aliyun, &serde_json::json!({})).unwrap(),
            vec![]
        );
        let bad = serde_json::json!({"version": "2", "otter": "x"});
        assert!(reply_exts(Dialect::Aliyun, &bad).is_err());
    }
}
