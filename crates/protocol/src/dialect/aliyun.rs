//! Alibaba Cloud IoT payloads (`PROTOCOL.md` §2): `inform` / `progress` / `firmware/get` up,
//! `/ota/device/upgrade` pushes and `firmware/get_reply` down.

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

const GET_METHODS: &[&str] = &["thing.ota.firmware.get"];

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
        UpKind::UpgradeReply | UpKind::Report => Err(unsupported("such upstream topic")),
    }
}

fn unsupported(what: &'static str) -> ProtocolError {
    ProtocolError::Unsupported {
        dialect: Dialect::Aliyun,
        what,
    }
}

/// Encodes as Alibaba's SDKs do (`step` a number, `module` only when not the default).
pub(crate) fn encode_up(id: Option<&Value>, m: &UpMessage) -> Result<Value, ProtocolError> {
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
    json!({
        "code": "1000",
        "data": offer_data(offer),
        "id": id,
        "message": "success",
    })
}

/// Only `firmware/get` has a reply: the job, or `data: {}` when there is none.
pub(crate) fn answer(m: &UpMessage, id: Value, a: Answer) -> Option<Value> {
    let UpMessage::FirmwareRequest { .. } = m else {
        return None;
    };
    let data = match a {
        Answer::Offer(Some(offer)) => offer_data(&offer),
        _ => json!({}),
    };
    Some(json!({"code": CODE_OK, "data": data, "id": id, "message": "success"}))
}

/// A `get_reply` with an Alink error code, for refused `firmware/get` requests only.
pub(crate) fn error_reply(kind: UpKind, id: Value, error: &ProtocolError) -> Option<Value> {
    if kind != UpKind::FirmwareRequest {
        return None;
    }
    let code = match error {
        ProtocolError::TooLarge { .. } | ProtocolError::InvalidJson(_) => CODE_BAD_REQUEST,
        _ => CODE_BAD_PARAMS,
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
