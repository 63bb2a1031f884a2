//! Alibaba Cloud IoT payloads (`PROTOCOL.md` §2): `inform` / `progress` / `firmware/get` up,
//! `/ota/device/upgrade` pushes and `firmware/get_reply` down, and `/ota/device/request` both
//! ways (the device's request up, Otter's answer down on the same topic).
//!
//! What Alibaba's C SDK (iotkit-embedded 3.x) does on the request topic, read from its source:
//! `iotx_req_image` (`src/ota/iotx_ota.c`) publishes `{"id":<n>,"params":{"version":"<running>"}}`
//! (`otalib_GenInfoMsg`); `otamqtt_UpgrageCb` (`src/ota/ota_mqtt.c`) hands a message on that
//! topic to the OTA handler only when the text `url` occurs in it, and `ota_callback` then reads
//! it exactly as a push (`"message":"success"`, then `data` through `otalib_GetParams`: `url`,
//! `version`, `md5`, `size`). A message without `url` — the device's own request heard back,
//! or Otter's answer when there is no job — is dropped without a word.

use serde_json::{Value, json};

use super::{check_method, non_default_module, object, reply_id, size, step_of, step_progress};
use crate::downlink::{Answer, Downlink};
use crate::json::{self, Object};
use crate::topic::{DownKind, UpKind};
use crate::{Dialect, Offer, ProtocolError, UpMessage};

/// Alink code of a successful reply.
pub const CODE_OK: i64 = 200;
/// Alink "request error": the payload was not readable at all.
pub const CODE_BAD_REQUEST: i64 = 400;
/// Alink "request parameter error": readable, but a field was wrong.
pub const CODE_BAD_PARAMS: i64 = 460;

/// `code` of a push and of an answer on the request topic (a JSON string, as Alibaba sends it).
pub const PUSH_CODE: &str = "1000";

const GET_METHODS: &[&str] = &["thing.ota.firmware.get"];

/// The request topic, as named in errors.
const REQUEST_TOPIC: &str = "/ota/device/request";

/// Fields of a cloud → device answer; a payload with one of them and no `params` is an answer.
const ANSWER_FIELDS: [&str; 3] = ["data", "message", "code"];

pub(crate) fn parse_up(kind: UpKind, obj: &Object) -> Result<UpMessage, ProtocolError> {
    match kind {
        UpKind::VersionReport => {
            let params = json::req_obj(obj, "params")?;
            Ok(UpMessage::VersionReport {
                module: json::module(Some(params))?,
                version: json::req_text(params, "version")?,
            })
        }
        UpKind::Progress => step_progress(json::req_obj(obj, "params")?),
        UpKind::FirmwareRequest => {
            check_method(obj, GET_METHODS, "firmware/get")?;
            Ok(UpMessage::FirmwareRequest {
                module: json::module(json::opt_obj(obj, "params")?)?,
            })
        }
        UpKind::ImageRequest => {
            let Some(params) = json::opt_obj(obj, "params")? else {
                if ANSWER_FIELDS.iter().any(|f| json::get(obj, f).is_some()) {
                    return Err(ProtocolError::AnswerNotRequest {
                        topic: REQUEST_TOPIC,
                    });
                }
                return Err(ProtocolError::MissingField("params".into()));
            };
            // The version the device runs: checked, not used. The SDK reports it on `inform`
            // as well (on every connect), and versions are taken from there only.
            json::opt_text(params, "version")?;
            Ok(UpMessage::FirmwareRequest {
                module: json::module(Some(params))?,
            })
        }
        UpKind::UpgradeReply | UpKind::Report | UpKind::Health => {
            Err(unsupported("such upstream topic"))
        }
    }
}

fn unsupported(what: &'static str) -> ProtocolError {
    ProtocolError::Unsupported {
        dialect: Dialect::Aliyun,
        what,
    }
}

/// Encodes as Alibaba's SDKs do (`step` a number, `module` only when not the default). `via`
/// is [`crate::Uplink::via`]: only a firmware request travels another topic, the request topic.
pub(crate) fn encode_up(
    via: Option<UpKind>,
    id: Option<&Value>,
    m: &UpMessage,
) -> Result<Value, ProtocolError> {
    match (via, m) {
        (None, _) => {}
        (Some(UpKind::ImageRequest), UpMessage::FirmwareRequest { module }) => {
            // The C SDK's `{"id":…,"params":{"version":…}}`, less the version, which the
            // message does not carry (and Otter does not use).
            let params = object([("module", non_default_module(module))]);
            return Ok(object([("id", id.cloned()), ("params", Some(params))]));
        }
        (Some(_), _) => return Err(unsupported("other topic for this message")),
    }
    let params = match m {
        UpMessage::VersionReport { module, version } => object([
            ("version", Some(Value::from(version.as_str()))),
            ("module", non_default_module(module)),
        ]),
        UpMessage::Progress {
            module,
            version,
            progress,
        } => {
            let (step, desc) = step_of(Dialect::Aliyun, progress)?;
            object([
                ("step", Some(Value::from(step))),
                ("desc", Some(Value::from(desc))),
                ("module", non_default_module(module)),
                ("version", version.as_deref().map(Value::from)),
            ])
        }
        UpMessage::FirmwareRequest { module } => {
            let params = object([("module", non_default_module(module))]);
            return Ok(object([
                ("id", id.cloned()),
                ("version", Some(Value::from("1.0"))),
                ("method", Some(Value::from(GET_METHODS[0]))),
                ("params", Some(params)),
            ]));
        }
        UpMessage::UpgradeReply { .. } => return Err(unsupported("upgrade reply")),
        UpMessage::Health { counters } => return Ok(crate::health::encode(counters)),
    };
    Ok(object([("id", id.cloned()), ("params", Some(params))]))
}

