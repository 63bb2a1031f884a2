//! A campaign's detail page, whose counts, progress and device rows the script refreshes live
//! from the API's event stream (`GET /api/v1/campaigns/{id}/stream`).

use crate::api::ApiState;
use crate::console::page::{self, PageError, PageResult, Section, badge, when};
use axum::extract::{Path, Query, State};
use axum::response::Html;
use maud::{Markup, html};
use otter_core::UpgradeState;
use otter_core::campaign::{CampaignState, Strategy};
use otter_store::{Campaign, StateCounts};
use serde::Deserialize;

/// Device rows per page of a campaign's table.
const ROWS: i64 = 50;
/// Upgrade states that count as finished for the progress bar.
const DONE: [UpgradeState; 5] = [
    UpgradeState::Succeeded,
    UpgradeState::Failed,
    UpgradeState::TimedOut,
    UpgradeState::Canceled,
    UpgradeState::Skipped,
];

#[derive(Deserialize)]
pub struct RowsQuery {
    state: Option<String>,
    offset: Option<i64>,
}

impl RowsQuery {
    fn state(&self) -> Result<Option<UpgradeState>, PageError> {
        match self.state.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => UpgradeState::parse(s).map(Some).ok_or_else(|| {
                PageError(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("unknown state {s:?}"),
                )
            }),
        }
    }
}

