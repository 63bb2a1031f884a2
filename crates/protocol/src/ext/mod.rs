//! Otter's optional extension to the vendors' firmware offers: an `"otter"` object beside the
//! offer's own fields carrying the image's SHA-256, an ed25519 signature over a canonical text
//! binding product, module, version, size, SHA-256, issue and expiry times and the downgrade
//! permission, and the key announcements (rotation) a device needs to trust the signing key
//! (see `docs/protocol-extensions.md` and `docs/signing.md`). Vendor SDKs ignore unknown
//! fields, so devices built on them are unaffected; the Otter agent refuses images not from us.
//!
//! Pure like the rest of the crate: the signer signs [`SignedRelease::message`]'s bytes, the
//! agent verifies them; neither needs the other's code. Key text formats (PKCS#8 / SPKI PEM,
//! hex, base64) are parsed here too so the CLI, the server and the agent agree on them.
//!
//! By job: the extension's fields ([`OfferExt`], here), the signed texts ([`signed`]), key
//! encodings ([`keys`]) and where the extension sits in each dialect's messages ([`placement`]).

mod keys;
mod placement;
mod signed;

pub use keys::*;
pub use placement::*;
pub use signed::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ProtocolError;
use crate::json::{self, Object};

/// Name of the extension object inside an offer.
pub const EXT_FIELD: &str = "otter";

/// First line of the signed firmware text; a new layout gets a new tag.
pub const SIGNED_MESSAGE_TAG: &str = "otter-firmware-signature-v2";

/// First line of the signed text of a key announcement.
pub const KEY_ANNOUNCEMENT_TAG: &str = "otter-key-announcement-v1";

/// Longest value accepted for any extension string (a base64 ed25519 signature is 88 chars).
const MAX_FIELD_LEN: usize = 256;

/// Most key announcements one offer may carry (a longer chain is refused as unreadable).
pub const MAX_ROTATION: usize = 8;

/// The extension fields of one offer; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferExt {
    /// Lowercase hex SHA-256 of the image (for dialects whose push has no SHA-256).
    pub sha256: Option<String>,
    /// Standard base64 of the 64-byte ed25519 signature over [`SignedRelease::message`].
    pub sig: Option<String>,
    /// Which key signed: [`key_id`] of its public key.
    pub key: Option<String>,
    /// Unix seconds the signature was made (freshness: never lower than one already accepted).
    pub issued: Option<u64>,
    /// Unix seconds after which the signature is no longer valid.
    pub expires: Option<u64>,
    /// The signer allowed installing this release over a newer version (signed).
    pub downgrade: bool,
    /// Key announcements leading from an older key to [`Self::key`], oldest first.
    pub rotation: Vec<KeyAnnouncement>,
}

/// "Key `key` is a signing key of `product`", signed by the key with id `signed_by`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnnouncement {
    /// Standard base64 of the new 32-byte ed25519 public key.
    pub key: String,
    /// [`key_id`] of the key that signed the announcement.
    pub signed_by: String,
    /// Standard base64 of the signature over [`announcement_message`].
    pub sig: String,
}

impl OfferExt {
    /// True when no field is set (nothing is added to the push then).
    pub fn is_empty(&self) -> bool {
        *self == OfferExt::default()
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
        for (name, v) in [("issued", self.issued), ("expires", self.expires)] {
            if let Some(v) = v {
                m.insert(name.into(), Value::from(v));
            }
        }
        if self.downgrade {
            m.insert("downgrade".into(), Value::Bool(true));
        }
        if !self.rotation.is_empty() {
            m.insert(
                "rotation".into(),
                serde_json::to_value(&self.rotation).unwrap_or_default(),
            );
        }
        Value::Object(m)
    }

    /// Reads the `"otter"` object of an offer object; `None` when absent or `null`.
    fn from_offer_object(offer: &Object) -> Result<Option<OfferExt>, ProtocolError> {
        let Some(ext) = json::opt_obj(offer, EXT_FIELD)? else {
            return Ok(None);
        };
        Ok(Some(OfferExt {
            sha256: short_str(ext, "sha256")?.map(|s| s.to_ascii_lowercase()),
            sig: short_str(ext, "sig")?,
            key: short_str(ext, "key")?,
            issued: seconds(ext, "issued")?,
            expires: seconds(ext, "expires")?,
            downgrade: match json::get(ext, "downgrade") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => return Err(wrong("downgrade", "a boolean", other)),
            },
            rotation: rotation(ext)?,
        }))
    }
}

fn wrong(name: &str, expected: &'static str, got: &Value) -> ProtocolError {
    ProtocolError::WrongType {
        field: format!("{EXT_FIELD}.{name}"),
        expected,
        got: json::show(got),
    }
}

