//! The MQTT workloads, each run the same way against Otter and against Mosquitto: hold N
//! connections, fan one message out to each of N devices, and version-report round trips.

use crate::fleet::{self, Api, Conn, Device};
use crate::mqtt::{self, Packet};
use anyhow::{Result, bail};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Held {
    pub conns: Vec<Conn>,
    pub connect_secs: f64,
    pub bytes_per_conn: f64,
}

/// Row 1: connect and hold every device; memory is the server's RSS growth per connection. With
/// `otter`, the connect time runs until Otter has recorded every device online (a campaign
/// pushes at once only to devices it knows are online; the others get it at their next report).
pub async fn hold(
    broker: SocketAddr,
    devices: &[Device],
    server_pid: u32,
    otter: Option<&Api>,
) -> Result<Held> {
    let before = crate::procs::rss_kib(server_pid);
    let start = Instant::now();
    let (conns, _) = fleet::open_all(broker, devices, 256).await?;
    if let Some(api) = otter {
        while api.online().await? < devices.len() {
            if start.elapsed() > Duration::from_secs(600) {
                bail!("Otter never recorded all {} devices online", devices.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = crate::procs::rss_kib(server_pid);
    let bytes_per_conn = (after.saturating_sub(before) * 1024) as f64 / devices.len() as f64;
    Ok(Held {
        conns,
        connect_secs: took.as_secs_f64(),
        bytes_per_conn,
    })
}

/// Waits on every connection for its first PUBLISH (acking it); returns when all N arrived.
fn await_one_each(
    conns: Vec<Conn>,
    needle: &'static [u8],
) -> (Arc<AtomicUsize>, tokio::task::JoinSet<()>) {
    let got = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for mut conn in conns {
        let got = Arc::clone(&got);
        set.spawn(async move {
            while let Ok(packet) = conn.reader.next().await {
                let Packet::Publish(publish) = packet else {
                    continue;
                };
                let payload = &publish.payload;
                let hit = needle.is_empty() || payload.windows(needle.len()).any(|w| w == needle);
                if publish.pkid != 0 {
                    let _ = conn.send(&mqtt::puback(publish.pkid)).await;
                }
                if hit {
                    got.fetch_add(1, Ordering::SeqCst);
                    // Keep the connection open until the whole run ends.
                    std::future::pending::<()>().await;
                }
            }
        });
    }
    (got, set)
}

async fn wait_count(got: &AtomicUsize, n: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while got.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} devices got their message",
                got.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Row 2, Otter: campaign start → every device holds its `update_firmware` (each push recorded).
pub async fn fanout_otter(api: &Api, held: Held, devices: &[Device], run: usize) -> Result<f64> {
    let module = format!("bench{run}");
    api.upload("2.0.0", &module, vec![7u8; 1024]).await?;
    let (got, set) = await_one_each(held.conns, b"update_firmware");
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    let start = Instant::now();
    let created = api.post("/campaigns", json!({ "product": fleet::PRODUCT, "version": "2.0.0", "module": module, "skip_verification": true, "selection": { "devices": names } })).await?;
    wait_count(&got, devices.len(), Duration::from_secs(300)).await?;
    let took = start.elapsed().as_secs_f64();
    // These devices never install: end the campaign so its planner work does not load later rows.
    api.post(&format!("/campaigns/{}/cancel", created["id"]), json!({}))
        .await?;
    drop(set);
    Ok(took)
}

/// Row 2, Mosquitto: one publisher sends one QoS 1 message to each device's topic.
pub async fn fanout_mosquitto(broker: SocketAddr, held: Held, devices: &[Device]) -> Result<f64> {
    let (got, set) = await_one_each(held.conns, b"");
    let publisher = fleet::plain("bench-publisher", "bench/none");
    let mut conn = fleet::open(broker, &publisher, 999).await?;
    let payload = br#"{"type":"update_firmware","version":"2.0.0","url":"http://127.0.0.1/dl/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/BENCHPRD01/d00000/1800000000/AAAAAAAAAAAAAAAAAAAAAA","md5sum":"0123456789abcdef0123456789abcdef","file_size":1024}"#;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(64 * 1024);
    for (i, d) in devices.iter().enumerate() {
        batch.extend_from_slice(&mqtt::publish(
            &d.update,
            payload,
            1,
            (i % 65_000 + 1) as u16,
        ));
        if batch.len() > 60_000 {
            conn.send(&batch).await?;
            batch.clear();
        }
    }
    conn.send(&batch).await?;
    let drain = tokio::spawn(async move { while conn.reader.next().await.is_ok() {} });
    wait_count(&got, devices.len(), Duration::from_secs(300)).await?;
    let took = start.elapsed().as_secs_f64();
    drain.abort();
    drop(set);
    Ok(took)
}

pub struct RoundTrips {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Row 3: `clients` devices each send report_version and wait for report_version_rsp, for `secs`.
pub async fn round_trips(broker: SocketAddr, devices: &[Device], secs: f64) -> Result<RoundTrips> {
    let (conns, _) = fleet::open_all(broker, devices, 128).await?;
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut set = tokio::task::JoinSet::new();
    for (mut conn, dev) in conns.into_iter().zip(devices.to_vec()) {
        set.spawn(async move {
            let mut latencies = Vec::new();
            let report = mqtt::publish(
                &dev.report,
                br#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
                1,
                7,
            );
            while Instant::now() < stop {
                let t = Instant::now();
                if conn.send(&report).await.is_err() {
                    break;
                }
                loop {
                    let Ok(packet) = conn.reader.next().await else {
                        return latencies;
                    };
                    if let Packet::Publish(publish) = packet {
                        if publish.pkid != 0 {
                            let _ = conn.send(&mqtt::puback(publish.pkid)).await;
                        }
                        break;
                    }
                }
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        });
    }
    let mut all: Vec<f64> = Vec::new();
    while let Some(l) = set.join_next().await {
        all.extend(l?);
    }
    if all.is_empty() {
        bail!("no round trip completed");
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    Ok(RoundTrips {
        per_sec: all.len() as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

/// The separate responder that plays Otter's part for Mosquitto: answers every report_version.
pub async fn responder(broker: SocketAddr) -> Result<()> {
    let me = fleet::plain("bench-responder", "$ota/report/+/+");
    let mut conn = fleet::open(broker, &me, 998).await?;
    let rsp = br#"{"type":"report_version_rsp","result_code":0,"result_msg":"success","version":"1.0.0"}"#;
    let mut next_id: u16 = 1;
    loop {
        let Packet::Publish(publish) = conn.reader.next().await? else {
            continue;
        };
        let topic = publish.topic.replacen("$ota/report/", "$ota/update/", 1);
        let mut out = Vec::with_capacity(200);
        if publish.pkid != 0 {
            out.extend_from_slice(&mqtt::puback(publish.pkid));
        }
        out.extend_from_slice(&mqtt::publish(&topic, rsp, 1, next_id));
        next_id = next_id.wrapping_add(1).max(1);
        conn.send(&out).await?;
    }
}
