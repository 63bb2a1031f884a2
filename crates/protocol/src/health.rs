//! Otter's health report (docs/protocol-extensions.md "Health reports"): devices that can say
//! how they fare after an update (crashes, reboots, failed application checks) send named
//! counters, which health gates judge per device-hour. Vendor SDK devices never send it; Otter's
//! agent does, from its `--health-command`.
//!
//! One payload for every dialect, `{"type":"otter_health","counters":{"crashes":2}}` (an `id` is
//! allowed and ignored), on Tencent's `$ota/report/{pk}/{dn}`, Alibaba's
//! `/ota/device/otter_health/{pk}/{dn}` and EnOS's `/sys/{pk}/{dn}/ota/device/otter_health`.
//! Counters are increments since the device's previous report.

use crate::{ProtocolError, UpMessage, json};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `type` that marks a health report.
pub const HEALTH_TYPE: &str = "otter_health";
/// Counters in one report at most.
pub const MAX_COUNTERS: usize = 16;
/// The largest increment of one counter in one report.
pub const MAX_INCREMENT: u64 = 1_000_000;

/// Whether an upstream object is a health report (by its `type`).
pub(crate) fn is_health(obj: &Map<String, Value>) -> bool {
    json::get(obj, "type").and_then(Value::as_str) == Some(HEALTH_TYPE)
}

/// A counter name: 1–32 of `a-z`, `0-9`, `_`.
pub fn valid_counter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(crate) fn parse(obj: &Map<String, Value>) -> Result<UpMessage, ProtocolError> {
    let counters = match json::get(obj, "counters") {
        Some(Value::Object(c)) => c,
        Some(other) => {
            return Err(ProtocolError::NotAnObject {
                field: "counters".into(),
                got: other.to_string().chars().take(40).collect(),
            });
        }
        None => return Err(ProtocolError::MissingField("counters".into())),
    };
    if counters.len() > MAX_COUNTERS {
        return Err(ProtocolError::OutOfRange {
            field: "counters".into(),
            value: counters.len() as i64,
            min: 0,
            max: MAX_COUNTERS as i64,
        });
    }
    let mut out = BTreeMap::new();
    for (name, value) in counters {
        if !valid_counter_name(name) {
            return Err(ProtocolError::UnknownValue {
                field: "counters".into(),
                value: name.chars().take(40).collect(),
            });
        }
        let field = format!("counters.{name}");
        let n = value.as_u64().ok_or_else(|| ProtocolError::WrongType {
            field: field.clone(),
            expected: "a non-negative integer",
            got: value.to_string().chars().take(40).collect(),
        })?;
        if n > MAX_INCREMENT {
            return Err(ProtocolError::OutOfRange {
                field,
                value: i64::try_from(n).unwrap_or(i64::MAX),
                min: 0,
                max: MAX_INCREMENT as i64,
            });
        }
        out.insert(name.clone(), n);
    }
    Ok(UpMessage::Health { counters: out })
}

pub(crate) fn encode(counters: &BTreeMap<String, u64>) -> Value {
    serde_json::json!({ "type": HEALTH_TYPE, "counters": counters })
}

#[cfg(test)]
mod tests {
    use crate::{DeviceAddr, Dialect, UpMessage, Uplink, parse_uplink, try_encode_uplink};

    const REPORT: &str = r#"{"type":"otter_health","counters":{"crashes":2,"reboots":1}}"#;

    #[test]
    fn every_dialect_carries_the_same_report() {
        for (dialect, topic) in [
            (Dialect::Tencent, "$ota/report/P1/d1"),
            (Dialect::Aliyun, "/ota/device/otter_health/P1/d1"),
            (Dialect::Enos, "/sys/P1/d1/ota/device/otter_health"),
        ] {
            let u = parse_uplink(topic, REPORT.as_bytes()).unwrap();
            assert_eq!(u.dialect, dialect);
            let UpMessage::Health { counters } = &u.message else {
                panic!("{topic}: {:?}", u.message)
            };
            assert_eq!(counters["crashes"], 2);
            let out = try_encode_uplink(&Uplink {
                dialect,
                device: DeviceAddr::new("P1", "d1"),
                request_id: None,
                message: u.message.clone(),
                via: None,
            })
            .unwrap();
            assert_eq!(out.topic, topic);
            assert_eq!(
                parse_uplink(&out.topic, &out.payload).unwrap().message,
                u.message
            );
            assert!(
                crate::topic::upstream_topics(dialect, &DeviceAddr::new("P1", "d1"))
                    .contains(&topic.to_owned()),
                "{topic} is granted"
            );
        }
    }

    #[test]
    fn bad_reports_say_what_is_wrong() {
        for (payload, says) in [
            (r#"{"type":"otter_health"}"#, "missing field \"counters\""),
            (
                r#"{"type":"otter_health","counters":[1]}"#,
                "expected a JSON object",
            ),
            (
                r#"{"type":"otter_health","counters":{"Crash!":1}}"#,
                "unknown value",
            ),
            (
                r#"{"type":"otter_health","counters":{"crashes":-1}}"#,
                "non-negative integer",
            ),
            (
                r#"{"type":"otter_health","counters":{"crashes":"1"}}"#,
                "non-negative integer",
            ),
            (
                r#"{"type":"otter_health","counters":{"crashes":1000001}}"#,
                "out of range",
            ),
        ] {
            let e = parse_uplink("/ota/device/otter_health/P1/d1", payload.as_bytes()).unwrap_err();
            assert!(e.error.to_string().contains(says), "{payload}: {}", e.error);
        }
        let many: String = (0..17)
            .map(|i| format!("\"c{i}\":1"))
            .collect::<Vec<_>>()
            .join(",");
        let payload = format!(r#"{{"type":"otter_health","counters":{{{many}}}}}"#);
        assert!(parse_uplink("$ota/report/P1/d1", payload.as_bytes()).is_err());
    }
}
