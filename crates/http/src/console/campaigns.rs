//! Campaign pages: the list, the new-campaign form (its dry run and start are API calls made by
//! the script) and the detail page, whose counts, progress and device rows the script refreshes
//! live from the API's event stream (`GET /api/v1/campaigns/{id}/stream`).

use super::fleet::product_header;
use super::page::{self, PageError, PageResult, Section, badge, enc, when};
use crate::api::ApiState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::get;
use maud::{Markup, html};
use otter_core::campaign::{CampaignState, Strategy};
use otter_core::{ProductId, UpgradeState};
use otter_store::{Campaign, StateCounts};
use serde::Deserialize;

/// Device rows per page of a campaign's table.
const ROWS: i64 = 50;
/// Upgrade states that count as finished for the progress bar.
const DONE: [&str; 5] = ["succeeded", "failed", "timed_out", "canceled", "skipped"];

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/campaigns", get(list))
        .route("/campaigns/new", get(new))
        .route("/campaigns/{id}", get(detail))
        .route("/campaigns/{id}/rows", get(rows))
}

#[derive(Deserialize)]
pub struct ListQuery {
    product: Option<String>,
}

async fn list(State(s): State<ApiState>, Query(q): Query<ListQuery>) -> PageResult {
    let product = q
        .product
        .filter(|p| !p.is_empty())
        .map(ProductId::parse)
        .transpose()?;
    let campaigns = s.store().await.campaigns(product.as_ref()).await?;
    let body = html! {
        main {
            h1 { "Campaigns" @if let Some(p) = &product { " of " (p) } }
            p { a.button href={ "/campaigns/new" @if let Some(p) = &product { "?product=" (enc(p.as_str())) } } { "New campaign" } }
            (campaign_table(&s, &campaigns).await?)
        }
    };
    Ok(page::document("Campaigns", Some(Section::Campaigns), body))
}

/// A table of campaigns with their firmware and progress (one small query set per campaign).
pub async fn campaign_table(s: &ApiState, campaigns: &[Campaign]) -> Result<Markup, PageError> {
    let mut rows = Vec::with_capacity(campaigns.len());
    for c in campaigns {
        let firmware = s.store().await.firmware(c.firmware_id).await?;
        let counts = s.store().await.campaign_counts(c.id).await?;
        rows.push((c, firmware, counts));
    }
    Ok(html! {
        @if rows.is_empty() { p.empty { "No campaigns yet." } }
        @else {
            table.list.campaigns {
                thead { tr { th { "#" } th { "Product" } th { "Firmware" } th { "Kind" } th { "State" } th { "Progress" } th { "Created" } } }
                tbody {
                    @for (c, fw, counts) in &rows {
                        @let total: i64 = counts.0.values().sum();
                        @let ok = count(counts, "succeeded");
                        tr data-campaign=(c.id) {
                            td { a href={ "/campaigns/" (c.id) } { "#" (c.id) } }
                            td { a href={ "/products/" (c.product) } { (c.product) } }
                            td { code { (fw.version) } @if fw.module.as_str() != "default" { " " span.muted { (fw.module) } } }
                            td { (c.kind.as_str()) @if c.mode.as_str() == "requested" { br; small.muted { "device-requested" } } }
                            td { (badge(c.state.as_str())) }
                            td { (ok) " / " (total) " succeeded" }
                            td { (when(c.created_at)) }
                        }
                    }
                }
            }
        }
    })
}

fn count(counts: &StateCounts, state: &str) -> i64 {
    counts.0.get(state).copied().unwrap_or(0)
}

#[derive(Deserialize)]
pub struct NewQuery {
    product: Option<String>,
}

