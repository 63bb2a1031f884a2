//! Alibaba's C SDK (iotkit-embedded 3.x) through the `otter` binary, played by a raw MQTT client
//! sending the SDK's exact payloads: it asks for its job on `/ota/device/request/{pk}/{dn}` and
//! is answered on that topic in the push's shape (device-requested and push campaigns), then
//! downloads, reports progress (every step twice, as the SDK does) and its new version; without a
//! job the answer has empty `data` and no "url", which the SDK ignores. Download links never
//! carry the scheme's default port, and `otter serve` warns at start when they carry a port
//! Alibaba's SDK cannot dial.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use otter_protocol::{DeviceAddr, Dialect};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::OTTER;

/// Generous bound on waiting for a condition (CI runs on 2 busy cores); never a timing assertion.
const WAIT: Duration = Duration::from_secs(30);
const PK: &str = "a1Req000001";

/// Waits until `check` holds for `otter args`, returning the last answer.
fn wait_until(http: &str, data: &Path, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = OTTER.json(http, data, args);
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "otter {args:?} never got there: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An aliyun product with devices; returns their secrets.
fn product_with_devices(http: &str, data: &Path, names: &[&str]) -> Vec<String> {
    let args = ["product", "create", "--id", PK, "--dialect", "aliyun"];
    OTTER.json(http, data, &args);
    names
        .iter()
        .map(|name| {
            let d = OTTER.json(
                http,
                data,
                &["device", "create", "--product", PK, "--name", name],
            );
            d["secret"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn upload(http: &str, data: &Path, dir: &Path, image: &[u8]) -> Value {
    let file = dir.join("fw.bin");
    std::fs::write(&file, image).unwrap();
    let args = [
        "firmware",
        "upload",
        "--product",
        PK,
        "--version",
        "1.1.0",
        file.to_str().unwrap(),
    ];
    OTTER.json(http, data, &args)
}

/// A device as Alibaba's C SDK is on the wire: its login, its subscriptions, its payloads.
struct SdkDevice {
    name: String,
    client: Client,
    inbox: mpsc::Receiver<(String, Value)>,
}

impl SdkDevice {
    fn connect(mqtt: &str, name: &str, secret: &str) -> Self {
        let addr = DeviceAddr::new(PK, name);
        let creds = otter_protocol::sign(Dialect::Aliyun, &addr, secret, 2_524_608_000_000);
        let (host, port) = mqtt.rsplit_once(':').unwrap();
        let mut opts = MqttOptions::new(creds.client_id, host, port.parse().unwrap());
        let password = String::from_utf8(creds.password.unwrap_or_default()).unwrap();
        opts.set_credentials(creds.username.unwrap_or_default(), password);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(opts, 16);
        let (tx, inbox) = mpsc::channel();
        let (connack_tx, connack) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        let _ = connack_tx.send(Ok(ack.code));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        if tx.send((p.topic.clone(), value)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = connack_tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let code = connack.recv_timeout(WAIT).expect("no CONNACK");
        assert_eq!(
            code,
            Ok(rumqttc::ConnectReturnCode::Success),
            "device login refused"
        );
        let device = SdkDevice {
            name: name.to_owned(),
            client,
            inbox,
        };
        // osc_Init subscribes the request topic, then the upgrade topic, both at QoS 1.
        for topic in [device.topic("request"), device.topic("upgrade")] {
            device.client.subscribe(topic, QoS::AtLeastOnce).unwrap();
        }
        device
    }

    fn topic(&self, what: &str) -> String {
        format!("/ota/device/{what}/{PK}/{}", self.name)
    }

    fn send(&self, what: &str, payload: &str) {
        let topic = self.topic(what);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .unwrap();
    }

    /// The next message on `/ota/device/{what}/…`, skipping others.
    fn next_on(&self, what: &str) -> Value {
        let topic = self.topic(what);
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok((t, v)) if t == topic => return v,
                Ok(_) => {}
                Err(_) => panic!("nothing arrived on {topic}"),
            }
        }
    }

    /// `iotx_req_image`'s request, answered on the same topic.
    fn request(&self) -> Value {
        self.send("request", r#"{"id":"0","params":{"version":"1.0.0"}}"#);
        self.next_on("request")
    }

    /// Asks until the answer carries a job (the campaign releases the device on a planner tick).
    fn request_until_offered(&self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = self.request();
            if answer["data"]["url"].is_string() {
                return answer;
            }
            assert_eq!(answer, no_job(), "the answer without a job");
            assert!(Instant::now() < deadline, "never offered a job");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The documented answer without a job: the push's shape, empty data, no "url" anywhere.
fn no_job() -> Value {
    json!({"code": "1000", "data": {}, "id": "0", "message": "success"})
}

/// What the SDK checks of an offer (`ota_callback`, `otalib_GetParams`), and the rest of the
/// push's shape; returns the URL.
fn check_offer(answer: &Value, fw: &Value) -> String {
    assert_eq!(answer["code"], "1000", "{answer}");
    assert_eq!(answer["message"], "success", "{answer}");
    assert_eq!(answer["id"], "0", "the request's id: {answer}");
    let data = &answer["data"];
    assert_eq!(data["version"], "1.1.0", "{answer}");
    assert_eq!(data["md5"], fw["md5"], "{answer}");
    assert_eq!(data["size"], fw["size"], "{answer}");
    assert!(data["size"].is_u64(), "{answer}");
    assert_eq!(data["signMethod"], "Md5", "{answer}");
    assert_eq!(data["sign"], fw["md5"], "{answer}");
    data["url"].as_str().unwrap().to_owned()
}

/// A plain HTTP/1.1 GET, as the SDK's fetcher does it; returns the status and body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http link");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[end + 4..].to_vec())
}

/// Downloads, then reports as the SDK does: each progress step twice, then the new version.
fn upgrade(device: &SdkDevice, url: &str, image: &[u8]) {
    let (status, body) = http_get(url);
    assert_eq!(status, 200);
    assert!(body == image, "the downloaded image differs");
    for step in [1, 50, 100] {
        let report = format!(r#"{{"id":0,"params":{{"step":"{step}","desc":""}}}}"#);
        device.send("progress", &report);
        device.send("progress", &report);
    }
    device.send("inform", r#"{"id":0,"params":{"version":"1.1.0"}}"#);
}

#[test]
fn the_request_topic_is_answered_and_the_device_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = OTTER.serve(&data, &[]);
    let secrets = product_with_devices(&http, &data, &["dev1", "dev2"]);
    let image: Vec<u8> = (0..120_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let fw = upload(&http, &data, dir.path(), &image);

    let dev1 = SdkDevice::connect(&mqtt, "dev1", &secrets[0]);
    // The SDK reports its version on connect.
    dev1.send("inform", r#"{"id":0,"params":{"version":"1.0.0"}}"#);
    let show = ["device", "show", "--product", PK, "--name", "dev1"];
    wait_until(&http, &data, &show, |v| v["version"] == "1.0.0");

    // No job: the documented answer, on the request topic.
    assert_eq!(dev1.request(), no_job());

    // A device-requested campaign: nothing is pushed, the request is answered with the offer.
    let created = OTTER.json(
        &http,
        &data,
        &[
            "campaign",
            "create",
            "--product",
            PK,
            "--version",
            "1.1.0",
            "--device",
            "dev1",
            "--device-requested",
            "--skip-verification",
        ],
    );
    assert_eq!(created["mode"], "requested", "{created}");
    let id = created["id"].as_i64().unwrap().to_string();
    let answer = dev1.request_until_offered();
    let url = check_offer(&answer, &fw);
    wait_until(&http, &data, &show, |v| v["upgrade"]["state"] == "pushed");
    upgrade(&dev1, &url, &image);
    let shown = wait_until(&http, &data, &show, |v| {
        v["upgrade"]["state"] == "succeeded"
    });
    assert_eq!(shown["version"], "1.1.0");
    let campaign = wait_until(&http, &data, &["campaign", "show", &id], |c| {
        c["counts"]["succeeded"] == 1
    });
    assert_eq!(campaign["mode"], "requested", "{campaign}");

    // A push campaign: the push arrives on the upgrade topic, and a request gets the same offer.
    let dev2 = SdkDevice::connect(&mqtt, "dev2", &secrets[1]);
    dev2.send("inform", r#"{"id":0,"params":{"version":"1.0.0"}}"#);
    let show2 = ["device", "show", "--product", PK, "--name", "dev2"];
    wait_until(&http, &data, &show2, |v| v["version"] == "1.0.0");
    let upgrade_args = [
        "upgrade",
        "--product",
        PK,
        "--device",
        "dev2",
        "--version",
        "1.1.0",
    ];
    OTTER.json(&http, &data, &upgrade_args);
    let push = dev2.next_on("upgrade");
    assert_eq!(push["data"]["version"], "1.1.0", "{push}");
    let answer = dev2.request_until_offered();
    let url = check_offer(&answer, &fw);
    upgrade(&dev2, &url, &image);
    let shown = wait_until(&http, &data, &show2, |v| {
        v["upgrade"]["state"] == "succeeded"
    });
    assert_eq!(shown["version"], "1.1.0");

    // Done: no job any more, the documented answer again.
    assert_eq!(dev2.request(), no_job());
}

/// Start-up log lines that warn about the link port.
fn port_warnings(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| l.contains("WARN") && l.contains("carry port"))
        .collect()
}

#[test]
fn links_drop_default_ports_and_serve_warns_of_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, mqtt, http, log) =
        OTTER.serve_logged(&data, &["--public-url", "http://127.0.0.1:80"]);
    assert!(port_warnings(&log).is_empty(), "{log:#?}");
    let secrets = product_with_devices(&http, &data, &["dev1"]);
    let fw = upload(&http, &data, dir.path(), &[5u8; 1000]);
    let dev = SdkDevice::connect(&mqtt, "dev1", &secrets[0]);
    dev.send("inform", r#"{"id":0,"params":{"version":"1.0.0"}}"#);
    let show = ["device", "show", "--product", PK, "--name", "dev1"];
    wait_until(&http, &data, &show, |v| v["version"] == "1.0.0");
    let args = [
        "upgrade",
        "--product",
        PK,
        "--device",
        "dev1",
        "--version",
        "1.1.0",
    ];
    OTTER.json(&http, &data, &args);
    let push = dev.next_on("upgrade");
    let url = push["data"]["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1/dl/"), "{url}");
    let url = check_offer(&dev.request(), &fw);
    assert!(url.starts_with("http://127.0.0.1/dl/"), "{url}");
    drop((dev, server));

    // https on 443: no port either. The live upgrade is re-pushed on the next version report.
    let (server, mqtt, _, log) =
        OTTER.serve_logged(&data, &["--public-url", "https://127.0.0.1:443/"]);
    assert!(port_warnings(&log).is_empty(), "{log:#?}");
    let dev = SdkDevice::connect(&mqtt, "dev1", &secrets[0]);
    dev.send("inform", r#"{"id":0,"params":{"version":"1.0.0"}}"#);
    let url = dev.next_on("upgrade")["data"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1/dl/"), "{url}");
    drop((dev, server));

    // Links on the listener's own port, with an aliyun product: a warning at start naming it.
    let (_server, _, http, log) = OTTER.serve_logged(&data, &[]);
    let port = http.rsplit(':').next().unwrap();
    let warnings = port_warnings(&log);
    assert_eq!(warnings.len(), 1, "{log:#?}");
    let warning = warnings[0];
    assert!(warning.contains(&format!("carry port {port}")), "{warning}");
    assert!(warning.contains("Alibaba"), "{warning}");
    assert!(warning.contains(PK), "{warning}");
}
