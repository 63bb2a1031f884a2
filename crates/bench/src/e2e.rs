//! Row 5: N simulated devices (otter-agent's simulator, real HTTP downloads with MD5 checks)
//! upgrade a 1 MiB image through Otter; wall time from campaign start to all succeeded.

use crate::fleet::{self, Api};
use anyhow::{Result, bail};
use otter_agent::sim::{Behavior, Fleet, SimConfig, SimDevice};
use otter_protocol::Dialect;
use serde_json::json;
use std::time::{Duration, Instant};

pub async fn run(api: &Api, mqtt: std::net::SocketAddr, n: usize, run: usize) -> Result<f64> {
    let devices: Vec<SimDevice> = fleet::devices(n)
        .into_iter()
        .map(|d| SimDevice {
            dialect: Dialect::Tencent,
            product: fleet::PRODUCT.into(),
            device: d.name,
            secret: fleet::SECRET.into(),
            version: format!("1.0.{run}"),
            behavior: Behavior::Succeed,
        })
        .collect();
    let sims = Fleet::start(
        SimConfig {
            download: true,
            ..SimConfig::new(mqtt.to_string())
        },
        devices,
    )
    .await?;
    if !sims.wait_connected(Duration::from_secs(120)).await {
        bail!(
            "only {} of {n} simulated devices connected",
            sims.connected()
        );
    }
    let version = format!("5.0.{run}");
    api.upload(
        &version,
        "default",
        (0..1u32 << 20).map(|i| (i % 251) as u8).collect(),
    )
    .await?;
    let names: Vec<String> = (0..n).map(|i| format!("d{i:05}")).collect();
    let start = Instant::now();
    let created = api.post("/campaigns", json!({ "product": fleet::PRODUCT, "version": version, "skip_verification": true, "supersede": true, "selection": { "devices": names } })).await?;
    let id = created["id"].as_i64().unwrap_or_default();
    loop {
        let c = api.get(&format!("/campaigns/{id}")).await?;
        if c["counts"]["succeeded"].as_u64() == Some(n as u64) {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("end to end did not finish: {}", c["counts"]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed().as_secs_f64();
    sims.stop().await;
    Ok(took)
}
