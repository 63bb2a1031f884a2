//! Lenient, precise JSON field access. Vendor SDKs send numbers as strings (`"percent":"31"`) and
//! versions as numbers; these helpers accept both and report the field and value when they can't.

use serde_json::{Map, Value};

use crate::ProtocolError;

pub(crate) type Object = Map<String, Value>;

/// Longest rendering of an offending value kept in an error message.
const MAX_SHOWN: usize = 64;

/// Compact rendering of a value for error messages, truncated so logs stay readable.
pub(crate) fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= MAX_SHOWN {
        return s;
    }
    let mut end = MAX_SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Parses bytes into a JSON object.
pub(crate) fn parse_object(payload: &[u8]) -> Result<Object, ProtocolError> {
    if payload.len() > crate::MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            size: payload.len(),
            max: crate::MAX_PAYLOAD,
        });
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ProtocolError::NotAnObject {
            field: "payload".into(),
            got: show(&other),
        }),
    }
}

/// A field, with JSON `null` treated as absent (SDKs serialise unset fields as null).
pub(crate) fn get<'a>(obj: &'a Object, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn missing(name: &str) -> ProtocolError {
    ProtocolError::MissingField(name.to_owned())
}

fn wrong(name: &str, expected: &'static str, got: &Value) -> ProtocolError {
    ProtocolError::WrongType {
        field: name.to_owned(),
        expected,
        got: show(got),
    }
}

/// An optional nested object.
pub(crate) fn opt_obj<'a>(
    obj: &'a Object,
    name: &str,
) -> Result<Option<&'a Object>, ProtocolError> {
    match get(obj, name) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(ProtocolError::NotAnObject {
            field: name.to_owned(),
            got: show(other),
        }),
    }
}

/// A required nested object.
pub(crate) fn req_obj<'a>(obj: &'a Object, name: &str) -> Result<&'a Object, ProtocolError> {
    opt_obj(obj, name)?.ok_or_else(|| missing(name))
}

/// An optional string.
pub(crate) fn opt_str<'a>(obj: &'a Object, name: &str) -> Result<Option<&'a str>, ProtocolError> {
    match get(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(name, "a string", other)),
    }
}

/// A required string.
pub(crate) fn req_str<'a>(obj: &'a Object, name: &str) -> Result<&'a str, ProtocolError> {
    opt_str(obj, name)?.ok_or_else(|| missing(name))
}

/// An optional version-like text: a string, or a number rendered as the device wrote it
/// (EnOS devices report `"version": 2`).
pub(crate) fn opt_text(obj: &Object, name: &str) -> Result<Option<String>, ProtocolError> {
    match get(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(wrong(name, "a string or number", other)),
    }
}

/// A required version-like text (see [`opt_text`]).
pub(crate) fn req_text(obj: &Object, name: &str) -> Result<String, ProtocolError> {
    opt_text(obj, name)?.ok_or_else(|| missing(name))
}

/// An optional integer given as a JSON number or a numeric string.
pub(crate) fn opt_int(obj: &Object, name: &str) -> Result<Option<i64>, ProtocolError> {
    match get(obj, name) {
        None => Ok(None),
        Some(v) => to_int(v)
            .map(Some)
            .ok_or_else(|| wrong(name, "a number or numeric string", v)),
    }
}

/// A required integer (see [`opt_int`]).
pub(crate) fn req_int(obj: &Object, name: &str) -> Result<i64, ProtocolError> {
    opt_int(obj, name)?.ok_or_else(|| missing(name))
}

/// A required integer that must lie in `min..=max`.
pub(crate) fn req_int_in(
    obj: &Object,
    name: &str,
    min: i64,
    max: i64,
) -> Result<i64, ProtocolError> {
    let n = req_int(obj, name)?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ProtocolError::OutOfRange {
            field: name.to_owned(),
            value: n,
            min,
            max,
        })
    }
}

/// Integer value of a number or numeric string. Floats count only when they have no fraction:
/// a device reporting `31.0` means 31, one reporting `31.5` is not following any SDK.
pub(crate) fn to_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole)),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(whole))
        }
        _ => None,
    }
}

/// `f` as an integer when it is finite, whole and within i64.
fn whole(f: f64) -> Option<i64> {
    // 2^63 as f64; the range check keeps the cast exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Module name from an optional field: absent or empty means the default module.
pub(crate) fn module(obj: Option<&Object>) -> Result<String, ProtocolError> {
    let m = match obj {
        Some(o) => opt_text(o, "module")?,
        None => None,
    };
    Ok(m.filter(|m| !m.is_empty())
        .unwrap_or_else(|| crate::DEFAULT_MODULE.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_numeric_strings() {
        assert_eq!(to_int(&json!(31)), Some(31));
        assert_eq!(to_int(&json!("31")), Some(31));
        assert_eq!(to_int(&json!(" -4 ")), Some(-4));
        assert_eq!(to_int(&json!(31.0)), Some(31));
        assert_eq!(to_int(&json!("31.0")), Some(31));
        assert_eq!(to_int(&json!(31.5)), None);
        assert_eq!(to_int(&json!("NaN")), None);
        assert_eq!(to_int(&json!("1e300")), None);
        assert_eq!(to_int(&json!(true)), None);
        assert_eq!(to_int(&json!(u64::MAX)), None);
    }

    #[test]
    fn wrong_type_message_names_field_and_value() {
        let obj = json!({"percent": true});
        let Value::Object(o) = obj else {
            unreachable!()
        };
        let err = req_int(&o, "percent").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"field "percent": expected a number or numeric string, got true"#
        );
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = Value::String("é".repeat(100));
        let s = show(&long);
        assert!(s.len() <= MAX_SHOWN + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
