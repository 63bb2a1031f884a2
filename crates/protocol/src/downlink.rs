//! Cloud → device messages: firmware pushes, replies to requests and error replies, plus the
//! parser the device agent uses to read them back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dialect::{aliyun, enos, tencent};
use crate::topic::{self, DownKind};
use crate::uplink::{Rejected, Uplink};
use crate::{DeviceAddr, Dialect, ProtocolError, json};

/// QoS of everything Otter publishes: Tencent devices subscribe their update topic at QoS 1,
/// and the broker downgrades to whatever a device subscribed.
pub const QOS: u8 = 1;

/// A publish for the broker to deliver to one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
}

impl Outbound {
    pub(crate) fn new(topic: String, payload: &Value) -> Self {
        Outbound {
            topic,
            payload: payload.to_string().into_bytes(),
            qos: QOS,
        }
    }
}

/// The firmware a device should install.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offer {
    /// Aliyun module; `"default"` elsewhere.
    pub module: String,
    pub version: String,
    /// Absolute download URL (signed; keep it short for Tencent's 2 KB buffer).
    pub url: String,
    pub size: u64,
    /// Lowercase hex MD5 of the file.
    pub md5: String,
    /// Lowercase hex SHA-256 of the file (empty when a pushed message did not carry it).
    pub sha256: String,
}

/// What the server decided about an upstream message, for [`answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted; nothing more to say.
    Ack,
    /// The answer to a firmware request: the device's job, or `None` when it has none.
    Offer(Option<Offer>),
    /// EnOS progress for a device without a task (code 764).
    TaskNotFound,
    /// EnOS progress for a task that has not started (code 765).
    TaskNotStarted,
}

/// A downstream message as the device agent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Downlink {
    /// A firmware push. Fields a dialect does not carry come back as `"default"` module and
    /// empty digests.
    Push(Offer),
    /// Tencent `report_version_rsp` with result code 0.
    VersionAck { version: String },
    /// Any other reply: Aliyun `get_reply`, EnOS `*_reply`, a failed Tencent
    /// `report_version_rsp` (id `null`, data the `result_msg`).
    Reply { id: Value, code: i64, data: Value },
}

/// The firmware push for a device. `id` is the message id (Aliyun: a JSON number, EnOS: a JSON
/// string, Tencent: not sent).
pub fn encode_push(d: Dialect, dev: &DeviceAddr, offer: &Offer, id: u64) -> Outbound {
    Outbound::new(push_topic(d, dev), &push_payload(d, offer, id))
}

/// The push's JSON, before it is written out (the extension is added to it, not re-parsed).
pub(crate) fn push_payload(d: Dialect, offer: &Offer, id: u64) -> Value {
    match d {
        Dialect::Tencent => tencent::encode_push(offer),
        Dialect::Aliyun => aliyun::encode_push(offer, id),
        Dialect::Enos => enos::encode_push(offer, id),
    }
}

pub(crate) fn push_topic(d: Dialect, dev: &DeviceAddr) -> String {
    topic::down_topic(d, DownKind::Push, dev).unwrap_or_default()
}

/// The reply to an accepted upstream message, or `None` where the dialect has no reply
/// (Tencent progress, Aliyun inform/progress, EnOS upgrade_reply). A firmware request on
/// Alibaba's `/ota/device/request` ([`Uplink::via`]) is answered on that same topic in the
/// push's shape (`data` `{}` when there is no job, which Alibaba's C SDK ignores).
///
/// Tencent: every version report gets `report_version_rsp` with `result_code` 0 whatever the
/// answer; re-pushing the live upgrade is a separate [`encode_push`]. EnOS: `TaskNotFound` /
/// `TaskNotStarted` only change progress replies (764/765). `Offer` only matters for firmware
/// requests.
pub fn answer(u: &Uplink, a: Answer) -> Option<Outbound> {
    let (topic, payload) = answer_parts(u, a)?;
    Some(Outbound::new(topic, &payload))
}

/// The reply's topic and JSON, before it is written out.
pub(crate) fn answer_parts(u: &Uplink, a: Answer) -> Option<(String, Value)> {
    let id = u.request_id.clone().unwrap_or(Value::Null);
    let payload = match u.dialect {
        Dialect::Tencent => tencent::answer(&u.message)?,
        Dialect::Aliyun => aliyun::answer(u.kind(), &u.message, id, a)?,
        Dialect::Enos => enos::answer(&u.message, id, a)?,
    };
    let topic = topic::down_topic(u.dialect, DownKind::Reply(u.kind()), &u.device)?;
    Some((topic, payload))
}

/// The dialect's error reply to a rejected message, where it has one: EnOS `*_reply` with an
/// error code and message; Tencent `report_version_rsp` with a non-zero `result_code` for a
/// `report_version`; Aliyun `get_reply` (or the request topic's answer) with an error code.
/// `None` otherwise (unknown topic, messages without a reply topic, an answer heard on the
/// request topic).
pub fn error_reply(r: &Rejected) -> Option<Outbound> {
    let (d, kind, dev) = r.topic.as_ref()?;
    let id = r.request_id.clone().unwrap_or(Value::Null);
    let payload = match d {
        Dialect::Tencent => tencent::error_reply(*kind, &r.error)?,
        Dialect::Aliyun => aliyun::error_reply(*kind, id, &r.error)?,
        Dialect::Enos => enos::error_reply(*kind, id, &r.error)?,
    };
    let topic = topic::down_topic(*d, DownKind::Reply(*kind), dev)?;
    Some(Outbound::new(topic, &payload))
}

/// Parses a downstream publish (device agent side).
pub fn parse_downlink(
    topic: &str,
    payload: &[u8],
) -> Result<(Dialect, DeviceAddr, Downlink), ProtocolError> {
    let (d, kind, dev) = topic::parse_down_topic(topic)
        .ok_or_else(|| ProtocolError::UnknownTopic(topic.to_owned()))?;
    let obj = json::parse_object(payload)?;
    let down = match d {
        Dialect::Tencent => tencent::parse_down(&obj)?,
        Dialect::Aliyun => aliyun::parse_down(kind, &obj)?,
        Dialect::Enos => enos::parse_down(kind, &obj)?,
    };
    Ok((d, dev, down))
}

/// The offers inside a [`Downlink::Reply`] to a firmware request: Aliyun `get_reply` data (an
/// object, `{}` when none) or EnOS `getversion_reply` data (a list).
pub fn reply_offers(d: Dialect, data: &Value) -> Result<Vec<Offer>, ProtocolError> {
    match d {
        Dialect::Tencent => Err(ProtocolError::Unsupported {
            dialect: d,
            what: "firmware request reply",
        }),
        Dialect::Aliyun => aliyun::reply_offers(data),
        Dialect::Enos => enos::reply_offers(data),
    }
}
