//! Where the extension sits in each dialect's messages (Tencent: the push payload itself,
//! Aliyun: `data`, EnOS: `params` or the reply's `data` items), added while a message is built
//! (encoded once) and read back by the agent.

use serde_json::{Map, Value};

use super::{EXT_FIELD, OfferExt};
use crate::downlink::{Answer, Offer, Outbound, answer_parts, push_payload, push_topic};
use crate::json;
use crate::topic::{self, DownKind};
use crate::uplink::Uplink;
use crate::{DeviceAddr, Dialect, ProtocolError};

/// [`crate::encode_push`] with the extension object added beside the offer's fields (Tencent:
/// the payload itself, Aliyun: `data`, EnOS: `params`), in the JSON before it is written out.
/// Every vendor field is unchanged.
pub fn encode_push_ext(
    d: Dialect,
    dev: &DeviceAddr,
    offer: &Offer,
    ext: &OfferExt,
    id: u64,
) -> Outbound {
    let mut payload = push_payload(d, offer, id);
    if !ext.is_empty()
        && let Some(obj) = offer_object_mut(d, &mut payload)
    {
        obj.insert(EXT_FIELD.into(), ext.to_json());
    }
    Outbound::new(push_topic(d, dev), &payload)
}

/// [`crate::answer`] with the extension added to the offer of a firmware-request reply (see
/// [`add_ext_to_reply`]), in the JSON before it is written out.
pub fn answer_with_ext(u: &Uplink, a: Answer, ext: &OfferExt) -> Option<Outbound> {
    let (topic, mut payload) = answer_parts(u, a)?;
    add_ext_to_reply_value(&topic, &mut payload, ext);
    Some(Outbound::new(topic, &payload))
}

/// Adds the extension to one offer as a firmware-request reply carries it (Aliyun `get_reply`
/// data, one item of EnOS's `getversion_reply` list), for servers answering with it.
pub fn add_ext_to_offer_value(offer: &mut Value, ext: &OfferExt) {
    if let (Value::Object(m), false) = (offer, ext.is_empty()) {
        m.insert(EXT_FIELD.into(), ext.to_json());
    }
}

/// Adds the extension to the offer of an encoded firmware-request reply ([`crate::answer`]
/// with an offer): Aliyun's `data` object (`get_reply` and the request topic's answer), every
/// item of EnOS's `data` list. Other replies are left as they are.
pub fn add_ext_to_reply(out: &mut Outbound, ext: &OfferExt) {
    let Ok(mut payload) = serde_json::from_slice::<Value>(&out.payload) else {
        return;
    };
    if add_ext_to_reply_value(&out.topic, &mut payload, ext) {
        out.payload = payload.to_string().into_bytes();
    }
}

/// Adds the extension to a firmware-request reply's JSON; whether it was one with an offer.
fn add_ext_to_reply_value(topic: &str, payload: &mut Value, ext: &OfferExt) -> bool {
    let Some((d, DownKind::Reply(crate::UpKind::FirmwareRequest | crate::UpKind::ImageRequest), _)) =
        topic::parse_down_topic(topic)
    else {
        return false;
    };
    match (d, payload.get_mut("data")) {
        (Dialect::Aliyun, Some(data)) if data.as_object().is_some_and(|m| !m.is_empty()) => {
            add_ext_to_offer_value(data, ext)
        }
        (Dialect::Enos, Some(Value::Array(items))) => {
            items
                .iter_mut()
                .for_each(|item| add_ext_to_offer_value(item, ext));
        }
        _ => return false,
    }
    true
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
