//! Tencent IoT Hub payloads (`PROTOCOL.md` §1): `report_version` / `report_progress` up,
//! `report_version_rsp` / `update_firmware` down, all on one topic per direction.

use serde_json::{Value, json};

use super::size;
use crate::json::{self, Object};
use crate::topic::UpKind;
use crate::{DEFAULT_MODULE, Offer, Progress, ProtocolError, UpMessage, downlink::Downlink};

/// `result_code` Otter sends in a `report_version_rsp` for a report it could not read.
pub const RSP_ERROR_CODE: i64 = 1;

/// Parses a `$ota/report` payload. Returns the kind its `type` names (or
/// [`UpKind::Report`] when the type is unreadable) so error replies know what it was.
pub(crate) fn parse_up(obj: &Object) -> (UpKind, Result<UpMessage, ProtocolError>) {
    let ty = match json::req_str(obj, "type") {
        Ok(ty) => ty.trim(),
        Err(e) => return (UpKind::Report, Err(e)),
    };
    if ty.eq_ignore_ascii_case("report_version") {
        (UpKind::VersionReport, parse_version(obj))
    } else if ty.eq_ignore_ascii_case("report_progress") {
        (UpKind::Progress, parse_progress(obj))
    } else {
        let err = ProtocolError::UnknownValue {
            field: "type".into(),
            value: ty.to_owned(),
        };
        (UpKind::Report, Err(err))
    }
}

fn parse_version(obj: &Object) -> Result<UpMessage, ProtocolError> {
    let report = json::req_obj(obj, "report")?;
    Ok(UpMessage::VersionReport {
        module: DEFAULT_MODULE.to_owned(),
        version: json::req_text(report, "version")?,
    })
}

fn parse_progress(obj: &Object) -> Result<UpMessage, ProtocolError> {
    let report = json::req_obj(obj, "report")?;
    let p = json::req_obj(report, "progress")?;
    let state = json::req_str(p, "state")?.trim();
    let progress = match state.to_ascii_lowercase().as_str() {
        "downloading" => Progress::Downloading {
            percent: u8::try_from(json::req_int_in(p, "percent", 0, 100)?).unwrap_or(100),
        },
        "burning" => Progress::Burning,
        "done" => Progress::Done,
        "fail" | "failed" => Progress::Failed {
            code: i32_field(p, "result_code")?,
            message: json::opt_text(p, "result_msg")?.unwrap_or_default(),
        },
        _ => {
            return Err(ProtocolError::UnknownValue {
                field: "state".into(),
                value: state.to_owned(),
            });
        }
    };
    Ok(UpMessage::Progress {
        module: DEFAULT_MODULE.to_owned(),
        version: json::opt_text(report, "version")?,
        progress,
    })
}

fn i32_field(obj: &Object, name: &str) -> Result<i32, ProtocolError> {
    let n = json::req_int_in(obj, name, i64::from(i32::MIN), i64::from(i32::MAX))?;
    Ok(i32::try_from(n).unwrap_or_default())
}

/// Encodes as Tencent's C SDK does: numbers as strings inside `progress`.
pub(crate) fn encode_up(m: &UpMessage) -> Result<Value, ProtocolError> {
    match m {
        UpMessage::VersionReport { version, .. } => Ok(json!({
            "type": "report_version",
            "report": {"version": version},
        })),
        UpMessage::Progress {
            version, progress, ..
        } => {
            let progress = match progress {
                Progress::Downloading { percent } => json!({
                    "state": "downloading", "percent": percent.to_string(),
                    "result_code": "0", "result_msg": "",
                }),
                Progress::Burning => {
                    json!({"state": "burning", "result_code": "0", "result_msg": ""})
                }
                Progress::Done => json!({"state": "done", "result_code": "0", "result_msg": ""}),
                Progress::Failed { code, message } => json!({
                    "state": "fail", "result_code": code.to_string(), "result_msg": message,
                }),
            };
            let mut report = json!({ "progress": progress });
            if let (Some(v), Value::Object(r)) = (version, &mut report) {
                r.insert("version".into(), Value::from(v.as_str()));
            }
            Ok(json!({"type": "report_progress", "report": report}))
        }
        UpMessage::FirmwareRequest { .. } => Err(unsupported("firmware request")),
        UpMessage::UpgradeReply { .. } => Err(unsupported("upgrade reply")),
        UpMessage::Health { counters } => Ok(crate::health::encode(counters)),
    }
}

fn unsupported(what: &'static str) -> ProtocolError {
    ProtocolError::Unsupported {
        dialect: crate::Dialect::Tencent,
        what,
    }
}

/// `update_firmware`: `md5sum` lowercase, `file_size` a JSON number.
pub(crate) fn encode_push(offer: &Offer) -> Value {
    json!({
        "type": "update_firmware",
        "version": offer.version,
        "url": offer.url,
        "md5sum": offer.md5.to_ascii_lowercase(),
        "file_size": offer.size,
    })
}

/// `report_version_rsp` with the number 0 for every version report; nothing for progress.
pub(crate) fn answer(m: &UpMessage) -> Option<Value> {
    match m {
        UpMessage::VersionReport { version, .. } => Some(json!({
            "type": "report_version_rsp",
            "result_code": 0,
            "result_msg": "success",
            "version": version,
        })),
        _ => None,
    }
}

/// A failed `report_version_rsp`, only for messages that were a `report_version`.
pub(crate) fn error_reply(kind: UpKind, error: &ProtocolError) -> Option<Value> {
    (kind == UpKind::VersionReport).then(|| {
        json!({
            "type": "report_version_rsp",
            "result_code": RSP_ERROR_CODE,
            "result_msg": error.to_string(),
        })
    })
}

/// `$ota/update` payloads, for the agent.
pub(crate) fn parse_down(obj: &Object) -> Result<Downlink, ProtocolError> {
    let ty = json::req_str(obj, "type")?.trim();
    if ty.eq_ignore_ascii_case("update_firmware") {
        return Ok(Downlink::Push(Offer {
            module: DEFAULT_MODULE.to_owned(),
            version: json::req_text(obj, "version")?,
            url: json::req_str(obj, "url")?.to_owned(),
            size: size(obj, "file_size")?,
            md5: json::req_str(obj, "md5sum")?.to_ascii_lowercase(),
            sha256: String::new(),
        }));
    }
    if ty.eq_ignore_ascii_case("report_version_rsp") {
        let code = json::opt_int(obj, "result_code")?.unwrap_or(0);
        return Ok(if code == 0 {
            Downlink::VersionAck {
                version: json::opt_text(obj, "version")?.unwrap_or_default(),
            }
        } else {
            Downlink::Reply {
                id: Value::Null,
                code,
                data: Value::from(json::opt_text(obj, "result_msg")?.unwrap_or_default()),
            }
        });
    }
    Err(ProtocolError::UnknownValue {
        field: "type".into(),
        value: ty.to_owned(),
    })
}
