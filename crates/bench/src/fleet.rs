//! The load generator's devices: Tencent-dialect identities registered in Otter, and raw MQTT
//! connections to whichever broker is measured, spread over loopback source addresses (one
//! source address runs out of ephemeral ports long before 19,000 connections).

use crate::mqtt::{self, Packet, Reader};
use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use otter_protocol::{DeviceAddr, Dialect};
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub const PRODUCT: &str = "BENCHPRD01";
/// base64 of 16 bytes: Tencent's secret format.
pub const SECRET: &str = "YmVuY2gtc2VjcmV0LWtleQ==";

#[derive(Clone)]
pub struct Device {
    pub name: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub update: String,
    pub report: String,
}

pub fn devices(n: usize) -> Vec<Device> {
    (0..n).map(|i| device(&format!("d{i:05}"))).collect()
}

/// A Tencent device of the bench product, with the credentials its SDK would send.
pub fn device(name: &str) -> Device {
    let creds = otter_protocol::sign(Dialect::Tencent, &DeviceAddr::new(PRODUCT, name), SECRET, 0);
    Device {
        update: format!("$ota/update/{PRODUCT}/{name}"),
        report: format!("$ota/report/{PRODUCT}/{name}"),
        client_id: creds.client_id,
        username: creds.username.unwrap_or_default(),
        // Tencent's password is text (hex HMAC and its algorithm's name).
        password: String::from_utf8(creds.password.unwrap_or_default())
            .expect("a Tencent password is text"),
        name: name.into(),
    }
}

/// A plain client (no credentials) subscribed to `filter`: the Mosquitto-side helpers.
pub fn plain(client_id: &str, filter: &str) -> Device {
    Device {
        name: client_id.into(),
        client_id: client_id.into(),
        username: String::new(),
        password: String::new(),
        update: filter.into(),
        report: String::new(),
    }
}

pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            base: base.into(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let resp = self
            .client
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(crate::procs::TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() && status.as_u16() != 409 {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value> {
        Ok(self
            .client
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(crate::procs::TOKEN)
            .send()
            .await?
            .json()
            .await?)
    }

    pub async fn upload(&self, version: &str, module: &str, bytes: Vec<u8>) -> Result<()> {
        let url = format!(
            "{}/api/v1/products/{PRODUCT}/firmware?version={version}&module={module}",
            self.base
        );
        let resp = self
            .client
            .post(url)
            .bearer_auth(crate::procs::TOKEN)
            .body(bytes)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("upload: {}", resp.status());
        }
        Ok(())
    }

    /// How many of the bench product's devices the server has recorded as online.
    pub async fn online(&self) -> Result<usize> {
        let mut online = 0;
        for offset in (0..).step_by(1000) {
            let page = self
                .get(&format!(
                    "/products/{PRODUCT}/devices?limit=1000&offset={offset}"
                ))
                .await?;
            let rows = page.as_array().cloned().unwrap_or_default();
            online += rows.iter().filter(|d| d["online"] == true).count();
            if rows.len() < 1000 {
                break;
            }
        }
        Ok(online)
    }

    /// Registers the product and devices (idempotent: 409s are fine).
    pub async fn register(&self, devices: &[Device]) -> Result<()> {
        self.post("/products", json!({ "id": PRODUCT, "dialect": "tencent" }))
            .await?;
        futures::stream::iter(devices)
            .map(|d| async move {
                self.post(
                    &format!("/products/{PRODUCT}/devices"),
                    json!({ "name": d.name, "secret": SECRET }),
                )
                .await
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

pub struct Conn {
    pub reader: Reader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Conn {
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.writer.write_all(bytes).await?)
    }

    /// Reads until `pick` takes a packet, skipping the others.
    pub async fn expect<T>(&mut self, pick: impl Fn(Packet) -> Option<T>) -> Result<T> {
        loop {
            if let Some(found) = pick(self.reader.next().await?) {
                return Ok(found);
            }
        }
    }
}

/// Connects (from 127.0.1.x), authenticates and subscribes the device's update topic at QoS 1.
pub async fn open(broker: SocketAddr, dev: &Device, index: usize) -> Result<Conn> {
    let socket = TcpSocket::new_v4()?;
    let source = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (index / 250 % 4) as u8,
        1 + (index % 250) as u8,
    ));
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket
        .connect(broker)
        .await
        .with_context(|| format!("connecting {}", dev.name))?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut conn = Conn {
        reader: Reader::new(r),
        writer: w,
    };
    let login =
        (!dev.username.is_empty()).then_some((dev.username.as_str(), dev.password.as_str()));
    conn.send(&mqtt::connect(&dev.client_id, login)).await?;
    let code = conn
        .expect(|p| match p {
            Packet::ConnAck(ack) => Some(ack.code),
            _ => None,
        })
        .await?;
    if code != ConnectReturnCode::Success {
        bail!("{} refused: CONNACK {code:?}", dev.name);
    }
    conn.send(&mqtt::subscribe(1, &dev.update, 1)).await?;
    conn.expect(|p| matches!(p, Packet::SubAck(_)).then_some(()))
        .await?;
    Ok(conn)
}

/// Opens every device's connection, `concurrency` at a time; returns them and the wall time.
pub async fn open_all(
    broker: SocketAddr,
    devices: &[Device],
    concurrency: usize,
) -> Result<(Vec<Conn>, Duration)> {
    let start = Instant::now();
    let conns = futures::stream::iter(devices.iter().enumerate())
        .map(|(i, d)| open(broker, d, i))
        .buffered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok((conns, start.elapsed()))
}
