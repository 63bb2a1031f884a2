//! Campaign pages: the list and the new-campaign form (its dry run and start are API calls made
//! by the script); the detail page is [`detail`].

mod detail;

use detail::{detail, rows};

use super::fleet::product_header;
use super::page::{self, PageError, PageResult, Section, enc, when};
use crate::api::ApiState;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use maud::{Markup, html};
use otter_core::{ProductId, UpgradeState};
use otter_store::Campaign;
use serde::Deserialize;

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
                        @let total = counts.total();
                        @let ok = counts.get(UpgradeState::Succeeded);
                        tr data-campaign=(c.id) {
                            td { a href={ "/campaigns/" (c.id) } { "#" (c.id) } }
                            td { a href={ "/products/" (c.product) } { (c.product) } }
                            td { code { (fw.version) } @if fw.module.as_str() != "default" { " " span.muted { (fw.module) } } }
                            td { (c.kind.as_str()) @if c.mode.as_str() == "requested" { br; small.muted { "device-requested" } } }
                            td { (page::campaign_badge(c.state, counts.get(UpgradeState::Failed) + counts.get(UpgradeState::TimedOut))) }
                            td { (ok) " / " (total) " succeeded" }
                            td { (when(c.created_at)) }
                        }
                    }
                }
            }
        }
    })
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
