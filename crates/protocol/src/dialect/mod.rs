//! Per-dialect payload codecs. Each module maps its vendor's JSON to the neutral types of
//! [`crate::uplink`] and [`crate::downlink`]; what the dialects share lives here. Only the
//! dialects' reply codes are public; use the crate-level functions for everything else.

pub mod aliyun;
pub mod enos;
pub mod tencent;

use serde_json::{Map, Value};

use crate::json::{self, Object};
use crate::{Progress, ProtocolError, UpMessage};

/// Aliyun/EnOS progress: step 0..=100 is the download percent, a negative step a failure whose
/// code is the step itself (`desc` explains). Steps above 100 are refused.
pub(crate) fn step_progress(params: &Object) -> Result<UpMessage, ProtocolError> {
    let step = json::req_int_in(params, "step", i64::from(i32::MIN), 100)?;
    let progress = match u8::try_from(step) {
        Ok(percent) => Progress::Downloading { percent },
        Err(_) => Progress::Failed {
            code: i32::try_from(step).unwrap_or(i32::MIN),
            message: json::opt_text(params, "desc")?.unwrap_or_default(),
        },
    };
    Ok(UpMessage::Progress {
        module: json::module(Some(params))?,
        version: json::opt_text(params, "version")?,
        progress,
    })
}

/// The `step` and `desc` an Aliyun/EnOS device sends for a progress state.
pub(crate) fn step_of(
    dialect: crate::Dialect,
    p: &Progress,
) -> Result<(i64, String), ProtocolError> {
    match p {
        Progress::Downloading { percent } if *percent <= 100 => {
            Ok((i64::from(*percent), String::new()))
        }
        Progress::Downloading { percent } => Err(ProtocolError::OutOfRange {
            field: "step".into(),
            value: i64::from(*percent),
            min: 0,
            max: 100,
        }),
        Progress::Failed { code, message } if *code < 0 => Ok((i64::from(*code), message.clone())),
        Progress::Failed { code, .. } => Err(ProtocolError::OutOfRange {
            field: "step".into(),
            value: i64::from(*code),
            min: i64::from(i32::MIN),
            max: -1,
        }),
        Progress::Burning | Progress::Done => Err(ProtocolError::Unsupported {
            dialect,
            what: "burning or done progress state",
        }),
    }
}

/// Refuses a `method` that is present but not one of the accepted spellings (case-insensitive).
/// An absent method is fine: the topic already says what the message is.
pub(crate) fn check_method(
    obj: &Object,
    accepted: &[&str],
    topic: &'static str,
) -> Result<(), ProtocolError> {
    match json::opt_str(obj, "method")? {
        Some(m) if !accepted.iter().any(|a| a.eq_ignore_ascii_case(m.trim())) => {
            Err(ProtocolError::UnknownMethod {
                method: m.to_owned(),
                topic,
            })
        }
        _ => Ok(()),
    }
}

/// Builds a JSON object from pairs, leaving out `None` values.
pub(crate) fn object<const N: usize>(pairs: [(&str, Option<Value>); N]) -> Value {
    let map: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    Value::Object(map)
}

/// `Some(module)` unless it is the default module, which SDKs express by leaving it out.
pub(crate) fn non_default_module(module: &str) -> Option<Value> {
    (module != crate::DEFAULT_MODULE && !module.is_empty()).then(|| Value::from(module))
}

/// A file size: a non-negative integer, number or numeric string.
pub(crate) fn size(obj: &Object, name: &str) -> Result<u64, ProtocolError> {
    let n = json::req_int_in(obj, name, 0, i64::MAX)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// The reply `id`, exactly as sent, `null` when absent.
pub(crate) fn reply_id(obj: &Object) -> Value {
    json::get(obj, "id").cloned().unwrap_or(Value::Null)
}
