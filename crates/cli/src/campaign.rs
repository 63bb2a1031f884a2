//! `otter campaign …`: fleet rollouts through the server's `/campaigns` API, `watch`, which
//! follows one live until it ends, and `otter upgrade` (a campaign of one device).

use crate::client::{Conn, NO_BODY, cell, human_time, table};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use otter_api::{
    AbortRule, BakeRecord, CampaignCreated, CampaignMode, CampaignState, CampaignView,
    HealthPolicy, NewCampaign, OnUnhealthy, ReasonCount, Selection, Strategy, Upgrade,
    UpgradeState, Window,
};
use reqwest::Method;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum CampaignCmd {
    /// Create a rollout (or preview it with --dry-run).
    Create(Box<CreateArgs>),
    /// List campaigns.
    List {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a campaign: state, counts by device state, and its devices.
    Show {
        /// Campaign id (as `campaign list` shows it).
        id: i64,
        /// Only devices in this state (queued, pending, pushed, downloading, burning, succeeded, failed, timed_out, canceled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many devices listed.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop releasing devices; devices already released go on.
    Pause {
        /// Campaign id (as `campaign list` shows it).
        id: i64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Release devices again.
    Resume {
        /// Campaign id (as `campaign list` shows it).
        id: i64,
        #[command(flatten)]
        conn: Conn,
    },
    /// End the campaign; every device not yet finished is canceled.
    Cancel {
        /// Campaign id (as `campaign list` shows it).
        id: i64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow a campaign live until it ends; the last thing printed is what `campaign show`
    /// prints of it (with --json: the campaign as `campaign show --json` has it, without its
    /// devices, one JSON document per line each time it changes; the last line is the end).
    Watch {
        /// Campaign id (as `campaign list` shows it).
        id: i64,
        /// Poll interval in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
    #[arg(long)]
    product: String,
    /// Target firmware version.
    #[arg(long)]
    version: String,
    /// Firmware module [default: default].
    #[arg(long)]
    module: Option<String>,
    /// Take devices at this source version (repeatable).
    #[arg(long = "from-version")]
    from_versions: Vec<String>,
    /// Take this device (repeatable; with --from-version: only if at one of those versions).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// File of device names: one per line, or CSV with a name column. Versions are ignored.
    #[arg(long)]
    devices_file: Option<PathBuf>,
    /// Take only devices with this tag (repeatable: all must match).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Device-requested: push nothing; devices get the offer when they ask for it.
    #[arg(long)]
    device_requested: bool,
    /// Start time, RFC 3339 (e.g. 2026-12-01T02:00:00+08:00) [default: now].
    #[arg(long)]
    start_at: Option<String>,
    /// Maintenance window start, HH:MM local to --utc-offset.
    #[arg(long, requires = "window_minutes")]
    window_start: Option<String>,
    /// Maintenance window length in minutes.
    #[arg(long, requires = "window_start")]
    window_minutes: Option<u16>,
    /// Time zone of the window as an offset, e.g. +08:00 [default: +00:00].
    #[arg(long, default_value = "+00:00", allow_hyphen_values = true)]
    utc_offset: String,
    /// Most devices released per minute.
    #[arg(long)]
    rate: Option<u32>,
    /// Waves as cumulative percentages, e.g. 10,50,100.
    #[arg(long, value_delimiter = ',')]
    waves: Vec<u8>,
    /// % of earlier waves that must succeed before the next wave [default: 100].
    #[arg(long)]
    gate: Option<u8>,
    /// Per-device timeout in seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Retries of failed or timed-out devices (0–10).
    #[arg(long, default_value_t = 0)]
    retries: u8,
    /// Abort when more than this % of finished devices failed…
    #[arg(long)]
    abort_percent: Option<u8>,
    /// …after at least this many devices finished.
    #[arg(long, default_value_t = 10)]
    abort_min: u32,
    /// Health gate: after each wave, bake this long (e.g. 30m, 2h, 90s) and judge the wave by
    /// --health before the next one (and before the campaign ends).
    #[arg(long, value_parser = parse_duration, requires = "health")]
    bake: Option<u64>,
    /// Health rules, all must hold: came_back>=P%, churn<=Nx, offline<=Nx, <counter><=N/h
    /// (e.g. 'came_back>=99%,churn<=2x,offline<=1.5x,crashes<=0.5/h'; docs/campaigns.md).
    #[arg(long, requires = "bake")]
    health: Option<String>,
    /// What an unhealthy verdict does: pause (default) or rollback (abort, and offer every
    /// device that took the release its previous version).
    #[arg(long, default_value = "pause", value_parser = ["pause", "rollback"])]
    on_unhealthy: String,
    /// Fewer judged devices than this: a health gate neither passes nor trips (it pauses).
    #[arg(long, default_value_t = 5)]
    health_min_devices: u32,
    /// Replace the devices' upgrades in other live campaigns instead of refusing.
    #[arg(long)]
    supersede: bool,
    /// Allow targets older than a device's current version.
    #[arg(long)]
    allow_downgrade: bool,
    /// Use firmware that was not verified on test devices (recorded on the campaign).
    #[arg(long)]
    skip_verification: bool,
    /// Print the devices matched, the waves and the projected timeline; start nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    conn: Conn,
}

pub async fn run(cmd: CampaignCmd) -> Result<()> {
    match cmd {
        CampaignCmd::Create(args) => create(*args).await,
        CampaignCmd::List { product, conn } => {
            let path = match product {
                Some(p) => format!("/campaigns?product={p}"),
                None => "/campaigns".into(),
            };
            let list: Vec<CampaignView> = conn.get(&path).await?;
            conn.print(&list, |list| {
                table(
                    &[
                        "id",
                        "product",
                        "version",
                        "state",
                        "succeeded",
                        "failed",
                        "created",
                        "why",
                    ],
                    list,
                    |v| {
                        let c = &v.campaign;
                        vec![
                            cell(&c.id),
                            cell(&c.product),
                            cell(&v.firmware.version),
                            state_word(v),
                            format!("{}/{}", v.counts.get(UpgradeState::Succeeded), v.total),
                            cell(&v.failed),
                            human_time(c.created_at.as_ms()),
                            c.reason.clone().or(v.waiting.clone()).unwrap_or_default(),
                        ]
                    },
                )
            });
            Ok(())
        }
        CampaignCmd::Show {
            id,
            state,
            limit,
            conn,
        } => {
            let view: CampaignView = conn.get(&format!("/campaigns/{id}")).await?;
            let filter = state.map(|s| format!("&state={s}")).unwrap_or_default();
            let devices: Vec<Upgrade> = conn
                .get(&format!("/campaigns/{id}/devices?limit={limit}{filter}"))
                .await?;
            let shown = CampaignShown { view, devices };
            conn.print(&shown, |v| {
                format!(
                    "{}\n\n{}",
                    summary(&v.view),
                    table(
                        &["device", "state", "percent", "attempts", "updated", "why"],
                        &v.devices,
                        |u| vec![
                            cell(&u.device),
                            cell(&u.state),
                            cell(&u.percent),
                            cell(&u.attempts),
                            human_time(u.updated_at.as_ms()),
                            why(u),
                        ]
                    )
                )
            });
            Ok(())
        }
        CampaignCmd::Pause { id, conn } => act(id, "pause", conn).await,
        CampaignCmd::Resume { id, conn } => act(id, "resume", conn).await,
        CampaignCmd::Cancel { id, conn } => act(id, "cancel", conn).await,
        CampaignCmd::Watch {
            id,
            interval_ms,
            conn,
        } => watch(id, Duration::from_millis(interval_ms.max(100)), conn).await,
    }
}

/// What `campaign show --json` prints: the campaign and its devices.
#[derive(Serialize)]
struct CampaignShown {
    #[serde(flatten)]
    view: CampaignView,
    devices: Vec<Upgrade>,
}

async fn act(id: i64, action: &str, conn: Conn) -> Result<()> {
    let v: CampaignView = conn
        .call(Method::POST, &format!("/campaigns/{id}/{action}"), NO_BODY)
        .await?;
    conn.print(&v, summary);
    Ok(())
}

/// The campaign's state in a word; an ended one's outcome ("finished with failures").
fn state_word(v: &CampaignView) -> String {
    match v.outcome {
        Some(outcome) => outcome.describe().to_owned(),
        None => v.campaign.state.as_str().to_owned(),
    }
}

/// Why a device is where it is, for people: Otter's reason, the device's result code in words,
/// its own text, and when a retry is due.
fn why(u: &Upgrade) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(reason) = u.reason {
        parts.push(reason.describe().to_owned());
    }
    if let Some(code) = u.result_code {
        let text = u.result_text.as_deref().unwrap_or("no explanation");
        parts.push(format!("code {code}: {text}"));
    }
    if let Some(msg) = u.result_msg.as_deref().filter(|m| !m.is_empty()) {
        parts.push(format!("{msg:?}"));
    }
    if let Some(at) = u.retry_not_before {
        parts.push(format!("retry not before {}", human_time(at.as_ms())));
    }
    parts.join("; ")
}

fn summary(v: &CampaignView) -> String {
    let c = &v.campaign;
    let counts: Vec<String> = v.counts.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let reason = c
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let retrying = if v.retrying > 0 {
        format!(" ({} of them queued for a retry)", v.retrying)
    } else {
        String::new()
    };
    let waiting = v
        .waiting
        .as_ref()
        .map(|w| format!("\n  waiting: {w}"))
        .unwrap_or_default();
    format!(
        "campaign #{} {} → {}: {}{reason}\ndevices {}: {}{retrying}{waiting}{}",
        c.id,
        c.product,
        v.firmware.version,
        state_word(v),
        v.total,
        counts.join(", "),
        reasons(&v.reasons),
    ) + &gates(&v.bakes)
}

/// The health gates' timeline: one line per bake ("" when the campaign has none).
fn gates(bakes: &[BakeRecord]) -> String {
    bakes
        .iter()
        .map(|b| {
            let wave = u64::from(b.wave) + 1;
            match b.judgement() {
                Some(j) => format!(
                    "\n  health gate after wave {wave}: {}{}",
                    j.evaluation.summary,
                    if b.accepted {
                        " (accepted by the operator)"
                    } else {
                        ""
                    }
                ),
                None => format!(
                    "\n  health gate after wave {wave}: baking since {}",
                    human_time(b.started_at.as_ms())
                ),
            }
        })
        .collect()
}

/// The campaign's verdicts counted per state and reason, one line each ("" when none).
fn reasons(reasons: &[ReasonCount]) -> String {
    reasons
        .iter()
        .map(|r| {
            format!(
                "\n  {} {}: {} ({})",
                r.devices,
                r.state.as_str(),
                r.reason.describe(),
                r.reason.as_str()
            )
        })
        .collect()
}

async fn create(a: CreateArgs) -> Result<()> {
    let device_file = a
        .devices_file
        .as_ref()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .transpose()?;
    let start_at_ms = a.start_at.as_deref().map(parse_time).transpose()?;
    let window = match (&a.window_start, a.window_minutes) {
        (Some(start), Some(minutes)) => Some(Window {
            start_minute: parse_hhmm(start)?,
            duration_minutes: minutes,
            utc_offset_minutes: parse_offset(&a.utc_offset)?,
        }),
        _ => None,
    };
    let health = match (&a.bake, &a.health) {
        (Some(bake), Some(rules)) => Some(HealthPolicy {
            bake_secs: *bake,
            rules: otter_core::health::parse_rules(rules)?,
            min_devices: a.health_min_devices,
            on_unhealthy: match a.on_unhealthy.as_str() {
                "rollback" => OnUnhealthy::Rollback,
                _ => OnUnhealthy::Pause,
            },
        }),
        _ => None,
    };
    let strategy = Strategy {
        start_at_ms,
        window,
        rate_per_minute: a.rate,
        waves: a.waves,
        gate_percent: a.gate.unwrap_or(100),
        timeout_secs: a.timeout,
        retries: a.retries,
        abort: a.abort_percent.map(|p| AbortRule {
            failure_percent: p,
            min_finished: a.abort_min,
        }),
        health,
    };
    let plan = health_plan(&strategy);
    let body = NewCampaign {
        product: a.product,
        version: a.version,
        module: a.module,
        selection: Selection {
            versions: a.from_versions,
            devices: a.devices,
            tags: a.tags,
        },
        device_file,
        strategy,
        mode: if a.device_requested {
            CampaignMode::Requested
        } else {
            CampaignMode::Push
        },
        dry_run: a.dry_run,
        supersede: a.supersede,
        allow_downgrade: a.allow_downgrade,
        skip_verification: a.skip_verification,
    };
    let v: CampaignCreated = a.conn.call(Method::POST, "/campaigns", Some(&body)).await?;
    a.conn.print(&v, |v| {
        let selected = v.targeting.selected.len();
        let skipped: Vec<String> = v
            .targeting
            .skipped
            .iter()
            .map(|s| format!("  {}: {}", s.device, s.reason))
            .collect();
        let waves: Vec<String> = v
            .projection
            .waves
            .iter()
            .map(|w| {
                format!(
                    "  wave {}: {} devices, earliest {} → {}",
                    w.wave,
                    w.devices,
                    when(Some(w.earliest_start_ms)),
                    when(Some(w.earliest_end_ms))
                )
            })
            .collect();
        let head = match &v.view {
            Some(view) if !v.dry_run => summary(view),
            _ => "dry run: nothing started".to_owned(),
        };
        format!(
            "{head}\n{selected} devices selected\n{plan}{}{}",
            if waves.is_empty() {
                String::new()
            } else {
                format!("projected timeline:\n{}\n", waves.join("\n"))
            },
            if skipped.is_empty() {
                String::new()
            } else {
                format!("skipped:\n{}", skipped.join("\n"))
            }
        )
    });
    Ok(())
}

/// The health gates a campaign will apply, in a line ("" without them).
fn health_plan(strategy: &Strategy) -> String {
    let Some(health) = &strategy.health else {
        return String::new();
    };
    let rules: Vec<String> = health.rules.iter().cloned().map(String::from).collect();
    format!(
        "health gates: each wave bakes {} s, then is judged by {} (at least {} devices; unhealthy: {}); a wave starts no sooner than the bake before it allows\n",
        health.bake_secs,
        rules.join(", "),
        health.min_devices,
        cell(&health.on_unhealthy)
    )
}

fn when(ms: Option<i64>) -> String {
    ms.map(human_time).unwrap_or_else(|| "-".into())
}

fn parse_time(text: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--start-at {text:?} is not RFC 3339"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `90s`, `30m`, `2h`, `1d` or plain seconds → seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like 90s, 30m, 2h or 1d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("{text:?}: must be at least 1 s")),
        Some(secs) => Ok(secs),
    }
}

fn parse_hhmm(text: &str) -> Result<u16> {
    let (h, m) = text
        .split_once(':')
        .with_context(|| format!("{text:?} is not HH:MM"))?;
    let (h, m): (u16, u16) = (h.parse()?, m.parse()?);
    if h > 23 || m > 59 {
        bail!("{text:?} is not a time of day");
    }
    Ok(h * 60 + m)
}

fn parse_offset(text: &str) -> Result<i16> {
    let sign = match text.chars().next() {
        Some('+') => 1,
        Some('-') => -1,
        _ => bail!("--utc-offset {text:?} must look like +08:00 or -05:00"),
    };
    Ok(sign * parse_hhmm(&text[1..])? as i16)
}

/// Polls the campaign; draws bars (or prints JSON lines) whenever something changed.
async fn watch(id: i64, every: Duration, conn: Conn) -> Result<()> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} {bar:40} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let done_bar = bars.add(
        ProgressBar::new(0)
            .with_style(style.clone())
            .with_prefix("finished"),
    );
    let ok_bar = bars.add(
        ProgressBar::new(0)
            .with_style(style)
            .with_prefix("succeeded"),
    );
    let mut last = None;
    loop {
        let v: CampaignView = conn.get(&format!("/campaigns/{id}")).await?;
        // `updated_at` moves with every device; a frame is drawn when what it shows changes.
        let mut event = v.clone();
        event.campaign.updated_at = Default::default();
        if last.as_ref() != Some(&event) {
            if conn.json {
                crate::client::print_line(&serde_json::to_string(&v)?);
            } else {
                let count = |s: UpgradeState| u64::try_from(v.counts.get(s)).unwrap_or(0);
                let total = u64::try_from(v.total).unwrap_or(0);
                let finished = count(UpgradeState::Succeeded)
                    + count(UpgradeState::Failed)
                    + count(UpgradeState::TimedOut)
                    + count(UpgradeState::Canceled)
                    + count(UpgradeState::Skipped);
                done_bar.set_length(total);
                done_bar.set_position(finished);
                ok_bar.set_length(total);
                ok_bar.set_position(count(UpgradeState::Succeeded));
                done_bar.set_message(v.campaign.state.as_str().to_owned());
                ok_bar.set_message(format!(
                    "failed {} timed out {} skipped {} in flight {}",
                    count(UpgradeState::Failed),
                    count(UpgradeState::TimedOut),
                    count(UpgradeState::Skipped),
                    count(UpgradeState::Pending)
                        + count(UpgradeState::Pushed)
                        + count(UpgradeState::Downloading)
                        + count(UpgradeState::Burning)
                ));
            }
            last = Some(event);
        }
        if !matches!(
            v.campaign.state,
            CampaignState::Scheduled | CampaignState::Running | CampaignState::Paused
        ) {
            // `abandon`, not `finish`: finishing fills a bar to its length, drawing "30/30
            // succeeded" when 24 did.
            done_bar.abandon();
            ok_bar.abandon();
            if !conn.json {
                crate::client::print_line(&summary(&v));
            }
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
    #[arg(long)]
    product: String,
    /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
    #[arg(long)]
    device: String,
    /// Target firmware version (uploaded beforehand).
    #[arg(long)]
    version: String,
    /// Firmware module [default: default].
    #[arg(long)]
    module: Option<String>,
    /// Allow a target older than the device's current version.
    #[arg(long)]
    allow_downgrade: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `otter upgrade`: a campaign of one device.
pub async fn upgrade(a: UpgradeArgs) -> Result<()> {
    let body = NewCampaign {
        product: a.product,
        version: a.version.clone(),
        module: a.module,
        selection: Selection {
            devices: vec![a.device.clone()],
            ..Default::default()
        },
        // A single-device upgrade is an explicit operator action, recorded on the campaign.
        skip_verification: true,
        allow_downgrade: a.allow_downgrade,
        ..Default::default()
    };
    let v: CampaignCreated = a.conn.call(Method::POST, "/campaigns", Some(&body)).await?;
    a.conn.print(&v, |v| {
        let upgrade = v.upgrades.first();
        let state = upgrade.map_or("-", |u| u.state.as_str());
        // Say at once when the device will not simply be pushed now, and why.
        let why = upgrade
            .and_then(|u| {
                u.reason.map(|r| match &u.result_msg {
                    Some(detail) => format!(": {detail}"),
                    None => format!(": {}", r.describe()),
                })
            })
            .unwrap_or_default();
        format!(
            "campaign #{}: {} → {} ({state}{why})",
            cell(&v.view.as_ref().map(|c| c.campaign.id)),
            a.device,
            a.version
        )
    });
    Ok(())
}
