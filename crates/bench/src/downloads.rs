//! Row 4: the firmware download path against nginx (sendfile) on the same files, with wrk as the
//! client: whole 1 MiB and 16 MiB files, and random 64 KiB ranges, at several connection counts.

use crate::fleet::{self, Api};
use crate::mqtt::{self, Packet};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::Path;
use std::process::Command;

pub struct Target {
    pub name: &'static str,
    pub size: u64,
    pub otter_url: String,
    pub nginx_url: String,
}

/// Uploads the files to Otter and obtains a signed link for each, as a device would: by
/// receiving a push.
pub async fn prepare(
    api: &Api,
    mqtt: std::net::SocketAddr,
    nginx: &str,
    root: &Path,
) -> Result<Vec<Target>> {
    let dl = fleet::device("dlbench");
    api.register(std::slice::from_ref(&dl)).await?;
    let mut conn = fleet::open(mqtt, &dl, 0).await?;
    let mut targets = Vec::new();
    for (name, size) in [("1 MiB", 1u64 << 20), ("16 MiB", 16 << 20)] {
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let file = format!("f{size}.bin");
        std::fs::write(root.join(&file), &bytes)?;
        let module = format!("dl{size}");
        api.upload("9.0.0", &module, bytes).await?;
        api.post("/campaigns", json!({ "product": fleet::PRODUCT, "version": "9.0.0", "module": module, "skip_verification": true, "selection": { "devices": ["dlbench"] } })).await?;
        let url = loop {
            let Packet::Publish(publish) = conn.reader.next().await? else {
                continue;
            };
            if publish.pkid != 0 {
                conn.send(&mqtt::puback(publish.pkid)).await?;
            }
            let v: serde_json::Value = serde_json::from_slice(&publish.payload)?;
            if let Some(url) = v["url"].as_str() {
                break url.to_owned();
            }
        };
        targets.push(Target {
            name,
            size,
            otter_url: url,
            nginx_url: format!("{nginx}/{file}"),
        });
    }
    Ok(targets)
}

/// Runs wrk; returns (requests per second, MiB per second).
pub fn wrk(
    url: &str,
    conns: usize,
    secs: u64,
    range_of: Option<u64>,
    scratch: &Path,
) -> Result<(f64, f64)> {
    let mut cmd = Command::new(crate::procs::which("wrk")?);
    cmd.args([
        "-t",
        &conns.min(2).to_string(),
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
    ]);
    if let Some(size) = range_of {
        let script = scratch.join("ranges.lua");
        std::fs::write(
            &script,
            format!(
                "math.randomseed(42)\nrequest = function()\n  local s = math.random(0, {} - 65536)\n  return wrk.format(\"GET\", nil, {{[\"Range\"] = \"bytes=\" .. s .. \"-\" .. (s + 65535)}})\nend\n",
                size
            ),
        )?;
        cmd.arg("-s").arg(&script);
    }
    let out = cmd.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        bail!("wrk saw errors against {url}:\n{text}");
    }
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
    };
    let rps: f64 = field("Requests/sec:")
        .context("wrk printed no Requests/sec")?
        .parse()?;
    let transfer = field("Transfer/sec:").context("wrk printed no Transfer/sec")?;
    Ok((rps, mib(&transfer)))
}

fn mib(text: &str) -> f64 {
    let (num, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = num.parse().unwrap_or(0.0);
    match unit {
        "GB" => n * 1024.0,
        "MB" => n,
        "KB" => n / 1024.0,
        _ => n / (1024.0 * 1024.0),
    }
}
