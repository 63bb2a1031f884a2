//! What a hostile or broken device can do: nothing. Wrong secrets get CONNACK codes, other devices'
//! topics and wildcard subscriptions leak nothing, malformed input gets the dialect's error reply
//! and a log line, and stored state does not change.

use crate::common::*;
use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use rumqttc::{ConnectReturnCode, ConnectionError, QoS};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn wrong_secret_and_unknown_device_are_refused_with_connack_codes() {
    let server = start().await;
    let secret = server.device(Dialect::Aliyun, "a1B2c3D4e5F", "dev1").await;
    let addr = DeviceAddr::new("a1B2c3D4e5F", "dev1");
    let wrong = protocol::sign(
        Dialect::Aliyun,
        &addr,
        "0123456789abcdef0123456789abcdef",
        1,
    );
    assert!(secret != "0123456789abcdef0123456789abcdef");
    match connect_raw(options(&server, &wrong)).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected CONNACK 4, got {:?}", other.map(|_| ())),
    }
    let stranger = protocol::sign(
        Dialect::Aliyun,
        &DeviceAddr::new("a1B2c3D4e5F", "nobody"),
        &secret,
        1,
    );
    match connect_raw(options(&server, &stranger)).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected CONNACK 5, got {:?}", other.map(|_| ())),
    }
    // Tencent: wrong secret on a Tencent product.
    server.device(Dialect::Tencent, "TCPRODUCT9", "dev1").await;
    let wrong = protocol::sign(
        Dialect::Tencent,
        &DeviceAddr::new("TCPRODUCT9", "dev1"),
        "d3Jvbmc=",
        1,
    );
    assert!(matches!(
        connect_raw(options(&server, &wrong)).await,
        Err(ConnectionError::ConnectionRefused(_))
    ));
}

#[tokio::test]
async fn a_device_cannot_report_for_another_device() {
    let server = start().await;
    let s1 = server.device(Dialect::Tencent, "TCPRODUCT1", "dev1").await;
    server
        .device(Dialect::Tencent, "TCPRODUCT1", "victim")
        .await;
    server.upload("TCPRODUCT1", "1.1.0", &image()).await;
    server.upgrade("TCPRODUCT1", "victim", "1.1.0").await;
    let attacker = RawDevice::connect(&server, Dialect::Tencent, "TCPRODUCT1", "dev1", &s1).await;
    attacker
        .send(
            "$ota/report/TCPRODUCT1/victim",
            r#"{"type": "report_version", "report":{"version":"1.1.0"}}"#,
        )
        .await;
    attacker
        .send("$ota/report/TCPRODUCT1/victim", r#"{"type": "report_progress", "report":{"progress":{"state":"fail", "result_code":"-5", "result_msg":""}, "version":"1.1.0"}}"#)
        .await;
    // Its own report still works, proving the connection survived and messages were processed.
    attacker
        .send(
            "$ota/report/TCPRODUCT1/dev1",
            r#"{"type": "report_version", "report":{"version":"0.9.0"}}"#,
        )
        .await;
    server
        .wait_show("TCPRODUCT1", "dev1", |v| v["version"] == "0.9.0")
        .await;
    let victim = server.show("TCPRODUCT1", "victim").await;
    assert_eq!(victim["version"], Value::Null);
    assert_eq!(victim["upgrade"]["state"], "pending");
}

#[tokio::test]
async fn wildcard_subscriber_never_receives_another_devices_push() {
    let server = start().await;
    let s1 = server.device(Dialect::Aliyun, "a1B2c3D4e5F", "dev1").await;
    let s2 = server.device(Dialect::Aliyun, "a1B2c3D4e5F", "dev2").await;
    server.upload("a1B2c3D4e5F", "1.1.0", &image()).await;
    let mut snoop = RawDevice::connect(&server, Dialect::Aliyun, "a1B2c3D4e5F", "dev1", &s1).await;
    snoop.subscribe("/ota/device/upgrade/+/+").await;
    snoop.client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    let mut target = RawDevice::connect(&server, Dialect::Aliyun, "a1B2c3D4e5F", "dev2", &s2).await;
    target
        .subscribe("/ota/device/upgrade/a1B2c3D4e5F/dev2")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.upgrade("a1B2c3D4e5F", "dev2", "1.1.0").await;
    target.next_on("/ota/device/upgrade/a1B2c3D4e5F/dev2").await;
    snoop.nothing_for(Duration::from_millis(500)).await;
}

/// Every malformed message in the list gets logged and dropped; the EnOS ones get an error reply.
#[tokio::test]
async fn malformed_input_changes_nothing_and_the_server_keeps_serving() {
    let server = start().await;
    let secret = server.device(Dialect::Enos, "enosPK1", "dev1").await;
    server.upload("enosPK1", "1.1.0", &image()).await;
    let mut dev = RawDevice::connect(&server, Dialect::Enos, "enosPK1", "dev1", &secret).await;
    let base = "/sys/enosPK1/dev1/ota/device";
    dev.send(
        &format!("{base}/inform"),
        r#"{"id":"1","version":"1.0","method":"ota.inform","params":{"version":"1.0.0"}}"#,
    )
    .await;
    dev.next_on(&format!("{base}/inform_reply")).await;
    server.upgrade("enosPK1", "dev1", "1.1.0").await;
    dev.next_on(&format!("{base}/upgrade")).await;
    let before = server.show("enosPK1", "dev1").await;

    let bad = [
        "not json at all",
        r#"{"id":"2","method":"ota.inform","params":{"version":true}}"#,
        r#"{"id":"3","method":"ota.progress","params":{"step":"lots"}}"#,
        r#"{"id":"4","method":"ota.progress","params":{"step":"400"}}"#,
        r#"{"id":"5","method":"ota.unknown.thing","params":{}}"#,
        r#"[1,2,3]"#,
    ];
    for (i, payload) in bad.iter().enumerate() {
        let topic = if i % 2 == 0 { "inform" } else { "progress" };
        dev.send(&format!("{base}/{topic}"), payload).await;
        let reply = dev.next_on(&format!("{base}/{topic}_reply")).await;
        assert_ne!(
            reply["code"], 200,
            "{payload} must get an error reply, got {reply}"
        );
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error reply explains: {reply}"
        );
    }
    let after = server.show("enosPK1", "dev1").await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["upgrade"], before["upgrade"]);
    // Still serving: a good report is answered.
    dev.send(
        &format!("{base}/inform"),
        r#"{"id":"9","version":"1.0","method":"ota.inform","params":{"version":"1.0.0"}}"#,
    )
    .await;
    assert_eq!(
        dev.next_on(&format!("{base}/inform_reply")).await["code"],
        200
    );
}

