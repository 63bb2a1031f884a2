//! EnOS payloads (`PROTOCOL.md` §3): JSON-RPC-like requests on `/sys/{pk}/{dk}/ota/device/*`,
//! answered on `*_reply` with the request's own `id` value and an integer `code`.

use serde_json::{Value, json};

use super::{check_method, non_default_module, object, reply_id, size, step_of, step_progress};
use crate::downlink::{Answer, Downlink};
use crate::json::{self, Object};
use crate::topic::{DownKind, UpKind};
use crate::{Dialect, Offer, ProtocolError, UpMessage};

/// Code of a successful reply (always the JSON integer, never `"200"`).
pub const CODE_OK: i64 = 200;
/// Code of the reply to a request Otter could not read.
pub const CODE_BAD_REQUEST: i64 = 400;
/// Progress reply: "Device task not found".
pub const CODE_TASK_NOT_FOUND: i64 = 764;
/// Progress reply: "Device task not start".
pub const CODE_TASK_NOT_STARTED: i64 = 765;

/// Accepted spellings: the docs' names, the SDK's short names, the docs' "process" typo.
const INFORM: &[&str] = &["ota.device.inform", "ota.inform"];
const PROGRESS: &[&str] = &["ota.device.progress", "ota.progress", "ota.device.process"];
const GETVERSION: &[&str] = &["ota.device.getversion", "ota.getversion"];
const UPGRADE: &[&str] = &["ota.device.upgrade", "ota.upgrade"];

pub(crate) fn parse_up(kind: UpKind, obj: &Object) -> Result<UpMessage, ProtocolError> {
    match kind {
        UpKind::VersionReport => {
            check_method(obj, INFORM, "inform")?;
            let params = json::req_obj(obj, "params")?;
            Ok(UpMessage::VersionReport {
                module: json::module(Some(params))?,
                version: json::req_text(params, "version")?,
            })
        }
        UpKind::Progress => {
            check_method(obj, PROGRESS, "progress")?;
            step_progress(json::req_obj(obj, "params")?)
        }
        UpKind::FirmwareRequest => {
            check_method(obj, GETVERSION, "getversion")?;
            Ok(UpMessage::FirmwareRequest {
                module: json::module(json::opt_obj(obj, "params")?)?,
            })
        }
        // Devices answer "1101"/"500" as strings on handler errors; the code is only logged.
        UpKind::UpgradeReply => Ok(UpMessage::UpgradeReply {
            code: json::opt_int(obj, "code")?,
        }),
        UpKind::Report | UpKind::Health => Err(ProtocolError::Unsupported {
            dialect: Dialect::Enos,
            what: "report topic",
        }),
        UpKind::ImageRequest => Err(ProtocolError::Unsupported {
            dialect: Dialect::Enos,
            what: "request topic",
        }),
    }
}

/// Encodes as the EnOS SDK does (`step` a string).
pub(crate) fn encode_up(id: Option<&Value>, m: &UpMessage) -> Result<Value, ProtocolError> {
    let (method, params) = match m {
        UpMessage::Health { counters } => return Ok(crate::health::encode(counters)),
        UpMessage::VersionReport { module, version } => (
            INFORM[0],
            object([
                ("version", Some(Value::from(version.as_str()))),
                ("module", non_default_module(module)),
            ]),
        ),
        UpMessage::Progress {
            module,
            version,
            progress,
        } => {
            let (step, desc) = step_of(Dialect::Enos, progress)?;
            let params = object([
                ("step", Some(Value::from(step.to_string()))),
                ("desc", Some(Value::from(desc))),
                ("module", non_default_module(module)),
                ("version", version.as_deref().map(Value::from)),
            ]);
            (PROGRESS[0], params)
        }
        UpMessage::FirmwareRequest { module } => (
            GETVERSION[0],
            object([("module", non_default_module(module))]),
        ),
        UpMessage::UpgradeReply { code } => {
            return Ok(object([
                ("id", id.cloned()),
                ("code", code.map(Value::from)),
                ("data", Some(Value::from(""))),
                ("message", Some(Value::from(""))),
            ]));
        }
    };
    Ok(object([
        ("id", id.cloned()),
        ("version", Some(Value::from("1.0"))),
        ("method", Some(Value::from(method))),
        ("params", Some(params)),
    ]))
}

