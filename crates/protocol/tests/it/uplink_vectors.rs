//! Device → cloud payloads exactly as the vendor SDKs and documents in PROTOCOL.md write them.

use otter_protocol::{
    DeviceAddr, Dialect, Progress, ProtocolError, UpKind, UpMessage, Uplink, parse_uplink,
};
use serde_json::{Value, json};

fn ok(topic: &str, payload: &str) -> Uplink {
    match parse_uplink(topic, payload.as_bytes()) {
        Ok(u) => u,
        Err(r) => panic!("{payload} rejected: {}", r.error),
    }
}

fn err(topic: &str, payload: &str) -> ProtocolError {
    match parse_uplink(topic, payload.as_bytes()) {
        Ok(u) => panic!("{payload} accepted as {u:?}"),
        Err(r) => r.error,
    }
}

fn progress(u: &Uplink) -> (&Option<String>, &Progress) {
    match &u.message {
        UpMessage::Progress {
            version, progress, ..
        } => (version, progress),
        other => panic!("not progress: {other:?}"),
    }
}

const TC: &str = "$ota/report/PRODUCT1/dev1";

#[test]
fn tencent_sdk_strings() {
    let u = ok(
        TC,
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    );
    assert_eq!(u.dialect, Dialect::Tencent);
    assert_eq!(u.device, DeviceAddr::new("PRODUCT1", "dev1"));
    assert_eq!(u.request_id, None);
    assert_eq!(
        u.message,
        UpMessage::VersionReport {
            module: "default".into(),
            version: "1.0.0".into()
        }
    );

    let u = ok(
        TC,
        r#"{"type": "report_progress", "report": {"progress": {"state":"downloading", "percent":"31", "result_code":"0", "result_msg":""}, "version": "1.3.0"}}"#,
    );
    assert_eq!(
        progress(&u),
        (
            &Some("1.3.0".into()),
            &Progress::Downloading { percent: 31 }
        )
    );
    let u = ok(
        TC,
        r#"{"type": "report_progress", "report":{"progress":{"state":"burning", "result_code":"0", "result_msg":""}, "version":"1.3.0"}}"#,
    );
    assert_eq!(progress(&u).1, &Progress::Burning);
    let u = ok(
        TC,
        r#"{"type": "report_progress", "report":{"progress":{"state":"done", "result_code":"0", "result_msg":""}, "version":"1.3.0"}}"#,
    );
    assert_eq!(progress(&u).1, &Progress::Done);
    let u = ok(
        TC,
        r#"{"type": "report_progress", "report": {"progress": {"state":"fail", "result_code":"-4", "result_msg":"time_out"}, "version": "1.3.0"}}"#,
    );
    assert_eq!(
        progress(&u).1,
        &Progress::Failed {
            code: -4,
            message: "time_out".into()
        }
    );
}

#[test]
fn tencent_numbers_may_be_numbers_too() {
    let u = ok(
        TC,
        r#"{"report":{"progress":{"percent":100,"state":"DOWNLOADING"}},"type":"report_progress","extra":1}"#,
    );
    assert_eq!(
        progress(&u),
        (&None, &Progress::Downloading { percent: 100 })
    );
    let u = ok(
        TC,
        r#"{"type":"report_progress","report":{"progress":{"state":"fail","result_code":-2}}}"#,
    );
    assert_eq!(
        progress(&u).1,
        &Progress::Failed {
            code: -2,
            message: String::new()
        }
    );
}