#[tokio::test]
async fn tencent_bad_report_gets_a_failed_rsp_and_a_huge_payload_only_drops_its_sender() {
    let server = start().await;
    let secret = server.device(Dialect::Tencent, "TCPRODUCT1", "dev1").await;
    let s2 = server.device(Dialect::Tencent, "TCPRODUCT1", "dev2").await;
    let mut dev =
        RawDevice::connect(&server, Dialect::Tencent, "TCPRODUCT1", "dev1", &secret).await;
    let update = "$ota/update/TCPRODUCT1/dev1";
    dev.subscribe(update).await;
    dev.send(
        "$ota/report/TCPRODUCT1/dev1",
        r#"{"type": "report_version", "report":{"version":true}}"#,
    )
    .await;
    let rsp = dev.next_on(update).await;
    assert_eq!(rsp["type"], "report_version_rsp");
    assert_ne!(rsp["result_code"], 0);
    dev.send(
        "$ota/report/TCPRODUCT1/dev1",
        r#"{"type": "something_else"}"#,
    )
    .await;

    // A 1 MiB publish: over the packet limit, the sender is cut off, others keep being served.
    let huge = format!(
        r#"{{"type": "report_version", "report":{{"version":"{}"}}}}"#,
        "x".repeat(1 << 20)
    );
    dev.send("$ota/report/TCPRODUCT1/dev1", &huge).await;
    server
        .wait_show("TCPRODUCT1", "dev1", |v| v["online"] == false)
        .await;
    let mut other = RawDevice::connect(&server, Dialect::Tencent, "TCPRODUCT1", "dev2", &s2).await;
    other.subscribe("$ota/update/TCPRODUCT1/dev2").await;
    other
        .send(
            "$ota/report/TCPRODUCT1/dev2",
            r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
        )
        .await;
    assert_eq!(
        other.next_on("$ota/update/TCPRODUCT1/dev2").await["result_code"],
        0
    );
    assert_eq!(
        server.show("TCPRODUCT1", "dev1").await["version"],
        Value::Null
    );
}