/// The push's `data` and the `get_reply` data: `signMethod` `Md5`, `sign` the MD5.
fn offer_data(offer: &Offer) -> Value {
    let md5 = offer.md5.to_ascii_lowercase();
    object([
        ("size", Some(Value::from(offer.size))),
        ("version", Some(Value::from(offer.version.as_str()))),
        ("url", Some(Value::from(offer.url.as_str()))),
        ("signMethod", Some(Value::from("Md5"))),
        ("sign", Some(Value::from(md5.as_str()))),
        ("md5", Some(Value::from(md5))),
        ("module", non_default_module(&offer.module)),
    ])
}

/// `/ota/device/upgrade`: `code` the string `"1000"`, `id` a JSON number.
pub(crate) fn encode_push(offer: &Offer, id: u64) -> Value {
    push_shaped(Some(offer), Value::from(id))
}

/// The push's shape: `{"code":"1000","data":{…},"id":…,"message":"success"}`; `data` is `{}`
/// without an offer.
fn push_shaped(offer: Option<&Offer>, id: Value) -> Value {
    json!({
        "code": PUSH_CODE,
        "data": offer.map_or_else(|| json!({}), offer_data),
        "id": id,
        "message": "success",
    })
}

/// Firmware requests have a reply, nothing else: the job, or `data: {}` when there is none.
///
/// `firmware/get` is answered on `get_reply` with `code` 200. A request on
/// `/ota/device/request` is answered on that topic in the push's shape, with the request's
/// `id`. Without a job, `data` is `{}` and nothing in the payload reads `url` (the SDK's ids
/// are numbers): Alibaba's C SDK passes a message on that topic to its OTA handler only when
/// `url` occurs in it (`otamqtt_UpgrageCb`, `src/ota/ota_mqtt.c`), so it ignores this answer
/// and goes on running its firmware until it asks again or a push comes (were it handed over,
/// `otalib_GetParams` would find no `version` in the empty `data` and `ota_callback` would
/// leave the device's state as it was). Other clients read `data: {}` as "no job"
/// ([`crate::reply_offers`]).
pub(crate) fn answer(kind: UpKind, m: &UpMessage, id: Value, a: Answer) -> Option<Value> {
    let UpMessage::FirmwareRequest { .. } = m else {
        return None;
    };
    let offer = match a {
        Answer::Offer(Some(offer)) => Some(offer),
        _ => None,
    };
    if kind == UpKind::ImageRequest {
        return Some(push_shaped(offer.as_ref(), id));
    }
    let data = offer.as_ref().map_or_else(|| json!({}), offer_data);
    Some(json!({"code": CODE_OK, "data": data, "id": id, "message": "success"}))
}

/// An error reply with an Alink error code, for refused firmware requests only: a `get_reply`
/// (`code` a number), or the request topic's answer shape (`code` a string, like the push's).
/// An answer heard on the request topic is never answered.
pub(crate) fn error_reply(kind: UpKind, id: Value, error: &ProtocolError) -> Option<Value> {
    let code = match error {
        ProtocolError::AnswerNotRequest { .. } => return None,
        ProtocolError::TooLarge { .. } | ProtocolError::InvalidJson(_) => CODE_BAD_REQUEST,
        _ => CODE_BAD_PARAMS,
    };
    let code = match kind {
        UpKind::FirmwareRequest => Value::from(code),
        UpKind::ImageRequest => Value::from(code.to_string()),
        _ => return None,
    };
    Some(json!({"code": code, "data": {}, "id": id, "message": error.to_string()}))
}

/// Reads the fields of a push's `data` (or a non-empty `get_reply` data).
fn parse_offer(data: &Object) -> Result<Offer, ProtocolError> {
    let method = json::opt_str(data, "signMethod")?.unwrap_or_default();
    let sign = json::opt_str(data, "sign")?
        .unwrap_or_default()
        .to_ascii_lowercase();
    let md5 = match json::opt_str(data, "md5")? {
        Some(m) => m.to_ascii_lowercase(),
        None if method.eq_ignore_ascii_case("md5") => sign.clone(),
        None => String::new(),
    };
    let sha256 = if method.eq_ignore_ascii_case("sha256") {
        sign
    } else {
        String::new()
    };
    Ok(Offer {
        module: json::module(Some(data))?,
        version: json::req_text(data, "version")?,
        url: json::req_str(data, "url")?.to_owned(),
        size: size(data, "size")?,
        md5,
        sha256,
    })
}

pub(crate) fn parse_down(kind: DownKind, obj: &Object) -> Result<Downlink, ProtocolError> {
    match kind {
        DownKind::Push => Ok(Downlink::Push(parse_offer(json::req_obj(obj, "data")?)?)),
        DownKind::Reply(_) => Ok(Downlink::Reply {
            id: reply_id(obj),
            code: json::req_int(obj, "code")?,
            data: json::get(obj, "data").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// `get_reply` data: `{}` (or null) means no job.
pub(crate) fn reply_offers(data: &Value) -> Result<Vec<Offer>, ProtocolError> {
    match data {
        Value::Null => Ok(vec![]),
        Value::Object(m) if m.is_empty() => Ok(vec![]),
        Value::Object(m) => Ok(vec![parse_offer(m)?]),
        other => Err(ProtocolError::NotAnObject {
            field: "data".into(),
            got: json::show(other),
        }),
    }
}