#[test]
fn tencent_errors_are_precise() {
    let e = err(
        TC,
        r#"{"type":"report_progress","report":{"progress":{"state":"downloading","percent":true}}}"#,
    );
    assert_eq!(
        e.to_string(),
        r#"field "percent": expected a number or numeric string, got true"#
    );
    let e = err(
        TC,
        r#"{"type":"report_progress","report":{"progress":{"state":"downloading","percent":"101"}}}"#,
    );
    assert_eq!(
        e.to_string(),
        r#"field "percent": 101 is out of range 0..=100"#
    );
    let e = err(
        TC,
        r#"{"type":"report_progress","report":{"progress":{"state":"downloading","percent":-1}}}"#,
    );
    assert!(matches!(e, ProtocolError::OutOfRange { value: -1, .. }));
    let e = err(TC, r#"{"type":"report_version","report":{}}"#);
    assert_eq!(e.to_string(), r#"missing field "version""#);
    let e = err(TC, r#"{"type":"hello"}"#);
    assert_eq!(e.to_string(), r#"field "type": unknown value "hello""#);
    let e = err(
        TC,
        r#"{"type":"report_progress","report":{"progress":{"state":"exploded"}}}"#,
    );
    assert_eq!(e.to_string(), r#"field "state": unknown value "exploded""#);
    assert!(matches!(err(TC, "{"), ProtocolError::InvalidJson(_)));
    assert_eq!(
        err(TC, "[1]").to_string(),
        r#"field "payload": expected a JSON object, got [1]"#
    );
}

#[test]
fn tencent_rejection_knows_it_was_a_version_report() {
    let r = parse_uplink(TC, br#"{"type":"report_version","report":{"version":[]}}"#).unwrap_err();
    let (d, kind, dev) = r.topic.unwrap();
    assert_eq!((d, kind), (Dialect::Tencent, UpKind::VersionReport));
    assert_eq!(dev, DeviceAddr::new("PRODUCT1", "dev1"));
    let r = parse_uplink(TC, br#"{"type":"nope"}"#).unwrap_err();
    assert_eq!(r.topic.unwrap().1, UpKind::Report);
}

#[test]
fn oversized_payload_is_refused_before_parsing() {
    let big = vec![b' '; otter_protocol::MAX_PAYLOAD + 1];
    let r = parse_uplink(TC, &big).unwrap_err();
    assert!(
        matches!(r.error, ProtocolError::TooLarge { .. }),
        "{:?}",
        r.error
    );
    assert!(r.topic.is_some());
}

#[test]
fn unknown_topic() {
    let r = parse_uplink("/foo/bar", b"{}").unwrap_err();
    assert_eq!(r.topic, None);
    assert_eq!(r.error, ProtocolError::UnknownTopic("/foo/bar".into()));
}

const AL_INFORM: &str = "/ota/device/inform/a1B2c3D4e5F/device01";
const AL_PROGRESS: &str = "/ota/device/progress/a1B2c3D4e5F/device01";
const AL_GET: &str = "/sys/a1B2c3D4e5F/device01/thing/ota/firmware/get";

#[test]
fn aliyun_inform() {
    let u = ok(AL_INFORM, r#"{"id":1,"params":{"version":"1-45-345a"}}"#);
    assert_eq!(u.dialect, Dialect::Aliyun);
    assert_eq!(u.request_id, Some(json!(1)));
    assert_eq!(
        u.message,
        UpMessage::VersionReport {
            module: "default".into(),
            version: "1-45-345a".into()
        }
    );
    let u = ok(
        AL_INFORM,
        r#"{"id":"7","params":{"version":"res-1.2.5","module":"resource"}}"#,
    );
    assert_eq!(
        u.message,
        UpMessage::VersionReport {
            module: "resource".into(),
            version: "res-1.2.5".into()
        }
    );
}

#[test]
fn aliyun_progress() {
    let u = ok(
        AL_PROGRESS,
        r#"{"id":1,"params":{"step":23,"desc":"…","module":"resource"}}"#,
    );
    assert_eq!(
        u.message,
        UpMessage::Progress {
            module: "resource".into(),
            version: None,
            progress: Progress::Downloading { percent: 23 }
        }
    );
    // The seed simulator's JSON.stringify output.
    let u = ok(
        AL_PROGRESS,
        r#"{"id":1,"params":{"step":23,"desc":" xxxxxxxx "}}"#,
    );
    assert_eq!(progress(&u).1, &Progress::Downloading { percent: 23 });
    for step in -4..=-1 {
        let u = ok(
            AL_PROGRESS,
            &format!(r#"{{"id":1,"params":{{"step":"{step}","desc":"boom"}}}}"#),
        );
        assert_eq!(
            progress(&u).1,
            &Progress::Failed {
                code: step,
                message: "boom".into()
            }
        );
    }
    let e = err(AL_PROGRESS, r#"{"id":1,"params":{"step":101}}"#);
    assert!(matches!(e, ProtocolError::OutOfRange { value: 101, .. }));
    let e = err(AL_PROGRESS, r#"{"id":1,"params":{"desc":"x"}}"#);
    assert_eq!(e.to_string(), r#"missing field "step""#);
}

#[test]
fn aliyun_firmware_get() {
    let u = ok(
        AL_GET,
        r#"{"id":"2","version":"1.0","method":"thing.ota.firmware.get","params":{"module":"mcu"}}"#,
    );
    assert_eq!(u.request_id, Some(json!("2")));
    assert_eq!(
        u.message,
        UpMessage::FirmwareRequest {
            module: "mcu".into()
        }
    );
    let u = ok(
        AL_GET,
        r#"{"id":"3","version":"1.0","method":"THING.OTA.FIRMWARE.GET"}"#,
    );
    assert_eq!(
        u.message,
        UpMessage::FirmwareRequest {
            module: "default".into()
        }
    );
    let r = parse_uplink(AL_GET, br#"{"id":"4","method":"thing.event.post"}"#).unwrap_err();
    assert_eq!(r.request_id, Some(json!("4")));
    assert!(matches!(r.error, ProtocolError::UnknownMethod { .. }));
}

const AL_REQUEST: &str = "/ota/device/request/a1B2c3D4e5F/device01";

/// Alibaba's C SDK (iotkit-embedded 3.x, `iotx_req_image`) asks for its job on the request
/// topic; Alibaba's document writes the id as a number.
#[test]
fn aliyun_request_topic() {
    let u = ok(AL_REQUEST, r#"{"id":"0","params":{"version":"1.0.0"}}"#);
    assert_eq!(u.dialect, Dialect::Aliyun);
    assert_eq!(u.device, DeviceAddr::new("a1B2c3D4e5F", "device01"));
    assert_eq!(u.request_id, Some(json!("0")));
    assert_eq!(
        u.message,
        UpMessage::FirmwareRequest {
            module: "default".into()
        }
    );
    assert_eq!(u.via, Some(UpKind::ImageRequest));
    assert_eq!(u.kind(), UpKind::ImageRequest);
    let u = ok(AL_REQUEST, r#"{"id":1,"params":{"version":"1.0.1"}}"#);
    assert_eq!(u.request_id, Some(json!(1)));
    let u = ok(
        AL_REQUEST,
        r#"{ "params" : { "module":"mcu", "version": 2 }, "id":7 }"#,
    );
    assert_eq!(
        u.message,
        UpMessage::FirmwareRequest {
            module: "mcu".into()
        }
    );
    // Other topics' messages keep their own kind.
    assert_eq!(
        ok(AL_GET, r#"{"id":"2","params":{}}"#).via,
        None,
        "firmware/get is not the request topic"
    );
}

#[test]
fn aliyun_request_topic_errors_are_precise() {
    assert_eq!(
        err(AL_REQUEST, r#"{"id":"0"}"#),
        ProtocolError::MissingField("params".into())
    );
    assert!(matches!(
        err(AL_REQUEST, r#"{"id":"0","params":"1.0.0"}"#),
        ProtocolError::NotAnObject { .. }
    ));
    assert!(matches!(
        err(AL_REQUEST, r#"{"id":"0","params":{"version":{}}}"#),
        ProtocolError::WrongType { .. }
    ));
    // An answer on the same topic (Otter's own, heard back through a broker) is no request.
    for answer in [
        r#"{"code":"1000","data":{},"id":"0","message":"success"}"#,
        r#"{"code":"460","data":{},"id":"0","message":"missing field"}"#,
        r#"{"message":"success"}"#,
    ] {
        let r = parse_uplink(AL_REQUEST, answer.as_bytes()).unwrap_err();
        assert_eq!(
            r.error,
            ProtocolError::AnswerNotRequest {
                topic: "/ota/device/request"
            },
            "{answer}"
        );
        assert_eq!(
            r.topic,
            Some((
                Dialect::Aliyun,
                UpKind::ImageRequest,
                DeviceAddr::new("a1B2c3D4e5F", "device01")
            ))
        );
    }
}

const EN: &str = "/sys/pk9/dk9/ota/device";

fn en(what: &str) -> String {
    format!("{EN}/{what}")
}

#[test]
fn enos_inform() {
    let u = ok(
        &en("inform"),
        r#"{"id":"123","version":"1.0","method":"ota.device.inform","params":{"version":"xxxxxxxx"}}"#,
    );
    assert_eq!(u.dialect, Dialect::Enos);
    assert_eq!(u.device, DeviceAddr::new("pk9", "dk9"));
    assert_eq!(u.request_id, Some(Value::String("123".into())));
    assert_eq!(
        u.message,
        UpMessage::VersionReport {
            module: "default".into(),
            version: "xxxxxxxx".into()
        }
    );
    // The SDK's short method name and a numeric version.
    let u = ok(
        &en("inform"),
        r#"{"id":"9","version":"1.0","method":"ota.inform","params":{"version":2}}"#,
    );
    assert_eq!(
        u.message,
        UpMessage::VersionReport {
            module: "default".into(),
            version: "2".into()
        }
    );
    let e = err(
        &en("inform"),
        r#"{"id":"9","method":"ota.device.progress","params":{"version":"1"}}"#,
    );
    assert_eq!(
        e.to_string(),
        r#"method "ota.device.progress" does not belong on the inform topic"#
    );
}

#[test]
fn enos_progress() {
    let u = ok(
        &en("progress"),
        r#"{"id":"123","version":"1.0","method":"ota.device.progress","params":{"step":"1","desc":"desc"}}"#,
    );
    assert_eq!(progress(&u).1, &Progress::Downloading { percent: 1 });
    let u = ok(
        &en("progress"),
        r#"{"id":"5","method":"ota.progress","params":{"step":"35","desc":"35"}}"#,
    );
    assert_eq!(progress(&u).1, &Progress::Downloading { percent: 35 });
    let u = ok(&en("progress"), r#"{"id":"5","params":{"step":0}}"#);
    assert_eq!(progress(&u).1, &Progress::Downloading { percent: 0 });
    for (step, msg) in [(-3, "verify"), (-5, "ignored"), (-7, "custom")] {
        let u = ok(
            &en("progress"),
            &format!(r#"{{"id":"5","params":{{"step":"{step}","desc":"{msg}"}}}}"#),
        );
        assert_eq!(
            progress(&u).1,
            &Progress::Failed {
                code: step,
                message: msg.into()
            }
        );
    }
    let e = err(&en("progress"), r#"{"id":"5","params":{"step":"abc"}}"#);
    assert_eq!(
        e.to_string(),
        r#"field "step": expected a number or numeric string, got "abc""#
    );
}

#[test]
fn enos_getversion() {
    for method in ["ota.device.getversion", "Ota.device.getversion"] {
        let u = ok(
            &en("getversion"),
            &format!(r#"{{"id":"123","version":"1.0","method":"{method}","params":{{}}}}"#),
        );
        assert_eq!(
            u.message,
            UpMessage::FirmwareRequest {
                module: "default".into()
            }
        );
        assert_eq!(u.kind(), UpKind::FirmwareRequest);
    }
}

#[test]
fn enos_upgrade_reply() {
    let u = ok(
        &en("upgrade_reply"),
        r#"{"id":"123","code":200,"data":"","message":""}"#,
    );
    assert_eq!(u.message, UpMessage::UpgradeReply { code: Some(200) });
    let u = ok(&en("upgrade_reply"), r#"{"id":"123","code":"1101"}"#);
    assert_eq!(u.message, UpMessage::UpgradeReply { code: Some(1101) });
    let u = ok(&en("upgrade_reply"), r#"{"id":"123"}"#);
    assert_eq!(u.message, UpMessage::UpgradeReply { code: None });
}