#[tokio::test]
async fn api_refuses_without_token_and_explains_bad_requests() {
    let server = start().await;
    let resp = reqwest::get(server.url("/api/v1/products")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (status, body) = server
        .api(
            reqwest::Method::POST,
            "/products",
            Some(json!({"id": "../x", "dialect": "tencent"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("product id"));
    let (status, body) = server
        .api(
            reqwest::Method::POST,
            "/products",
            Some(json!({"id": "p1", "dialect": "zigbee"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("dialect"));
    let (status, _) = server
        .api(reqwest::Method::GET, "/products/nope/devices/x", None)
        .await;
    assert_eq!(status, 404);
    // Public endpoints.
    assert_eq!(
        reqwest::get(server.url("/healthz"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let doc: Value = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/campaigns"].is_object());
    assert!(doc["paths"]["/api/v1/campaigns/{id}/stream"].is_object());
    assert!(doc["paths"]["/api/v1/audit"].is_object());
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
}

#[tokio::test]
async fn downloads_refuse_forged_and_unknown_links() {
    let server = start().await;
    let secret = server.device(Dialect::Tencent, "TCPRODUCT1", "dev1").await;
    server.upload("TCPRODUCT1", "1.1.0", &image()).await;
    let mut dev =
        RawDevice::connect(&server, Dialect::Tencent, "TCPRODUCT1", "dev1", &secret).await;
    dev.subscribe("$ota/update/TCPRODUCT1/dev1").await;
    server.upgrade("TCPRODUCT1", "dev1", "1.1.0").await;
    let url = dev.next_on("$ota/update/TCPRODUCT1/dev1").await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(download(&url, None).await.0, 200);
    let forged = url.replace("/dev1/", "/dev2/");
    assert_eq!(download(&forged, None).await.0, 403);
    let unknown = format!(
        "{}/dl/{}/TCPRODUCT1/dev1/99999999999/AAAAAAAAAAAAAAAAAAAAAA",
        server.url(""),
        "0".repeat(64)
    );
    assert!([403, 404].contains(&download(&unknown, None).await.0));
}

/// HMAC-SHA256 (RFC 2104) for hand-made Aliyun logins.
fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// An Aliyun login of `dev` with its own secret but presenting the client id `{id}|…|` of its
/// choice (Aliyun and EnOS client ids start with free text).
fn aliyun_login_with_id(
    dev: &DeviceAddr,
    secret: &str,
    id: &str,
    ts: u64,
) -> protocol::Credentials {
    let content = format!(
        "clientId{id}deviceName{}productKey{}timestamp{ts}",
        dev.device, dev.product
    );
    protocol::Credentials {
        client_id: format!("{id}|securemode=3,signmethod=hmacsha256,timestamp={ts}|"),
        username: Some(format!("{}&{}", dev.device, dev.product)),
        password: Some(hmac_sha256_hex(secret.as_bytes(), content.as_bytes()).into_bytes()),
    }
}

/// Issue 19, finding 2: sessions belong to the authenticated device, not to the client id
/// string. dev2, with its own valid secret but dev1's exact client id, cannot disconnect dev1;
/// and a device logging in again under a new client id replaces only its own old session.
#[tokio::test]
async fn a_device_cannot_take_over_another_devices_session_with_its_client_id() {
    let server = start().await;
    let product = "a1Kick00001";
    let s1 = server.device(Dialect::Aliyun, product, "dev1").await;
    let s2 = server.device(Dialect::Aliyun, product, "dev2").await;
    let dev1 = DeviceAddr::new(product, "dev1");
    let dev2 = DeviceAddr::new(product, "dev2");
    let topic = |d: &str| format!("/ota/device/inform/{product}/{d}");

    let own = aliyun_login_with_id(&dev1, &s1, "shared-id", 1);
    let (c1, mut l1) = connect_raw(options(&server, &own))
        .await
        .expect("dev1 login");
    let (lost_tx, mut lost) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if let Err(e) = l1.poll().await {
                let _ = lost_tx.send(e.to_string());
                return;
            }
        }
    });
    server
        .wait_show(product, "dev1", |v| v["online"] == true)
        .await;

    // dev2 presents dev1's exact client id with a valid signature of its own.
    let squat = aliyun_login_with_id(&dev2, &s2, "shared-id", 1);
    assert_eq!(squat.client_id, own.client_id);
    match connect_raw(options(&server, &squat)).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected CONNACK 5, got {:?}", other.map(|_| ())),
    }
    // dev1 was not disconnected: it still reports, and is still online.
    c1.publish(
        topic("dev1"),
        QoS::AtLeastOnce,
        false,
        r#"{"id":"1","params":{"version":"1.0.1"}}"#,
    )
    .await
    .unwrap();
    let shown = server
        .wait_show(product, "dev1", |v| v.to_string().contains("1.0.1"))
        .await;
    assert_eq!(shown["online"], true, "{shown}");
    assert!(lost.try_recv().is_err(), "dev1's connection was cut");

    // dev2 under its own client id is welcome at the same time.
    let dev2_own = aliyun_login_with_id(&dev2, &s2, "dev2-id", 1);
    let (_c2, mut l2) = connect_raw(options(&server, &dev2_own))
        .await
        .expect("dev2 login");
    tokio::spawn(async move { while l2.poll().await.is_ok() {} });
    server
        .wait_show(product, "dev2", |v| v["online"] == true)
        .await;

    // dev1 logging in again under a new client id replaces its own old session (only).
    let again = aliyun_login_with_id(&dev1, &s1, "shared-id", 2);
    let (c1b, mut l1b) = connect_raw(options(&server, &again))
        .await
        .expect("dev1 again");
    tokio::spawn(async move { while l1b.poll().await.is_ok() {} });
    let why = tokio::time::timeout(WAIT, lost.recv())
        .await
        .expect("dev1's old session was never ended")
        .expect("the old session's reason");
    assert!(!why.is_empty());
    c1b.publish(
        topic("dev1"),
        QoS::AtLeastOnce,
        false,
        r#"{"id":"2","params":{"version":"1.0.2"}}"#,
    )
    .await
    .unwrap();
    let shown = server
        .wait_show(product, "dev1", |v| v.to_string().contains("1.0.2"))
        .await;
    assert_eq!(shown["online"], true, "{shown}");
    assert_eq!(server.show(product, "dev2").await["online"], true);
}