/// An optional string of at most [`MAX_FIELD_LEN`] characters, trimmed.
fn short_str(obj: &Object, name: &str) -> Result<Option<String>, ProtocolError> {
    match json::opt_str(obj, name)? {
        Some(s) if s.len() > MAX_FIELD_LEN => Err(ProtocolError::WrongType {
            field: format!("{EXT_FIELD}.{name}"),
            expected: "a string of at most 256 characters",
            got: format!("{} characters", s.len()),
        }),
        Some(s) => Ok(Some(s.trim().to_owned())),
        None => Ok(None),
    }
}

/// An optional non-negative integer JSON number (Unix seconds).
fn seconds(obj: &Object, name: &str) -> Result<Option<u64>, ProtocolError> {
    match json::get(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong(name, "a non-negative integer", v)),
    }
}

fn rotation(ext: &Object) -> Result<Vec<KeyAnnouncement>, ProtocolError> {
    let items = match json::get(ext, "rotation") {
        None => return Ok(vec![]),
        Some(Value::Array(items)) if items.len() <= MAX_ROTATION => items,
        Some(other) => {
            return Err(wrong(
                "rotation",
                "a list of at most 8 announcements",
                other,
            ));
        }
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(obj) = item else {
                return Err(wrong("rotation", "announcement objects", item));
            };
            let req = |name: &str| {
                short_str(obj, name)?
                    .ok_or_else(|| wrong("rotation", "key, signed_by and sig", item))
            };
            Ok(KeyAnnouncement {
                key: req("key")?,
                signed_by: req("signed_by")?,
                sig: req("sig")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceAddr, Dialect, Downlink, Offer, encode_push, parse_downlink};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

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

    fn release() -> SignedRelease {
        SignedRelease {
            product: "P1".into(),
            module: "default".into(),
            version: "1.3.0".into(),
            size: 42,
            sha256: "AB".repeat(32),
            issued: 1_700_000_000,
            expires: 1_800_000_000,
            downgrade: false,
        }
    }

    fn full_ext() -> OfferExt {
        OfferExt {
            sha256: Some("ab".repeat(32)),
            sig: Some("c2ln".into()),
            key: Some("0011223344556677".into()),
            issued: Some(1_700_000_000),
            expires: Some(1_800_000_000),
            downgrade: true,
            rotation: vec![KeyAnnouncement {
                key: key_base64(&[7; 32]),
                signed_by: "8899aabbccddeeff".into(),
                sig: "c2ln".into(),
            }],
        }
    }

    #[test]
    fn signed_message_is_exact() {
        let m = release().message().unwrap();
        assert_eq!(
            m,
            format!(
                "otter-firmware-signature-v2\nproduct:P1\nmodule:default\nversion:1.3.0\nsize:42\nsha256:{}\nissued:1700000000\nexpires:1800000000\ndowngrade:no\n",
                "ab".repeat(32)
            )
        );
        let down = SignedRelease {
            downgrade: true,
            ..release()
        };
        assert!(down.message().unwrap().ends_with("downgrade:yes\n"));
        let forged = SignedRelease {
            version: "1.3.0\nsize:1".into(),
            ..release()
        };
        assert!(forged.message().is_err());
        let empty = SignedRelease {
            module: String::new(),
            ..release()
        };
        assert!(empty.message().is_err());
    }

    #[test]
    fn announcement_message_is_exact() {
        assert_eq!(
            announcement_message("P1", &[1; 32]).unwrap(),
            format!(
                "otter-key-announcement-v1\nproduct:P1\nkey:{}\n",
                "01".repeat(32)
            )
        );
        assert!(announcement_message("P\n1", &[1; 32]).is_err());
    }

    #[test]
    fn signature_documents_are_flat_json() {
        let doc = SignatureDoc {
            format: SIGNED_MESSAGE_TAG.into(),
            release: release(),
            key: "0011223344556677".into(),
            sig: "c2ln".into(),
        };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["version"], "1.3.0");
        assert_eq!(v["issued"], 1_700_000_000u64);
        assert_eq!(serde_json::from_value::<SignatureDoc>(v).unwrap(), doc);
    }

    #[test]
    fn key_ids_are_16_hex() {
        let id = key_id(&[0u8; 32]);
        assert_eq!(id, "66687aadf862bd77");
    }

    #[test]
    fn keys_parse_from_pem_hex_or_base64() {
        let seed = [3u8; 32];
        assert_eq!(parse_private_key(&private_key_pem(&seed)).unwrap(), seed);
        assert_eq!(parse_private_key(&hex::encode(seed)).unwrap(), seed);
        assert_eq!(parse_private_key(&STANDARD.encode(seed)).unwrap(), seed);
        assert_eq!(parse_public_key_text(&public_key_pem(&seed)).unwrap(), seed);
        // A public key PEM is not a private key, and vice versa.
        assert!(parse_private_key(&public_key_pem(&seed)).is_err());
        assert!(parse_public_key_text(&private_key_pem(&seed)).is_err());
        assert!(parse_private_key("abcd").is_err());
        // openssl genpkey -algorithm ed25519 (RFC 8410 §10.3 example key).
        let openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        assert_eq!(parse_private_key(openssl).unwrap()[0], 0xd4);
    }

    #[test]
    fn extension_rides_along_in_every_dialect_and_vendor_fields_are_unchanged() {
        let dev = DeviceAddr::new("P1", "d1");
        let ext = full_ext();
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
    fn malformed_new_fields_are_refused() {
        let dev = DeviceAddr::new("P1", "d1");
        let with = encode_push_ext(Dialect::Tencent, &dev, &offer(), &full_ext(), 7);
        let mut v: Value = serde_json::from_slice(&with.payload).unwrap();
        for (field, bad) in [
            ("issued", serde_json::json!(-1)),
            ("expires", serde_json::json!("soon")),
            ("downgrade", serde_json::json!("yes")),
            ("rotation", serde_json::json!([{"key": "k"}])),
            (
                "rotation",
                serde_json::json!(vec![serde_json::json!({}); 9]),
            ),
        ] {
            let mut v = v.clone();
            v["otter"][field] = bad;
            let payload = v.to_string().into_bytes();
            assert!(push_ext(&with.topic, &payload).is_err(), "{field}");
        }
        v["otter"]["downgrade"] = Value::Null;
        let ext = push_ext(&with.topic, v.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert!(!ext.downgrade);
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

    #[test]
    fn firmware_request_replies_carry_the_extension() {
        use crate::{Answer, answer, parse_uplink, try_encode_uplink};
        let dev = DeviceAddr::new("P1", "d1");
        let via_request = Some(crate::UpKind::ImageRequest);
        for (d, via) in [
            (Dialect::Aliyun, None),
            (Dialect::Aliyun, via_request),
            (Dialect::Enos, None),
        ] {
            let uplink = crate::Uplink {
                dialect: d,
                device: dev.clone(),
                request_id: Some(Value::from("5")),
                message: crate::UpMessage::FirmwareRequest {
                    module: "default".into(),
                },
                via,
            };
            let req = try_encode_uplink(&uplink).unwrap();
            let uplink = parse_uplink(&req.topic, &req.payload).unwrap();
            let mut out = answer(&uplink, Answer::Offer(Some(offer()))).unwrap();
            add_ext_to_reply(&mut out, &full_ext());
            let (_, _, reply) = parse_downlink(&out.topic, &out.payload).unwrap();
            let Downlink::Reply { data, .. } = reply else {
                panic!("{d}: not a reply")
            };
            assert_eq!(reply_exts(d, &data).unwrap(), vec![Some(full_ext())], "{d}");
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[ -~]{1,40}"
    }

    proptest! {
        #[test]
        fn extension_round_trips(
            sha in proptest::option::of("[0-9a-f]{64}"),
            sig in proptest::option::of("[A-Za-z0-9+/]{86}=="),
            key in proptest::option::of("[0-9a-f]{16}"),
            issued in proptest::option::of(any::<u64>()),
            expires in proptest::option::of(any::<u64>()),
            downgrade in any::<bool>(),
            rotation in proptest::collection::vec(
                ("[A-Za-z0-9+/]{43}=", "[0-9a-f]{16}", "[A-Za-z0-9+/]{86}=="), 0..=MAX_ROTATION),
            version in arb_text(),
        ) {
            let ext = OfferExt {
                sha256: sha, sig, key, issued, expires, downgrade,
                rotation: rotation.into_iter().map(|(key, signed_by, sig)| KeyAnnouncement { key, signed_by, sig }).collect(),
            };
            let dev = DeviceAddr::new("P1", "d1");
            let offer = Offer { version: version.trim().to_owned() + "x", ..offer() };
            for d in Dialect::ALL {
                let out = encode_push_ext(d, &dev, &offer, &ext, 1);
                let got = push_ext(&out.topic, &out.payload).unwrap();
                prop_assert_eq!(got, (!ext.is_empty()).then(|| ext.clone()));
            }
        }

        #[test]
        fn distinct_releases_have_distinct_messages(a in arb_text(), b in arb_text(), issued in any::<u64>()) {
            let r1 = SignedRelease { version: a.clone(), issued, ..release() };
            let r2 = SignedRelease { version: b.clone(), issued, ..release() };
            if let (Ok(m1), Ok(m2)) = (r1.message(), r2.message()) {
                prop_assert_eq!(m1 == m2, a == b);
            }
        }
    }
}
