//! Cloud → device payloads: exact field names and JSON types the vendor SDKs require
//! (PROTOCOL.md §1–3), replies, error replies, and parsing the documents' own examples.

use otter_protocol::{
    Answer, DeviceAddr, Dialect, Downlink, Offer, OfferExt, Outbound, Rejected, add_ext_to_reply,
    answer, encode_push, error_reply, is_own_answer, parse_downlink, parse_uplink, reply_exts,
    reply_offers,
};
use serde_json::{Value, json};

fn offer() -> Offer {
    Offer {
        module: "default".into(),
        version: "1.3.0".into(),
        url: "http://fw.example/f/abc?t=1".into(),
        size: 175436,
        md5: "5A1A416F357F17BFA89823D2FD49EF8B".into(),
        sha256: "ab".repeat(32),
    }
}

fn body(o: &Outbound) -> Value {
    serde_json::from_slice(&o.payload).unwrap()
}

fn dev() -> DeviceAddr {
    DeviceAddr::new("pk1", "dn1")
}

fn up(topic: &str, payload: &str) -> otter_protocol::Uplink {
    parse_uplink(topic, payload.as_bytes()).unwrap()
}

fn rejected(topic: &str, payload: &str) -> Rejected {
    parse_uplink(topic, payload.as_bytes()).unwrap_err()
}

#[test]
fn tencent_push_has_exact_fields_and_types() {
    let o = encode_push(Dialect::Tencent, &dev(), &offer(), 42);
    assert_eq!(o.topic, "$ota/update/pk1/dn1");
    assert_eq!(o.qos, 1);
    assert_eq!(
        body(&o),
        json!({
            "type": "update_firmware",
            "version": "1.3.0",
            "url": "http://fw.example/f/abc?t=1",
            "md5sum": "5a1a416f357f17bfa89823d2fd49ef8b",
            "file_size": 175436
        })
    );
    assert!(body(&o)["file_size"].is_u64());
}

#[test]
fn aliyun_push_has_exact_fields_and_types() {
    let mut o = offer();
    o.module = "resource".into();
    let out = encode_push(Dialect::Aliyun, &dev(), &o, 1617773607348);
    assert_eq!(out.topic, "/ota/device/upgrade/pk1/dn1");
    assert_eq!(
        body(&out),
        json!({
            "code": "1000",
            "data": {
                "size": 175436,
                "version": "1.3.0",
                "url": "http://fw.example/f/abc?t=1",
                "signMethod": "Md5",
                "sign": "5a1a416f357f17bfa89823d2fd49ef8b",
                "md5": "5a1a416f357f17bfa89823d2fd49ef8b",
                "module": "resource"
            },
            "id": 1617773607348u64,
            "message": "success"
        })
    );
    // The default module is expressed by leaving it out.
    let out = encode_push(Dialect::Aliyun, &dev(), &offer(), 1);
    assert!(body(&out)["data"].get("module").is_none());
}

#[test]
fn enos_push_has_exact_fields_and_types() {
    let out = encode_push(Dialect::Enos, &dev(), &offer(), 77);
    assert_eq!(out.topic, "/sys/pk1/dn1/ota/device/upgrade");
    assert_eq!(
        body(&out),
        json!({
            "id": "77",
            "version": "1.0",
            "method": "ota.device.upgrade",
            "params": {
                "version": "1.3.0",
                "sign": "5a1a416f357f17bfa89823d2fd49ef8b",
                "signMethod": "md5",
                "fileUrl": "http://fw.example/f/abc?t=1",
                "fileSize": 175436
            }
        })
    );
}

#[test]
fn tencent_answers() {
    let u = up(
        "$ota/report/pk1/dn1",
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    );
    let o = answer(&u, Answer::Ack).unwrap();
    assert_eq!(o.topic, "$ota/update/pk1/dn1");
    assert_eq!(
        body(&o),
        json!({"type":"report_version_rsp","result_code":0,"result_msg":"success","version":"1.0.0"})
    );
    assert!(
        body(&o)["result_code"].is_i64(),
        "the number 0, never \"0\""
    );
    let p = up(
        "$ota/report/pk1/dn1",
        r#"{"type":"report_progress","report":{"progress":{"state":"burning"}}}"#,
    );
    assert_eq!(answer(&p, Answer::Ack), None);
}