async fn new(State(s): State<ApiState>, Query(q): Query<NewQuery>) -> PageResult {
    let Some(product) = q.product.filter(|p| !p.is_empty()) else {
        let products = s.store().await.products().await?;
        let body = html! {
            main {
                h1 { "New campaign" }
                form method="get" action="/campaigns/new" {
                    label { "Product"
                        select name="product" required {
                            @for p in &products { option value=(p.id) { (p.id) " (" (p.dialect) ")" } }
                        }
                    }
                    button type="submit" { "Continue" }
                }
            }
        };
        return Ok(page::document(
            "New campaign",
            Some(Section::Campaigns),
            body,
        ));
    };
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let mut images = s.store().await.firmware_list(&product.id).await?;
    images.reverse();
    let versions = s
        .store()
        .await
        .version_counts(&product.id, &otter_core::Module::default())
        .await?;
    let body = html! {
        main {
            (product_header(&product, "New campaign"))
            @if images.is_empty() {
                p.empty { "Upload a firmware image first: " a href={ "/products/" (product.id) "/firmware" } { "Firmware" } "." }
            } @else {
            form #new-campaign data-product=(product.id) novalidate {
                fieldset {
                    legend { "Firmware" }
                    label { "Target image"
                        select name="version" required {
                            @for fw in &images {
                                option value=(fw.version) data-module=(fw.module) data-state=(fw.state.as_str()) {
                                    (fw.version) @if fw.module.as_str() != "default" { " (module " (fw.module) ")" } " — " (fw.state.as_str())
                                }
                            }
                        }
                    }
                    label.check { input type="checkbox" name="skip_verification"; " Skip verification (roll out an image not verified on test devices; recorded on the campaign)" }
                }
                fieldset {
                    legend { "Devices" }
                    p.muted { "Every constraint given must hold; give at least one. Devices already at the target are skipped." }
                    label { "Source versions " span.muted { "(comma-separated: every device at one of them)" }
                        input type="text" name="versions" list="known-versions" placeholder="1.0.0" autocomplete="off";
                    }
                    datalist #known-versions { @for (v, _) in &versions { @if let Some(v) = v { option value=(v) {} } } }
                    label { "Named devices " span.muted { "(comma or newline separated; with source versions, only those at them)" }
                        textarea name="devices" rows="2" {}
                    }
                    label { "Device file " span.muted { "(one name per line, or CSV with a name column; version ignored)" }
                        input type="file" name="device_file" accept=".txt,.csv,text/plain,text/csv";
                    }
                    label { "Tags " span.muted { "(comma-separated: devices carrying all of them)" }
                        input type="text" name="tags" autocomplete="off";
                    }
                    label.check { input type="checkbox" name="requested"; " Device-requested: nothing is pushed; devices get the offer when they ask for it" }
                    label.check { input type="checkbox" name="allow_downgrade"; " Allow downgrade (devices running a newer version)" }
                    label.check { input type="checkbox" name="supersede"; " Supersede: take devices out of their other live campaign" }
                }
                fieldset.strategy {
                    legend { "Strategy" }
                    div.grid {
                        label { "Start at " span.muted { "(your local time; empty = now)" } input type="datetime-local" name="start_at"; }
                        label { "Rate " span.muted { "(devices per minute)" } input type="number" name="rate" min="1" inputmode="numeric"; }
                        label { "Waves " span.muted { "(cumulative %, e.g. 10,50,100)" } input type="text" name="waves" placeholder="100" autocomplete="off"; }
                        label { "Gate " span.muted { "(% of earlier waves succeeded)" } input type="number" name="gate" min="0" max="100" value="100"; }
                        label { "Timeout " span.muted { "(seconds per device)" } input type="number" name="timeout" min="1"; }
                        label { "Retries " span.muted { "(0–10)" } input type="number" name="retries" min="0" max="10" value="0"; }
                        label { "Abort above " span.muted { "(% failed)" } input type="number" name="abort_percent" min="0" max="100"; }
                        label { "…once finished " span.muted { "(devices)" } input type="number" name="abort_min" min="0"; }
                        label { "Window opens " span.muted { "(HH:MM, devices' local time)" } input type="time" name="window_start"; }
                        label { "Window length " span.muted { "(minutes)" } input type="number" name="window_minutes" min="1" max="1440"; }
                        label { "Devices' UTC offset " span.muted { "(±HH:MM)" } input type="text" name="utc_offset" placeholder="+00:00" autocomplete="off"; }
                    }
                }
                div.actions {
                    button type="submit" name="preview" { "Preview (dry run)" }
                    button #start type="button" disabled aria-describedby="start-help" { "Start campaign" }
                    span #start-help.muted { "Preview first: starting is enabled when the preview matches the form." }
                }
                p.error role="alert" {}
                section #preview aria-live="polite" hidden {}
            }
            }
        }
    };
    Ok(page::document(
        "New campaign",
        Some(Section::Campaigns),
        body,
    ))
}

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

async fn detail(
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
    let total: i64 = counts.0.values().sum();
    let state = q.state()?;
    let table = device_table(&s, &c, &counts, state, q.offset.unwrap_or(0).max(0)).await?;
    let body = html! {
        main #campaign data-campaign=(c.id) data-state=(c.state.as_str()) {
            p.crumbs { a href="/campaigns" { "Campaigns" } " / #" (c.id) }
            h1 {
                "Campaign #" (c.id) " "
                span #campaign-state { (badge(c.state.as_str())) }
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
                        div class={ "c-" (st.as_str()) } { dt { (st.as_str().replace('_', " ")) } dd data-count=(st.as_str()) { (count(&counts, st.as_str())) } }
                    }
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
    let done: i64 = DONE.iter().map(|s| count(counts, s)).sum();
    let pct = |n: i64| {
        if total > 0 {
            n as f64 * 100.0 / total as f64
        } else {
            0.0
        }
    };
    let segments = [
        "succeeded",
        "failed",
        "timed_out",
        "canceled",
        "skipped",
        "burning",
        "downloading",
        "pushed",
        "pending",
    ];
    html! {
        div.progress #progress role="progressbar" aria-label="Finished devices" aria-valuemin="0" aria-valuemax="100" aria-valuenow=(format!("{:.0}", pct(done))) {
            @for st in segments {
                span class={ "seg c-" (st) } data-seg=(st) style={ "width:" (format!("{:.3}", pct(count(counts, st)))) "%" } title=(st) {}
            }
        }
        p #progress-text { (done) " of " (total) " devices finished (" (format!("{:.0}", pct(done))) "%), " (count(counts, "succeeded")) " succeeded" }
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
    let total: i64 = counts.0.values().sum();
    let shown = state.map_or(total, |st| count(counts, st.as_str()));
    let dialect = Some(s.store().await.product(&c.product).await?.dialect);
    let filter_href = |st: Option<&str>| match st {
        Some(st) => format!("/campaigns/{}?state={st}", c.id),
        None => format!("/campaigns/{}", c.id),
    };
    let current = state.map(|s| s.as_str());
    Ok(html! {
        div #device-table data-filter=(current.unwrap_or("")) data-offset=(offset) {
            nav.filters aria-label="Filter devices by state" {
                @if current.is_none() { a href=(filter_href(None)) aria-current="true" { "all (" (total) ")" } }
                @else { a href=(filter_href(None)) { "all (" (total) ")" } }
                @for st in UpgradeState::ALL {
                    @let n = count(counts, st.as_str());
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
async fn rows(
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
        parts.push(format!("starts {}", page::time(at)));
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