pub(super) async fn detail(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Query(q): Query<RowsQuery>,
) -> PageResult {
    let c = s.store().await.campaign(id).await?;
    let fw = s.store().await.firmware(c.firmware_id).await?;
    let counts = s.store().await.campaign_counts(id).await?;
    let reasons = s.store().await.campaign_reasons(id).await?;
    let bakes = s.store().await.campaign_bakes(id).await?;
    let rollbacks: Vec<i64> = s
        .store()
        .await
        .campaigns(Some(&c.product))
        .await?
        .into_iter()
        .filter(|other| other.rollback_of == Some(id))
        .map(|other| other.id)
        .collect();
    let total = counts.total();
    let failed = counts.get(UpgradeState::Failed) + counts.get(UpgradeState::TimedOut);
    let retrying = crate::api::campaigns::retrying(&reasons);
    let state = q.state()?;
    let table = device_table(&s, &c, &counts, state, q.offset.unwrap_or(0).max(0)).await?;
    let body = html! {
        main #campaign data-campaign=(c.id) data-state=(c.state.as_str()) {
            p.crumbs { a href="/campaigns" { "Campaigns" } " / #" (c.id) }
            h1 {
                "Campaign #" (c.id) " "
                span #campaign-state { (page::campaign_badge(c.state, failed)) }
            }
            p #campaign-reason.reason { (c.reason.clone().unwrap_or_default()) }
            div.actions role="group" aria-label="Campaign actions" {
                button data-action="pause" hidden[!can_pause(c.state)] { "Pause" }
                button data-action="resume" hidden[c.state != CampaignState::Paused] { "Resume" }
                button.danger data-action="cancel" hidden[!c.state.is_live()] { "Cancel campaign" }
                span.live #live-status role="status" aria-live="polite" {}
            }
            p.error #action-error role="alert" {}
            dl.facts {
                div { dt { "Product" } dd { a href={ "/products/" (c.product) } { (c.product) } } }
                div { dt { "Firmware" } dd { code { (fw.version) } " (module " (fw.module) ", " (page::bytes(fw.size)) ", " (fw.state.as_str()) ")" } }
                div { dt { "Kind" } dd { (c.kind.as_str()) @if c.skip_verification { ", verification skipped" } } }
                div { dt { "Mode" } dd { @if c.mode.as_str() == "requested" { "device-requested" } @else { "push" } } }
                div { dt { "Selection" } dd { code { (selection_text(&c.selection)) } } }
                div { dt { "Strategy" } dd { (strategy_text(&c.strategy)) } }
                @if let Some(of) = c.rollback_of {
                    div { dt { "Rolls back" } dd { a #rollback-of href={ "/campaigns/" (of) } { "campaign #" (of) } } }
                }
                @if !rollbacks.is_empty() {
                    div { dt { "Rolled back by" } dd #rollbacks {
                        @for r in &rollbacks { a.rollback href={ "/campaigns/" (r) } { "campaign #" (r) } " " }
                    } }
                }
                div { dt { "Created" } dd { (page::time(c.created_at)) } }
            }
            section {
                h2 { "Progress" }
                (progress(&counts, total))
                dl.counts #counts {
                    div { dt { "total" } dd data-count="total" { (total) } }
                    @for st in UpgradeState::ALL {
                        div class={ "c-" (st.as_str()) } { dt { (st.as_str().replace('_', " ")) } dd data-count=(st.as_str()) { (counts.get(st)) } }
                    }
                    div.c-retrying title="failed, and queued again for a retry" { dt { "retrying" } dd data-count="retrying" { (retrying) } }
                }
                @if !reasons.is_empty() {
                    h3 { "Why" }
                    ul #reasons {
                        @for r in &reasons {
                            li data-reason=(r.reason.as_str()) data-state=(r.state.as_str()) {
                                (r.state.as_str().replace('_', " "))
                                @if page::reason(r.reason) != r.state.as_str().replace('_', " ") { ": " (page::reason(r.reason)) }
                                " (" (r.devices) ")"
                            }
                        }
                    }
                }
            }
            @if let Some(policy) = &c.strategy.health {
                section #health {
                    h2 { "Health gates" }
                    p.muted { "Each wave bakes " (policy.bake_secs) " s, then is judged by "
                        code { (policy.rules.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")) }
                        " (at least " (policy.min_devices) " devices; unhealthy: "
                        (if policy.on_unhealthy == otter_core::health::OnUnhealthy::Rollback { "roll back" } else { "pause" }) ")." }
                    @if bakes.is_empty() { p.empty { "No wave has finished yet." } }
                    ol.timeline #gate-timeline {
                        @for b in &bakes {
                            li data-wave=(b.wave + 1) data-verdict=(b.verdict.map_or("baking", |v| v.as_str())) {
                                strong { "After wave " (b.wave + 1) ": " }
                                @match b.verdict {
                                    Some(v) => { (badge(v.as_str())) " " (b.evaluation.as_ref().and_then(|e| e["evaluation"]["summary"].as_str()).unwrap_or("")) @if b.accepted { " — accepted by the operator" } }
                                    None => { "baking since " (page::time(b.started_at)) }
                                }
                                @if let Some(signals) = b.evaluation.as_ref().and_then(|e| e["evaluation"]["signals"].as_array()) {
                                    table.list.signals {
                                        thead { tr { th { "Rule" } th.num { "Value" } th.num { "Bound" } th { "" } } }
                                        tbody {
                                            @for sig in signals {
                                                tr data-tripped=(sig["tripped"] == true) {
                                                    td { code { (sig["rule"].as_str().unwrap_or("")) } }
                                                    td.num { (sig["value"].as_f64().map_or("—".to_owned(), |v| format!("{v:.3}"))) }
                                                    td.num { (sig["bound"].as_f64().map_or("—".to_owned(), |v| format!("{v:.3}"))) }
                                                    td { @if sig["tripped"] == true { "tripped" } @else if let Some(n) = sig["note"].as_str() { span.muted { (n) } } @else { "ok" } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 #devices-heading { "Devices" }
                (table)
            }
        }
    };
    Ok(page::document(
        &format!("Campaign #{id}"),
        Some(Section::Campaigns),
        body,
    ))
}

fn can_pause(state: CampaignState) -> bool {
    matches!(state, CampaignState::Running | CampaignState::Scheduled)
}

/// The stacked progress bar: finished devices by outcome, then the ones under way.
fn progress(counts: &StateCounts, total: i64) -> Markup {
    let done = counts.sum(&DONE);
    let pct = |n: i64| {
        if total > 0 {
            n as f64 * 100.0 / total as f64
        } else {
            0.0
        }
    };
    use UpgradeState::*;
    let segments = [
        Succeeded,
        Failed,
        TimedOut,
        Canceled,
        Skipped,
        Burning,
        Downloading,
        Pushed,
        Pending,
    ];
    html! {
        div.progress #progress role="progressbar" aria-label="Finished devices" aria-valuemin="0" aria-valuemax="100" aria-valuenow=(format!("{:.0}", pct(done))) {
            @for st in segments {
                span class={ "seg c-" (st.as_str()) } data-seg=(st.as_str()) style={ "width:" (format!("{:.3}", pct(counts.get(st)))) "%" } title=(st.as_str()) {}
            }
        }
        p #progress-text { (done) " of " (total) " devices finished (" (format!("{:.0}", pct(done))) "%), " (counts.get(Succeeded)) " succeeded" }
    }
}

/// The per-device table of a campaign with its state filter and pager; the script swaps it for
/// a fresh copy from `/campaigns/{id}/rows` when the counts change.
async fn device_table(
    s: &ApiState,
    c: &Campaign,
    counts: &StateCounts,
    state: Option<UpgradeState>,
    offset: i64,
) -> Result<Markup, PageError> {
    let upgrades = s
        .engine
        .campaigns()
        .upgrades(c.id, state, ROWS, offset)
        .await?;
    let total = counts.total();
    let shown = state.map_or(total, |st| counts.get(st));
    let dialect = Some(s.store().await.product(&c.product).await?.dialect);
    let filter_href = |st: Option<&str>| match st {
        Some(st) => format!("/campaigns/{}?state={st}", c.id),
        None => format!("/campaigns/{}", c.id),
    };
    let current = state.map(|s| s.as_str());
    let waiting = s.engine.campaigns().waiting(c.id).await?;
    Ok(html! {
        div #device-table data-filter=(current.unwrap_or("")) data-offset=(offset) {
            @if let Some(why) = &waiting { p #campaign-waiting.reason { "Queued devices wait: " (why) } }
            nav.filters aria-label="Filter devices by state" {
                @if current.is_none() { a href=(filter_href(None)) aria-current="true" { "all (" (total) ")" } }
                @else { a href=(filter_href(None)) { "all (" (total) ")" } }
                @for st in UpgradeState::ALL {
                    @let n = counts.get(st);
                    @if n > 0 || current == Some(st.as_str()) {
                        @if current == Some(st.as_str()) {
                            a href=(filter_href(Some(st.as_str()))) aria-current="true" { (st.as_str().replace('_', " ")) " (" (n) ")" }
                        } @else {
                            a href=(filter_href(Some(st.as_str()))) { (st.as_str().replace('_', " ")) " (" (n) ")" }
                        }
                    }
                }
            }
            table.list #upgrades {
                thead { tr { th { "Device" } th { "From" } th { "State" } th.num { "%" } th { "Result" } th.num { "Wave" } th.num { "Attempts" } th { "Updated" } } }
                tbody {
                    @for u in &upgrades {
                        tr data-device=(u.device) data-state=(u.status.state.as_str()) {
                            td { a href={ "/products/" (u.product) "/devices/" (u.device) } { (u.device) } }
                            td { @if let Some(v) = &u.from_version { code { (v) } } @else { span.muted { "—" } } }
                            td { (badge(u.status.state.as_str())) }
                            td.num { @if let Some(p) = u.status.percent { (p) } }
                            td {
                                @if let Some(r) = u.status.reason { span.reason data-reason=(r.as_str()) { (page::reason(r)) } " " }
                                @if let Some(code) = u.status.result_code {
                                    code { (code) } " "
                                    @if let Some(d) = dialect { span.explain { (otter_protocol::explain(d, code)) } }
                                }
                                @if let Some(msg) = &u.status.result_msg { " " span.muted { (msg) } }
                                @if let (Some(otter_core::Reason::Retrying), Some(at)) = (u.status.reason, u.released_at) {
                                    " " span.retry { "retry not before " (page::time(otter_core::campaign::retry_not_before(at.as_ms()).into())) }
                                }
                            }
                            td.num { (u.wave + 1) }
                            td.num { (u.attempts) }
                            td { (when(u.updated_at)) }
                        }
                    }
                }
            }
            @if upgrades.is_empty() { p.empty { "No device in this state." } }
            (page::pager(shown, offset, ROWS, |o| {
                let base = filter_href(current);
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}offset={o}")
            }))
        }
    })
}

/// The device table alone, for the live refresh.
pub(super) async fn rows(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Query(q): Query<RowsQuery>,
) -> PageResult {
    let c = s.store().await.campaign(id).await?;
    let counts = s.store().await.campaign_counts(id).await?;
    let table = device_table(&s, &c, &counts, q.state()?, q.offset.unwrap_or(0).max(0)).await?;
    Ok(Html(table.into_string()))
}

fn selection_text(selection: &serde_json::Value) -> String {
    let list = |key: &str| {
        selection
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut parts = Vec::new();
    for (key, label) in [
        ("versions", "from versions"),
        ("tags", "tags"),
        ("devices", "devices"),
    ] {
        let items = list(key);
        match items.len() {
            0 => {}
            1..=10 => parts.push(format!("{label} {}", items.join(", "))),
            n => parts.push(format!(
                "{label} {}, … ({n} in all)",
                items[..10].join(", ")
            )),
        }
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

fn strategy_text(st: &Strategy) -> String {
    let mut parts = Vec::new();
    if let Some(at) = st.start_at_ms {
        parts.push(format!("starts {}", page::time(at.into())));
    }
    if let Some(w) = st.window {
        let sign = if w.utc_offset_minutes < 0 { '-' } else { '+' };
        let off = w.utc_offset_minutes.unsigned_abs();
        parts.push(format!(
            "window {:02}:{:02} for {} min at UTC{sign}{:02}:{:02}",
            w.start_minute / 60,
            w.start_minute % 60,
            w.duration_minutes,
            off / 60,
            off % 60
        ));
    }
    if let Some(r) = st.rate_per_minute {
        parts.push(format!("{r} devices/min"));
    }
    if !st.waves.is_empty() {
        let waves: Vec<String> = st.waves.iter().map(|w| format!("{w}%")).collect();
        parts.push(format!(
            "waves {} with a {}% gate",
            waves.join(", "),
            st.gate_percent
        ));
    }
    if let Some(t) = st.timeout_secs {
        parts.push(format!("timeout {t} s"));
    }
    if let Some(h) = &st.health {
        parts.push(format!("health gates, bake {} s", h.bake_secs));
    }
    if st.retries > 0 {
        parts.push(format!("{} retries", st.retries));
    }
    if let Some(a) = st.abort {
        parts.push(format!(
            "abort above {}% failed once {} finished",
            a.failure_percent, a.min_finished
        ));
    }
    if parts.is_empty() {
        "all at once, no timeout".into()
    } else {
        parts.join("; ")
    }
}
