//! Health reports (docs/protocol-extensions.md "Health reports"): a command of the device's
//! run now and then prints how the device fares — `crashes 2`, `reboots=1` or a JSON object —
//! and the agent sends those counters to the server, where health gates judge a release by them.
//! The command prints increments since its previous run (the agent adds nothing of its own).

use std::collections::BTreeMap;
use std::time::Duration;

use otter_protocol::health::{MAX_COUNTERS, MAX_INCREMENT, valid_counter_name};
use tokio::sync::mpsc;

/// How the agent gathers health reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReports {
    /// `sh -c` command printing counters, one `name value` (or `name=value`) per line, or one
    /// JSON object of names to non-negative integers.
    pub command: String,
    /// How often it runs; the first run is after `first`.
    pub every: Duration,
    pub first: Duration,
}

/// Runs the command on its schedule and hands each report's counters to `out` until the
/// receiver is gone. A failing command or unreadable output is logged and skipped.
pub(crate) async fn run(
    settings: HealthReports,
    out: mpsc::UnboundedSender<BTreeMap<String, u64>>,
) {
    let mut wait = settings.first;
    loop {
        tokio::time::sleep(wait).await;
        wait = settings.every;
        match gather(&settings.command).await {
            Ok(counters) if counters.is_empty() => {}
            Ok(counters) => {
                if out.send(counters).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(command = %settings.command, error = %e, "health report command failed")
            }
        }
    }
}

async fn gather(command: &str) -> Result<BTreeMap<String, u64>, String> {
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("exited with {}", output.status));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Reads counters from a command's output (see [`HealthReports::command`]).
pub(crate) fn parse(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let text = text.trim();
    let pairs: Vec<(String, u64)> = if text.starts_with('{') {
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
        map.into_iter()
            .map(|(k, v)| {
                let n = v
                    .as_u64()
                    .ok_or_else(|| format!("{k}: {v} is not a non-negative integer"))?;
                Ok((k, n))
            })
            .collect::<Result<_, String>>()?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (k, v) = line
                    .split_once(['=', ' ', '\t'])
                    .ok_or_else(|| format!("line {line:?}: expected `name value`"))?;
                let n = v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("line {line:?}: not a count"))?;
                Ok((k.trim().to_owned(), n))
            })
            .collect::<Result<_, String>>()?
    };
    if pairs.len() > MAX_COUNTERS {
        return Err(format!("{} counters, at most {MAX_COUNTERS}", pairs.len()));
    }
    let mut out = BTreeMap::new();
    for (name, n) in pairs {
        if !valid_counter_name(&name) {
            return Err(format!("counter name {name:?}: 1–32 of a-z, 0-9 and _"));
        }
        let total: &mut u64 = out.entry(name).or_default();
        *total = total.saturating_add(n).min(MAX_INCREMENT);
    }
    out.retain(|_, n| *n > 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_json_both_read() {
        let want = BTreeMap::from([("crashes".to_owned(), 2), ("reboots".to_owned(), 1)]);
        assert_eq!(parse("crashes 2\nreboots=1\n# note\n").unwrap(), want);
        assert_eq!(parse(r#"{"crashes":2,"reboots":1,"oom":0}"#).unwrap(), want);
        assert!(parse("Crashes 1").is_err());
        assert!(parse("crashes -1").is_err());
        assert!(parse(r#"{"crashes":"1"}"#).is_err());
        assert!(parse("").unwrap().is_empty());
    }
}
