//! Device → cloud messages in one dialect-neutral shape. The server's state machine only sees
//! [`Uplink`]; the per-dialect quirks (string numbers, method spellings, step codes) end here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dialect::{aliyun, enos, tencent};
use crate::downlink::Outbound;
use crate::topic::{self, UpKind};
use crate::{DeviceAddr, Dialect, ProtocolError, json};

/// A parsed, valid upstream message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink {
    pub dialect: Dialect,
    pub device: DeviceAddr,
    /// The request's `id` exactly as sent (string or number), echoed in replies. Tencent: none.
    pub request_id: Option<Value>,
    pub message: UpMessage,
    /// The kind of topic the message travels on when it is not the message's own
    /// ([`UpMessage::kind`]): `Some(UpKind::ImageRequest)` for a firmware request on Alibaba's
    /// `/ota/device/request`, which [`crate::answer`] answers on that topic in the push's shape.
    /// `None` for every other message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<UpKind>,
}

impl Uplink {
    /// The kind of topic this message travels on (and is answered for).
    pub fn kind(&self) -> UpKind {
        self.via.unwrap_or_else(|| self.message.kind())
    }
}

/// What the device said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpMessage {
    /// The firmware version the device runs; `module` is `"default"` when absent.
    VersionReport { module: String, version: String },
    /// Upgrade progress; `version` is the firmware being installed when the device says so.
    Progress {
        module: String,
        version: Option<String>,
        progress: Progress,
    },
    /// The device asks for its job (Aliyun `firmware/get` and `/ota/device/request`, EnOS
    /// `getversion`).
    FirmwareRequest { module: String },
    /// EnOS `upgrade_reply`: informational only.
    UpgradeReply { code: Option<i64> },
    /// Otter's health report: counter increments since the previous one (crate::health).
    Health {
        counters: std::collections::BTreeMap<String, u64>,
    },
}

impl UpMessage {
    /// The kind of topic this message travels on.
    pub fn kind(&self) -> UpKind {
        match self {
            UpMessage::VersionReport { .. } => UpKind::VersionReport,
            UpMessage::Progress { .. } => UpKind::Progress,
            UpMessage::FirmwareRequest { .. } => UpKind::FirmwareRequest,
            UpMessage::UpgradeReply { .. } => UpKind::UpgradeReply,
            UpMessage::Health { .. } => UpKind::Health,
        }
    }
}

/// Where an upgrade is, in the terms all three dialects share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// Downloading, `percent` in 0..=100 (Tencent `downloading`, Aliyun/EnOS step 0..100).
    Downloading { percent: u8 },
    /// Writing the image (Tencent only).
    Burning,
    /// The device claims success (Tencent only); the next version report confirms it.
    Done,
    /// A failure with the dialect's own code (Tencent `result_code`, Aliyun/EnOS negative step);
    /// see [`crate::failure_kind`].
    Failed { code: i32, message: String },
}

/// An upstream message that could not be accepted, with what is known about it so the caller
/// can log it and send the dialect's error reply ([`crate::error_reply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The topic's dialect, kind and device, when the topic was an OTA topic. For Tencent the
    /// kind is refined from the payload's `type` when that was readable.
    pub topic: Option<(Dialect, UpKind, DeviceAddr)>,
    /// The request's `id` when the payload had one.
    pub request_id: Option<Value>,
    pub error: ProtocolError,
}

/// Parses an upstream publish. Never panics; payloads over [`crate::MAX_PAYLOAD`] are refused
/// before parsing.
#[allow(
    clippy::result_large_err,
    reason = "Rejected carries everything an error reply needs; the shape is the crate's contract"
)]
pub fn parse_uplink(topic: &str, payload: &[u8]) -> Result<Uplink, Rejected> {
    let Some((dialect, kind, device)) = topic::parse_up_topic(topic) else {
        return Err(Rejected {
            topic: None,
            request_id: None,
            error: ProtocolError::UnknownTopic(topic.to_owned()),
        });
    };
    let obj = match json::parse_object(payload) {
        Ok(obj) => obj,
        Err(error) => {
            return Err(Rejected {
                topic: Some((dialect, kind, device)),
                request_id: None,
                error,
            });
        }
    };
    let request_id = match dialect {
        Dialect::Tencent => None,
        Dialect::Aliyun | Dialect::Enos => json::get(&obj, "id").cloned(),
    };
    let (kind, parsed) = match dialect {
        _ if kind == UpKind::Health || crate::health::is_health(&obj) => {
            (kind, crate::health::parse(&obj))
        }
        Dialect::Tencent => tencent::parse_up(&obj),
        Dialect::Aliyun => (kind, aliyun::parse_up(kind, &obj)),
        Dialect::Enos => (kind, enos::parse_up(kind, &obj)),
    };
    // A message on a topic that is not its kind's own remembers the topic it came on.
    let via = (kind == UpKind::ImageRequest).then_some(kind);
    match parsed {
        Ok(message) => Ok(Uplink {
            dialect,
            device,
            request_id,
            message,
            via,
        }),
        Err(error) => Err(Rejected {
            topic: Some((dialect, kind, device)),
            request_id,
            error,
        }),
    }
}

/// Encodes an upstream message as the vendor SDKs do (string numbers where they use them).
/// Fails for messages the dialect cannot express (e.g. a Tencent firmware request, an Aliyun
/// `Done`, a non-negative failure step).
pub fn try_encode_uplink(u: &Uplink) -> Result<Outbound, ProtocolError> {
    let payload = match (u.dialect, u.via) {
        (Dialect::Aliyun, via) => aliyun::encode_up(via, u.request_id.as_ref(), &u.message)?,
        (_, Some(_)) => {
            return Err(ProtocolError::Unsupported {
                dialect: u.dialect,
                what: "other topic for this message",
            });
        }
        (Dialect::Tencent, None) => tencent::encode_up(&u.message)?,
        (Dialect::Enos, None) => enos::encode_up(u.request_id.as_ref(), &u.message)?,
    };
    let topic =
        topic::up_topic(u.dialect, u.kind(), &u.device).ok_or(ProtocolError::Unsupported {
            dialect: u.dialect,
            what: "topic for this message",
        })?;
    Ok(Outbound::new(topic, &payload))
}

/// Whether a publish on an upstream topic is Otter's own answer heard back rather than a device
/// message: Alibaba's `/ota/device/request` carries the device's request and Otter's answer on
/// one topic, so a node subscribed to it on an external broker receives its own answers too.
/// Such a payload is never answered ([`crate::error_reply`] gives `None` for it); callers that
/// subscribe to upstream topics drop it quietly.
pub fn is_own_answer(topic: &str, payload: &[u8]) -> bool {
    topic::two_way(topic)
        && matches!(
            parse_uplink(topic, payload),
            Err(Rejected {
                error: ProtocolError::AnswerNotRequest { .. },
                ..
            })
        )
}

/// Like [`try_encode_uplink`], for callers that only build valid messages (the agent, tests).
/// A message the dialect cannot express becomes `{}` on the dialect's version-report topic,
/// which [`parse_uplink`] rejects.
pub fn encode_uplink(u: &Uplink) -> Outbound {
    try_encode_uplink(u).unwrap_or_else(|_| {
        let topic =
            topic::up_topic(u.dialect, UpKind::VersionReport, &u.device).unwrap_or_default();
        Outbound::new(topic, &Value::Object(Default::default()))
    })
}
