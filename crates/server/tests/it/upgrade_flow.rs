//! Per dialect: a raw MQTT client sending exactly the SDKs' JSON (strings where they send strings)
//! upgrades 1.0.0 → 1.1.0 against a real server, and `device show` says succeeded and 1.1.0.

use crate::common::*;
use otter_protocol::Dialect;
use serde_json::Value;

async fn fleet(dialect: Dialect, product: &str) -> (TestServer, RawDevice, String) {
    let server = start().await;
    let secret = server.device(dialect, product, "dev1").await;
    let fw = server.upload(product, "1.1.0", &image()).await;
    assert_eq!(fw["md5"], md5_hex(&image()));
    let device = RawDevice::connect(&server, dialect, product, "dev1", &secret).await;
    (server, device, secret)
}

/// The pushed URL serves the image, honouring Range as devices use it.
async fn check_download(url: &str) {
    let (status, body) = download(url, Some(&format!("bytes=0-{IMAGE_LEN}"))).await;
    assert_eq!((status, body.len()), (206, IMAGE_LEN));
    assert_eq!(md5_hex(&body), md5_hex(&image()));
    let (status, tail) = download(url, Some("bytes=1000-")).await;
    assert_eq!(status, 206);
    assert_eq!(tail, image()[1000..]);
}

