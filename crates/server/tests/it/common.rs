//! Test harness: a real `otter serve` in-process on ephemeral ports, an admin client over its
//! HTTP API, and raw MQTT device clients that send exactly the JSON the vendor SDKs send.
#![allow(dead_code)]

use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use otter_server::clock::{Clock, ManualClock};
use otter_server::{Application, ServeConfig};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub token: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// A server whose campaign planner runs every 50 ms on a manual clock the test moves.
pub async fn start_with_clock() -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let planner_clock: Arc<dyn Clock> = clock.clone();
    let server = start_with(move |c| {
        c.clock = planner_clock;
        c.tick = Duration::from_millis(50);
    })
    .await;
    (server, clock)
}

pub async fn start_with(configure: impl FnOnce(&mut ServeConfig)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::ephemeral(dir.path());
    configure(&mut config);
    let app = Application::build(config).await.unwrap();
    let (http, mqtt, token) = (
        app.http_addr(),
        app.mqtt_addr(),
        app.admin_token().to_owned(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestServer {
        http,
        mqtt,
        token,
        client: reqwest::Client::new(),
        dir,
        stop: Some(stop),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.api(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path} → {status} {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.api(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path} → {v}");
        v
    }

    /// A product of `dialect` with one device; returns the device's secret.
    pub async fn device(&self, dialect: Dialect, product: &str, device: &str) -> String {
        let (status, _) = self
            .api(reqwest::Method::GET, &format!("/products/{product}"), None)
            .await;
        if status == 404 {
            self.post(
                "/products",
                json!({ "id": product, "dialect": dialect.as_str() }),
            )
            .await;
        }
        let v = self
            .post(
                &format!("/products/{product}/devices"),
                json!({ "name": device }),
            )
            .await;
        v["secret"].as_str().unwrap().to_owned()
    }

    pub async fn upload(&self, product: &str, version: &str, image: &[u8]) -> Value {
        let resp = self
            .client
            .post(self.url(&format!(
                "/api/v1/products/{product}/firmware?version={version}"
            )))
            .bearer_auth(&self.token)
            .body(image.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        resp.json().await.unwrap()
    }

    pub async fn upgrade(&self, product: &str, device: &str, version: &str) -> Value {
        self.post(
            "/campaigns",
            json!({ "product": product, "version": version, "selection": { "devices": [device] }, "skip_verification": true }),
        )
        .await
    }

    pub async fn show(&self, product: &str, device: &str) -> Value {
        self.get(&format!("/products/{product}/devices/{device}"))
            .await
    }

    /// Polls `device show` until `check` holds (the engine works asynchronously).
    pub async fn wait_show(
        &self,
        product: &str,
        device: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.show(product, device).await;
            if check(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "device never reached the expected state: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `GET /campaigns/{id}` until `check` holds.
    pub async fn wait_campaign(&self, id: i64, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.get(&format!("/campaigns/{id}")).await;
            if check(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "campaign never reached the expected state: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A raw MQTT device: publishes exactly the bytes given; collects what the broker delivers.
pub struct RawDevice {
    pub client: AsyncClient,
    pub inbox: mpsc::UnboundedReceiver<(String, Value)>,
    pub dialect: Dialect,
    pub addr: DeviceAddr,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for RawDevice {
    /// Closes the socket: the device is gone.
    fn drop(&mut self) {
        self.connection.abort();
    }
}

pub fn options(server: &TestServer, creds: &protocol::Credentials) -> MqttOptions {
    let mut opts = MqttOptions::new(
        creds.client_id.clone(),
        server.mqtt.ip().to_string(),
        server.mqtt.port(),
    );
    let password = String::from_utf8(creds.password.clone().unwrap_or_default()).unwrap();
    opts.set_credentials(creds.username.clone().unwrap_or_default(), password);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    opts
}

/// Connects and returns the CONNACK outcome without retrying.
pub async fn connect_raw(opts: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    otter_testkit::mqtt::connect(opts, WAIT).await
}

impl RawDevice {
    pub async fn connect(
        server: &TestServer,
        dialect: Dialect,
        product: &str,
        device: &str,
        secret: &str,
    ) -> Self {
        let addr = DeviceAddr::new(product, device);
        let creds = protocol::sign(dialect, &addr, secret, 1_617_773_607_348);
        let (client, mut eventloop) = connect_raw(options(server, &creds))
            .await
            .expect("device login refused");
        let (tx, inbox) = mpsc::unbounded_channel();
        let connection = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    let value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send((p.topic.clone(), value)).is_err() {
                        break;
                    }
                }
            }
        });
        RawDevice {
            client,
            inbox,
            dialect,
            addr,
            connection,
        }
    }

    pub async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
    }

    pub async fn send(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// The next message on `topic`, skipping others.
    pub async fn next_on(&mut self, topic: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let (t, v) = self.inbox.recv().await.expect("connection closed");
                if t == topic {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {topic}"))
    }

    /// Asserts nothing arrives within `window`.
    pub async fn nothing_for(&mut self, window: Duration) {
        if let Ok(Some(msg)) = tokio::time::timeout(window, self.inbox.recv()).await {
            panic!("unexpected message {msg:?}");
        }
    }
}

pub const IMAGE_LEN: usize = 300_000;

pub fn image() -> Vec<u8> {
    (0..IMAGE_LEN).map(|i| (i * 31 % 251) as u8).collect()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// Downloads `url` with a Range header as a device would; returns status and body.
pub async fn download(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(range) = range {
        req = req.header("Range", range);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}
