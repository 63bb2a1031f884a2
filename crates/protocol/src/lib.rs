//! Otter's wire protocol, kept pure (no I/O, no async) so the broker, the server and the device
//! agent share one implementation of the contract in `PROTOCOL.md`: topics and ACLs, the JSON
//! payloads of the three dialects in both directions, failure codes and device authentication.
//!
//! Everything that reads network input returns a typed error instead of panicking.

pub mod auth;
pub mod codes;
pub mod dialect;
pub mod downlink;
mod error;
pub mod ext;
pub mod health;
mod json;
pub mod topic;
pub mod uplink;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use auth::{
    AuthError, Credentials, DEFAULT_REGIONS, Login, generate_secret_format, parse_login, sign,
    verify, verify_with_regions,
};
pub use codes::{FailureKind, explain, failure_code, failure_kind};
pub use downlink::{
    Answer, Downlink, Offer, Outbound, answer, encode_push, error_reply, parse_downlink,
    reply_offers,
};
pub use error::ProtocolError;
pub use ext::{
    EXT_FIELD, KEY_ANNOUNCEMENT_TAG, KeyAnnouncement, MAX_ROTATION, OfferExt, SIGNED_MESSAGE_TAG,
    SignatureDoc, SignedRelease, add_ext_to_offer_value, add_ext_to_reply, announcement_message,
    answer_with_ext, encode_push_ext, key_base64, key_id, parse_private_key, parse_public_key_text,
    private_key_pem, public_key_pem, push_ext, reply_exts,
};
pub use topic::{
    DownKind, UpKind, down_topic, downstream_topics, filter_matches, may_publish, may_receive,
    parse_down_topic, parse_up_topic, two_way, up_topic, upstream_topics,
};
pub use uplink::{
    Progress, Rejected, UpMessage, Uplink, encode_uplink, is_own_answer, parse_uplink,
    try_encode_uplink,
};

/// Largest payload Otter parses; anything bigger is rejected before JSON parsing.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Module name used when a message does not name one (Alibaba's convention, applied everywhere).
pub const DEFAULT_MODULE: &str = "default";

// The dialect is domain vocabulary (products are created with one); it lives in otter-core.
pub use otter_core::{Dialect, UnknownDialect};

/// A device as the protocol names it: product id / product key and device name / device key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceAddr {
    /// Tencent productId, Alibaba productKey, EnOS productKey.
    pub product: String,
    /// Tencent deviceName, Alibaba deviceName, EnOS deviceKey.
    pub device: String,
}

impl DeviceAddr {
    /// Convenience constructor.
    pub fn new(product: impl Into<String>, device: impl Into<String>) -> Self {
        DeviceAddr {
            product: product.into(),
            device: device.into(),
        }
    }
}

impl fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.product, self.device)
    }
}