#[tokio::test]
async fn tencent_device_upgrades() {
    let (server, mut dev, _) = fleet(Dialect::Tencent, "TCPRODUCT1").await;
    let (report, update) = ("$ota/report/TCPRODUCT1/dev1", "$ota/update/TCPRODUCT1/dev1");
    dev.subscribe(update).await;
    dev.send(
        report,
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    )
    .await;
    let rsp = dev.next_on(update).await;
    assert_eq!(
        rsp,
        serde_json::json!({"type":"report_version_rsp","result_code":0,"result_msg":"success","version":"1.0.0"})
    );

    server.upgrade("TCPRODUCT1", "dev1", "1.1.0").await;
    let push = dev.next_on(update).await;
    assert_eq!(push["type"], "update_firmware");
    assert_eq!(push["version"], "1.1.0");
    assert_eq!(push["md5sum"], md5_hex(&image()));
    assert_eq!(
        push["file_size"],
        Value::from(IMAGE_LEN as u64),
        "file_size must be a JSON number"
    );
    check_download(push["url"].as_str().unwrap()).await;

    dev.send(report, r#"{"type": "report_progress", "report": {"progress": {"state":"downloading", "percent":"31", "result_code":"0", "result_msg":""}, "version": "1.1.0"}}"#).await;
    server
        .wait_show("TCPRODUCT1", "dev1", |v| {
            v["upgrade"]["state"] == "downloading" && v["upgrade"]["percent"] == 31
        })
        .await;

    // The device reboots mid-download and reports its old version: it gets the push again.
    dev.send(
        report,
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    )
    .await;
    dev.next_on(update).await;
    let again = dev.next_on(update).await;
    assert_eq!(again["type"], "update_firmware");

    dev.send(report, r#"{"type": "report_progress", "report":{"progress":{"state":"burning", "result_code":"0", "result_msg":""}, "version":"1.1.0"}}"#).await;
    dev.send(report, r#"{"type": "report_progress", "report":{"progress":{"state":"done", "result_code":"0", "result_msg":""}, "version":"1.1.0"}}"#).await;
    dev.send(
        report,
        r#"{"type": "report_version", "report":{"version":"1.1.0"}}"#,
    )
    .await;
    let v = server
        .wait_show("TCPRODUCT1", "dev1", |v| {
            v["upgrade"]["state"] == "succeeded"
        })
        .await;
    assert_eq!(v["version"], "1.1.0");
    assert_eq!(v["online"], true);
}

#[tokio::test]
async fn tencent_failure_code_is_stored_and_explained() {
    let (server, dev, _) = fleet(Dialect::Tencent, "TCPRODUCT2").await;
    let (report, update) = ("$ota/report/TCPRODUCT2/dev1", "$ota/update/TCPRODUCT2/dev1");
    dev.subscribe(update).await;
    server.upgrade("TCPRODUCT2", "dev1", "1.1.0").await;
    dev.send(
        report,
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    )
    .await;
    dev.send(report, r#"{"type": "report_progress", "report": {"progress": {"state":"fail", "result_code":"-4", "result_msg":"time_out"}, "version": "1.1.0"}}"#).await;
    // A second failure is tolerated; the first one decides.
    dev.send(report, r#"{"type": "report_progress", "report": {"progress": {"state":"fail", "result_code":"-5", "result_msg":"time_out"}, "version": "1.1.0"}}"#).await;
    let v = server
        .wait_show("TCPRODUCT2", "dev1", |v| v["upgrade"]["state"] == "failed")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let v2 = server.show("TCPRODUCT2", "dev1").await;
    assert_eq!(v2["upgrade"]["result_code"], -4);
    assert!(
        v["upgrade"]["result_explained"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("md5")
    );
}

#[tokio::test]
async fn aliyun_device_upgrades() {
    let (server, mut dev, _) = fleet(Dialect::Aliyun, "a1B2c3D4e5F").await;
    let upgrade_topic = "/ota/device/upgrade/a1B2c3D4e5F/dev1";
    dev.subscribe("/ota/device/upgrade/+/+").await; // as Alibaba's C SDK does
    dev.send(
        "/ota/device/inform/a1B2c3D4e5F/dev1",
        r#"{"id":1,"params":{"version":"1.0.0"}}"#,
    )
    .await;
    server
        .wait_show("a1B2c3D4e5F", "dev1", |v| v["version"] == "1.0.0")
        .await;

    server.upgrade("a1B2c3D4e5F", "dev1", "1.1.0").await;
    let push = dev.next_on(upgrade_topic).await;
    assert_eq!(push["code"], "1000");
    let data = &push["data"];
    assert_eq!(data["version"], "1.1.0");
    assert_eq!(data["size"], Value::from(IMAGE_LEN as u64));
    assert_eq!(data["signMethod"], "Md5");
    assert_eq!(data["sign"], md5_hex(&image()));
    check_download(data["url"].as_str().unwrap()).await;

    dev.send(
        "/ota/device/progress/a1B2c3D4e5F/dev1",
        r#"{"id":2,"params":{"step":"23","desc":"downloading"}}"#,
    )
    .await;
    server
        .wait_show("a1B2c3D4e5F", "dev1", |v| v["upgrade"]["percent"] == 23)
        .await;
    dev.send(
        "/ota/device/inform/a1B2c3D4e5F/dev1",
        r#"{"id":3,"params":{"version":"1.1.0"}}"#,
    )
    .await;
    let v = server
        .wait_show("a1B2c3D4e5F", "dev1", |v| {
            v["upgrade"]["state"] == "succeeded"
        })
        .await;
    assert_eq!(v["version"], "1.1.0");
}

#[tokio::test]
async fn aliyun_device_asks_for_its_job() {
    let (server, mut dev, _) = fleet(Dialect::Aliyun, "a1B2c3D4e5G").await;
    let reply_topic = "/sys/a1B2c3D4e5G/dev1/thing/ota/firmware/get_reply";
    dev.subscribe(reply_topic).await;
    let ask = r#"{"id":"2","version":"1.0","method":"thing.ota.firmware.get","params":{}}"#;
    dev.send("/sys/a1B2c3D4e5G/dev1/thing/ota/firmware/get", ask)
        .await;
    let none = dev.next_on(reply_topic).await;
    assert_eq!(
        (none["code"].clone(), none["data"].clone()),
        (Value::from(200), serde_json::json!({}))
    );

    server.upgrade("a1B2c3D4e5G", "dev1", "1.1.0").await;
    dev.send("/sys/a1B2c3D4e5G/dev1/thing/ota/firmware/get", ask)
        .await;
    let job = dev.next_on(reply_topic).await;
    assert_eq!(job["id"], "2");
    assert_eq!(job["data"]["version"], "1.1.0");
    assert_eq!(job["data"]["md5"], md5_hex(&image()));
    let v = server.show("a1B2c3D4e5G", "dev1").await;
    assert_eq!(v["upgrade"]["state"], "pushed");
}

#[tokio::test]
async fn enos_device_upgrades_without_subscribing() {
    let (server, mut dev, _) = fleet(Dialect::Enos, "enosPK1").await;
    let base = "/sys/enosPK1/dev1/ota/device";
    // EnOS devices never SUBSCRIBE their downstream topics: the server delivers them anyway.
    dev.send(
        &format!("{base}/inform"),
        r#"{"id":"123","version":"1.0","method":"ota.inform","params":{"version":"1.0.0"}}"#,
    )
    .await;
    let reply = dev.next_on(&format!("{base}/inform_reply")).await;
    assert_eq!(
        reply["id"], "123",
        "the reply id must be the same JSON string"
    );
    assert_eq!(reply["code"], 200, "code must be the integer 200");

    server.upgrade("enosPK1", "dev1", "1.1.0").await;
    let push = dev.next_on(&format!("{base}/upgrade")).await;
    assert_eq!(push["method"], "ota.device.upgrade");
    assert!(push["id"].is_string());
    let params = &push["params"];
    assert_eq!(params["version"], "1.1.0");
    assert_eq!(params["fileSize"], Value::from(IMAGE_LEN as u64));
    check_download(params["fileUrl"].as_str().unwrap()).await;

    dev.send(&format!("{base}/progress"), r#"{"id":"124","version":"1.0","method":"ota.progress","params":{"step":"35","desc":"downloading"}}"#).await;
    let ack = dev.next_on(&format!("{base}/progress_reply")).await;
    assert_eq!(
        (ack["id"].clone(), ack["code"].clone()),
        (Value::from("124"), Value::from(200))
    );
    dev.send(
        &format!("{base}/inform"),
        r#"{"id":"125","version":"1.0","method":"ota.device.inform","params":{"version":"1.1.0"}}"#,
    )
    .await;
    let v = server
        .wait_show("enosPK1", "dev1", |v| v["upgrade"]["state"] == "succeeded")
        .await;
    assert_eq!(v["version"], "1.1.0");
}

#[tokio::test]
async fn enos_getversion_lists_the_job_and_unknown_progress_is_764() {
    let (server, mut dev, _) = fleet(Dialect::Enos, "enosPK2").await;
    let base = "/sys/enosPK2/dev1/ota/device";
    dev.send(
        &format!("{base}/progress"),
        r#"{"id":"1","version":"1.0","method":"ota.progress","params":{"step":"35"}}"#,
    )
    .await;
    let reply = dev.next_on(&format!("{base}/progress_reply")).await;
    assert_eq!(reply["code"], 764);

    dev.send(
        &format!("{base}/getversion"),
        r#"{"id":"2","version":"1.0","method":"Ota.device.getversion","params":{}}"#,
    )
    .await;
    assert_eq!(
        dev.next_on(&format!("{base}/getversion_reply")).await["data"],
        serde_json::json!([])
    );

    server.upgrade("enosPK2", "dev1", "1.1.0").await;
    dev.next_on(&format!("{base}/upgrade")).await;
    dev.send(
        &format!("{base}/getversion"),
        r#"{"id":"3","version":"1.0","method":"ota.device.getversion","params":{}}"#,
    )
    .await;
    let list = dev.next_on(&format!("{base}/getversion_reply")).await;
    assert_eq!(list["data"][0]["version"], "1.1.0");
    assert_eq!(list["data"][0]["fileSize"], Value::from(IMAGE_LEN as u64));
}

#[tokio::test]
async fn offline_device_gets_its_push_when_it_next_reports() {
    let server = start().await;
    let secret = server.device(Dialect::Tencent, "TCPRODUCT3", "dev1").await;
    server.upload("TCPRODUCT3", "1.1.0", &image()).await;
    let campaign = server.upgrade("TCPRODUCT3", "dev1", "1.1.0").await;
    assert_eq!(campaign["upgrades"][0]["state"], "pending");

    let mut dev =
        RawDevice::connect(&server, Dialect::Tencent, "TCPRODUCT3", "dev1", &secret).await;
    dev.subscribe("$ota/update/TCPRODUCT3/dev1").await;
    dev.send(
        "$ota/report/TCPRODUCT3/dev1",
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    )
    .await;
    dev.next_on("$ota/update/TCPRODUCT3/dev1").await; // report_version_rsp
    let push = dev.next_on("$ota/update/TCPRODUCT3/dev1").await;
    assert_eq!(push["type"], "update_firmware");
    server
        .wait_show("TCPRODUCT3", "dev1", |v| v["upgrade"]["state"] == "pushed")
        .await;
}