/// One firmware as the push params and the getversion list carry it.
fn firmware(offer: &Offer) -> Value {
    json!({
        "version": offer.version,
        "sign": offer.md5.to_ascii_lowercase(),
        "signMethod": "md5",
        "fileUrl": offer.url,
        "fileSize": offer.size,
    })
}

/// `ota.device.upgrade` with the id as a JSON string.
pub(crate) fn encode_push(offer: &Offer, id: u64) -> Value {
    json!({
        "id": id.to_string(),
        "version": "1.0",
        "method": UPGRADE[0],
        "params": firmware(offer),
    })
}

/// A reply: the request's id value untouched, an integer code, a message only on errors.
fn reply(id: Value, code: i64, data: Value, message: Option<&str>) -> Value {
    object([
        ("id", Some(id)),
        ("code", Some(Value::from(code))),
        ("data", Some(data)),
        ("message", message.map(Value::from)),
    ])
}

pub(crate) fn answer(m: &UpMessage, id: Value, a: Answer) -> Option<Value> {
    let payload = match (m, a) {
        (UpMessage::VersionReport { .. }, _) => reply(id, CODE_OK, json!({}), None),
        (UpMessage::Progress { .. }, Answer::TaskNotFound) => reply(
            id,
            CODE_TASK_NOT_FOUND,
            json!({}),
            Some("Device task not found"),
        ),
        (UpMessage::Progress { .. }, Answer::TaskNotStarted) => reply(
            id,
            CODE_TASK_NOT_STARTED,
            json!({}),
            Some("Device task not start"),
        ),
        (UpMessage::Progress { .. }, _) => reply(id, CODE_OK, json!({}), None),
        (UpMessage::FirmwareRequest { .. }, Answer::Offer(Some(offer))) => {
            reply(id, CODE_OK, json!([firmware(&offer)]), None)
        }
        (UpMessage::FirmwareRequest { .. }, _) => reply(id, CODE_OK, json!([]), None),
        (UpMessage::UpgradeReply { .. } | UpMessage::Health { .. }, _) => return None,
    };
    Some(payload)
}

/// Every refused request is answered (the SDK blocks 30 s otherwise); replies are not.
pub(crate) fn error_reply(kind: UpKind, id: Value, error: &ProtocolError) -> Option<Value> {
    let data = match kind {
        UpKind::VersionReport | UpKind::Progress => json!({}),
        UpKind::FirmwareRequest => json!([]),
        UpKind::UpgradeReply | UpKind::Report | UpKind::ImageRequest | UpKind::Health => {
            return None;
        }
    };
    Some(reply(id, CODE_BAD_REQUEST, data, Some(&error.to_string())))
}

/// Reads one firmware object (push params or a getversion list item).
fn parse_firmware(fw: &Object) -> Result<Offer, ProtocolError> {
    let method = json::opt_str(fw, "signMethod")?.unwrap_or("md5");
    let sign = json::opt_str(fw, "sign")?
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (md5, sha256) = if method.eq_ignore_ascii_case("sha256") {
        (String::new(), sign)
    } else {
        (sign, String::new())
    };
    Ok(Offer {
        module: json::module(Some(fw))?,
        version: json::req_text(fw, "version")?,
        url: json::req_str(fw, "fileUrl")?.to_owned(),
        size: size(fw, "fileSize")?,
        md5,
        sha256,
    })
}

pub(crate) fn parse_down(kind: DownKind, obj: &Object) -> Result<Downlink, ProtocolError> {
    match kind {
        DownKind::Push => {
            check_method(obj, UPGRADE, "upgrade")?;
            Ok(Downlink::Push(parse_firmware(json::req_obj(
                obj, "params",
            )?)?))
        }
        DownKind::Reply(_) => Ok(Downlink::Reply {
            id: reply_id(obj),
            code: json::req_int(obj, "code")?,
            data: json::get(obj, "data").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// `getversion_reply` data: a list of firmware objects.
pub(crate) fn reply_offers(data: &Value) -> Result<Vec<Offer>, ProtocolError> {
    match data {
        Value::Null => Ok(vec![]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(fw) => parse_firmware(fw),
                other => Err(ProtocolError::NotAnObject {
                    field: "data".into(),
                    got: json::show(other),
                }),
            })
            .collect(),
        other => Err(ProtocolError::WrongType {
            field: "data".into(),
            expected: "a list",
            got: json::show(other),
        }),
    }
}