#[test]
fn tencent_error_reply_only_for_version_reports() {
    let r = rejected(
        "$ota/report/pk1/dn1",
        r#"{"type":"report_version","report":{}}"#,
    );
    let o = error_reply(&r).unwrap();
    assert_eq!(o.topic, "$ota/update/pk1/dn1");
    let b = body(&o);
    assert_eq!(b["type"], "report_version_rsp");
    assert_ne!(b["result_code"], json!(0));
    assert_eq!(b["result_msg"], r#"missing field "version""#);
    let r = rejected(
        "$ota/report/pk1/dn1",
        r#"{"type":"report_progress","report":{}}"#,
    );
    assert_eq!(error_reply(&r), None);
    assert_eq!(error_reply(&rejected("nope", "{}")), None);
}

#[test]
fn aliyun_answers() {
    let inform = up(
        "/ota/device/inform/pk1/dn1",
        r#"{"id":1,"params":{"version":"1"}}"#,
    );
    assert_eq!(answer(&inform, Answer::Ack), None);
    let get = up(
        "/sys/pk1/dn1/thing/ota/firmware/get",
        r#"{"id":"2","version":"1.0","method":"thing.ota.firmware.get","params":{}}"#,
    );
    let none = answer(&get, Answer::Offer(None)).unwrap();
    assert_eq!(none.topic, "/sys/pk1/dn1/thing/ota/firmware/get_reply");
    assert_eq!(
        body(&none),
        json!({"code":200,"data":{},"id":"2","message":"success"})
    );
    let some = body(&answer(&get, Answer::Offer(Some(offer()))).unwrap());
    assert_eq!(some["code"], json!(200));
    assert_eq!(some["id"], json!("2"));
    let push = body(&encode_push(Dialect::Aliyun, &dev(), &offer(), 1));
    assert_eq!(some["data"], push["data"], "same fields as the push");

    let bad = rejected(
        "/sys/pk1/dn1/thing/ota/firmware/get",
        r#"{"id":"3","params":[]}"#,
    );
    let e = body(&error_reply(&bad).unwrap());
    assert_eq!(e["id"], json!("3"));
    assert_eq!(e["code"], json!(460));
    assert_eq!(
        e["message"],
        r#"field "params": expected a JSON object, got []"#
    );
    let bad_inform = rejected("/ota/device/inform/pk1/dn1", "{}");
    assert_eq!(error_reply(&bad_inform), None);
}

/// The request topic (iotkit-embedded 3.x): the SDK's exact request, answered on the same topic
/// in the push's shape with the request's id.
#[test]
fn aliyun_request_topic_is_answered_on_itself_in_the_push_shape() {
    let t = "/ota/device/request/pk1/dn1";
    let req = up(t, r#"{"id":"0","params":{"version":"1.0.0"}}"#);
    let some = answer(&req, Answer::Offer(Some(offer()))).unwrap();
    assert_eq!(some.topic, t);
    assert_eq!(some.qos, 1);
    let push = body(&encode_push(Dialect::Aliyun, &dev(), &offer(), 1));
    assert_eq!(
        body(&some),
        json!({
            "code": "1000",
            "data": {
                "size": 175436,
                "version": "1.3.0",
                "url": "http://fw.example/f/abc?t=1",
                "signMethod": "Md5",
                "sign": "5a1a416f357f17bfa89823d2fd49ef8b",
                "md5": "5a1a416f357f17bfa89823d2fd49ef8b"
            },
            "id": "0",
            "message": "success"
        })
    );
    assert_eq!(body(&some)["data"], push["data"], "same fields as the push");
    assert!(body(&some)["size"].is_null() && body(&some)["data"]["size"].is_u64());

    // No job: the push's shape with empty data and nothing reading "url", which the C SDK
    // (otamqtt_UpgrageCb) drops without handing it to its OTA handler.
    for a in [Answer::Offer(None), Answer::Ack] {
        let none = answer(&req, a).unwrap();
        assert_eq!(none.topic, t);
        assert_eq!(
            body(&none),
            json!({"code":"1000","data":{},"id":"0","message":"success"})
        );
        assert!(
            !String::from_utf8(none.payload.clone())
                .unwrap()
                .contains("url")
        );
    }
    let numeric = up(t, r#"{"id":1,"params":{"version":"1.0.1"}}"#);
    assert_eq!(
        body(&answer(&numeric, Answer::Offer(None)).unwrap())["id"],
        json!(1)
    );

    // Agents read the answer back like a get_reply.
    let (d, a, down) = parse_downlink(t, &some.payload).unwrap();
    assert_eq!((d, a), (Dialect::Aliyun, dev()));
    let Downlink::Reply { id, code, data } = down else {
        panic!("not a reply")
    };
    assert_eq!((id, code), (json!("0"), 1000));
    let mut carried = offer();
    carried.md5 = carried.md5.to_ascii_lowercase();
    carried.sha256 = String::new();
    assert_eq!(reply_offers(Dialect::Aliyun, &data).unwrap(), vec![carried]);

    // The otter extension rides in data, as in the push.
    let ext = OfferExt {
        sha256: Some("ab".repeat(32)),
        ..Default::default()
    };
    let mut with_ext = some.clone();
    add_ext_to_reply(&mut with_ext, &ext);
    let Downlink::Reply { data, .. } = parse_downlink(t, &with_ext.payload).unwrap().2 else {
        panic!("not a reply")
    };
    assert_eq!(reply_exts(Dialect::Aliyun, &data).unwrap(), vec![Some(ext)]);

    // Malformed requests get the answer shape with an Alink code; answers are never answered.
    let bad = rejected(t, r#"{"id":"3","params":[]}"#);
    let e = body(&error_reply(&bad).unwrap());
    assert_eq!((&e["id"], &e["code"]), (&json!("3"), &json!("460")));
    assert_eq!(e["data"], json!({}));
    assert_eq!(error_reply(&bad).unwrap().topic, t);
    let garbage = rejected(t, "not json");
    assert_eq!(body(&error_reply(&garbage).unwrap())["code"], json!("400"));
    for out in [&some, &with_ext, &error_reply(&bad).unwrap()] {
        assert!(is_own_answer(t, &out.payload));
        let heard = rejected(t, std::str::from_utf8(&out.payload).unwrap());
        assert_eq!(error_reply(&heard), None, "never answer an answer");
    }
    assert!(!is_own_answer(
        t,
        br#"{"id":"0","params":{"version":"1.0.0"}}"#
    ));
    assert!(!is_own_answer(t, b"not json"));
    assert!(!is_own_answer(
        "/sys/pk1/dn1/thing/ota/firmware/get",
        br#"{"code":200,"data":{},"id":"2","message":"success"}"#
    ));
}

#[test]
fn enos_answers_echo_the_id_and_use_integer_codes() {
    let inform = up(
        "/sys/pk1/dn1/ota/device/inform",
        r#"{"id":"123","version":"1.0","method":"ota.inform","params":{"version":"1"}}"#,
    );
    let o = answer(&inform, Answer::Ack).unwrap();
    assert_eq!(o.topic, "/sys/pk1/dn1/ota/device/inform_reply");
    assert_eq!(body(&o), json!({"id":"123","code":200,"data":{}}));

    let progress = up(
        "/sys/pk1/dn1/ota/device/progress",
        r#"{"id":"124","method":"ota.progress","params":{"step":"35"}}"#,
    );
    let o = answer(&progress, Answer::Ack).unwrap();
    assert_eq!(o.topic, "/sys/pk1/dn1/ota/device/progress_reply");
    assert_eq!(body(&o), json!({"id":"124","code":200,"data":{}}));
    let nf = body(&answer(&progress, Answer::TaskNotFound).unwrap());
    assert_eq!(nf["code"], json!(764));
    assert_eq!(nf["message"], "Device task not found");
    assert_eq!(nf["id"], json!("124"));
    let ns = body(&answer(&progress, Answer::TaskNotStarted).unwrap());
    assert_eq!(ns["code"], json!(765));
    assert_eq!(ns["message"], "Device task not start");

    let get = up(
        "/sys/pk1/dn1/ota/device/getversion",
        r#"{"id":"125","version":"1.0","method":"Ota.device.getversion","params":{}}"#,
    );
    let none = answer(&get, Answer::Offer(None)).unwrap();
    assert_eq!(none.topic, "/sys/pk1/dn1/ota/device/getversion_reply");
    assert_eq!(body(&none), json!({"id":"125","code":200,"data":[]}));
    let some = body(&answer(&get, Answer::Offer(Some(offer()))).unwrap());
    assert_eq!(
        some,
        json!({"id":"125","code":200,"data":[{
            "version":"1.3.0","sign":"5a1a416f357f17bfa89823d2fd49ef8b","signMethod":"md5",
            "fileUrl":"http://fw.example/f/abc?t=1","fileSize":175436
        }]})
    );

    let reply = up(
        "/sys/pk1/dn1/ota/device/upgrade_reply",
        r#"{"id":"77","code":200,"data":"","message":""}"#,
    );
    assert_eq!(answer(&reply, Answer::Ack), None);
}

#[test]
fn enos_malformed_requests_get_an_error_reply() {
    let r = rejected(
        "/sys/pk1/dn1/ota/device/progress",
        r#"{"id":"126","method":"ota.progress","params":{"step":true}}"#,
    );
    let o = error_reply(&r).unwrap();
    assert_eq!(o.topic, "/sys/pk1/dn1/ota/device/progress_reply");
    let b = body(&o);
    assert_eq!(b["id"], json!("126"));
    assert!(b["code"].is_i64());
    assert_ne!(b["code"], json!(200));
    assert_eq!(
        b["message"],
        r#"field "step": expected a number or numeric string, got true"#
    );
    let r = rejected("/sys/pk1/dn1/ota/device/getversion", "not json");
    let b = body(&error_reply(&r).unwrap());
    assert_eq!(b["id"], Value::Null);
    assert_eq!(b["data"], json!([]));
    let r = rejected("/sys/pk1/dn1/ota/device/upgrade_reply", r#"{"code":true}"#);
    assert_eq!(error_reply(&r), None, "replies are never answered");
}

#[test]
fn parse_documented_pushes() {
    // Alibaba's document appendix.
    let aliyun = r#"{ "code":"1000", "data":{ "size":2233916, "extData":{ "info":"Double 11 corpus update" }, "module":"resource", "sign":"5a1a416f357f17bfa89823d2fd49ef8b", "version":"res-1.2.5", "url":"update package downloaded url address", "signMethod":"Md5", "md5":"5a1a416f357f17bfa89823d2fd49ef8b" }, "id":1617773607348, "message":"success" }"#;
    let (d, a, down) = parse_downlink("/ota/device/upgrade/pk1/dn1", aliyun.as_bytes()).unwrap();
    assert_eq!((d, a), (Dialect::Aliyun, dev()));
    assert_eq!(
        down,
        Downlink::Push(Offer {
            module: "resource".into(),
            version: "res-1.2.5".into(),
            url: "update package downloaded url address".into(),
            size: 2233916,
            md5: "5a1a416f357f17bfa89823d2fd49ef8b".into(),
            sha256: String::new(),
        })
    );
    // EnOS document example (relative fileUrl, as documented).
    let enos = r#"{"id":"123","version":"1.0","method":"ota.device.upgrade","params":{"version":"v1.0","sign":"xxxxxxx","signMethod":"md5","fileUrl":"/1b30e0ea83002000/ota/kadak13","fileSize":1024}}"#;
    let (_, _, down) = parse_downlink("/sys/pk1/dn1/ota/device/upgrade", enos.as_bytes()).unwrap();
    let Downlink::Push(o) = down else {
        panic!("not a push")
    };
    assert_eq!(
        (o.version.as_str(), o.size, o.md5.as_str()),
        ("v1.0", 1024, "xxxxxxx")
    );
    // Tencent.
    let tc = r#"{"type":"update_firmware","version":"1.3.0","url":"http://x/f","md5sum":"00112233445566778899aabbccddeeff","file_size":"175436"}"#;
    let (_, _, down) = parse_downlink("$ota/update/pk1/dn1", tc.as_bytes()).unwrap();
    assert!(matches!(down, Downlink::Push(Offer { size: 175436, .. })));
    let rsp =
        r#"{"type":"report_version_rsp","result_code":0,"result_msg":"success","version":"1.0.0"}"#;
    let (_, _, down) = parse_downlink("$ota/update/pk1/dn1", rsp.as_bytes()).unwrap();
    assert_eq!(
        down,
        Downlink::VersionAck {
            version: "1.0.0".into()
        }
    );
}

#[test]
fn parse_replies_and_their_offers() {
    let reply = r#"{"id":"123","code":200,"data":[{"version":"v1.0","sign":"xxxxxxx","signMethod":"md5","fileUrl":"/1b30e0ea83002000/ota/kadak13","fileSize":1024}]}"#;
    let (_, _, down) =
        parse_downlink("/sys/pk1/dn1/ota/device/getversion_reply", reply.as_bytes()).unwrap();
    let Downlink::Reply { id, code, data } = down else {
        panic!("not a reply")
    };
    assert_eq!((id, code), (json!("123"), 200));
    let offers = reply_offers(Dialect::Enos, &data).unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].url, "/1b30e0ea83002000/ota/kadak13");
    assert_eq!(reply_offers(Dialect::Enos, &json!([])).unwrap(), vec![]);
    assert_eq!(reply_offers(Dialect::Aliyun, &json!({})).unwrap(), vec![]);
    assert!(reply_offers(Dialect::Enos, &json!({})).is_err());

    let get_reply = r#"{"code":"200","data":{},"id":"2","message":"success"}"#;
    let (_, _, down) = parse_downlink(
        "/sys/pk1/dn1/thing/ota/firmware/get_reply",
        get_reply.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        down,
        Downlink::Reply {
            id: json!("2"),
            code: 200,
            data: json!({})
        }
    );
    assert!(parse_downlink("/sys/pk1/dn1/ota/device/inform", b"{}").is_err());
}
