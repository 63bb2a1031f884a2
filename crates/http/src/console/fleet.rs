//! Products, their version distribution, the device list (search, filters, server-side pages)
//! and a device's detail with its upgrade history.

use super::chart::{self, Bar};
use super::page::{self, PageResult, Section, badge, enc, when};
use crate::api::ApiState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use maud::{Markup, html};
use otter_core::{DeviceName, Module, ProductId};
use otter_store::{Campaign, DeviceFilter, Product};
use serde::Deserialize;

/// Devices per page of the device list.
pub const PAGE: i64 = 50;
/// The version filter's value for "never reported a version" (`#` is not a version character).
const NO_VERSION: &str = "#none";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/products", get(products))
        .route("/products/{product}", get(overview))
        .route("/products/{product}/devices", get(devices))
        .route("/products/{product}/devices/{device}", get(device))
}

async fn products(State(s): State<ApiState>) -> PageResult {
    let products = s.store().await.product_summaries().await?;
    let body = html! {
        main {
            h1 { "Products" }
            @if products.is_empty() {
                p.empty { "No products yet. Create one with " code { "otter product create --id P --dialect aliyun" } "." }
            } @else {
                table.list {
                    thead { tr { th { "Product" } th { "Dialect" } th.num { "Devices" } th.num { "Online" } th.num { "Firmware" } th.num { "Live campaigns" } th { "" } } }
                    tbody {
                        @for p in &products {
                            tr data-product=(p.product.id) {
                                td { a href={ "/products/" (p.product.id) } { (p.product.id) } @if p.product.name != p.product.id.as_str() { br; small.muted { (p.product.name) } } }
                                td { (p.product.dialect) }
                                td.num { (p.devices) }
                                td.num { (p.online) }
                                td.num { (p.firmware) }
                                td.num { (p.live_campaigns) }
                                td { a href={ "/products/" (p.product.id) "/devices" } { "Devices" } " · " a href={ "/products/" (p.product.id) "/firmware" } { "Firmware" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::document("Products", Some(Section::Products), body))
}

/// The product's header: id, dialect and the product sub-navigation.
pub fn product_header(product: &Product, current: &str) -> Markup {
    html! {
        p.crumbs { a href="/products" { "Products" } " / " (product.id) }
        h1 { (product.id) " " span.muted.small { (product.dialect) } }
        (page::product_nav(product.id.as_str(), current))
    }
}

async fn overview(State(s): State<ApiState>, Path(product): Path<String>) -> PageResult {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let mut counts = s
        .store()
        .await
        .version_counts(&product.id, &Module::default())
        .await?;
    counts.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => otter_core::version::compare_versions(b.as_str(), a.as_str()),
        (a, b) => b.is_some().cmp(&a.is_some()),
    });
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let bars = counts
        .iter()
        .map(|(version, count)| Bar {
            label: version
                .as_ref()
                .map_or_else(|| "never reported".to_owned(), |v| v.to_string()),
            count: *count,
            href: Some(format!(
                "/products/{}/devices?version={}",
                product.id,
                enc(version.as_ref().map_or(NO_VERSION, |v| v.as_str()))
            )),
        })
        .collect();
    let summary = s
        .store()
        .await
        .product_summaries()
        .await?
        .into_iter()
        .find(|p| p.product.id == product.id);
    let campaigns: Vec<Campaign> = s
        .store()
        .await
        .campaigns(Some(&product.id))
        .await?
        .into_iter()
        .take(10)
        .collect();
    // Devices of this dialect pushed a link with a port their SDK cannot dial never download.
    let link_problem = s.public_url.port_problem([product.dialect]);
    let body = html! {
        main {
            (product_header(&product, "Overview"))
            @if let Some(problem) = &link_problem {
                p.warning #link-port role="note" { "Devices of this product cannot download: " (problem) "." }
            }
            @if let Some(p) = &summary {
                dl.stats {
                    div { dt { "Devices" } dd #device-total { (p.devices) } }
                    div { dt { "Online" } dd { (p.online) } }
                    div { dt { "Firmware images" } dd { (p.firmware) } }
                    div { dt { "Live campaigns" } dd { (p.live_campaigns) } }
                }
            }
            section {
                h2 { "Version distribution" }
                p.muted { "Devices by the version they last reported (default module). Select a bar to list those devices." }
                (chart::bars(&format!("Versions of {}", product.id), bars))
                @if total == 0 { p.empty { "No devices registered yet." } }
            }
            section {
                h2 { "Recent campaigns" }
                (super::campaigns::campaign_table(&s, &campaigns).await?)
            }
        }
    };
    Ok(page::document(
        product.id.as_str(),
        Some(Section::Products),
        body,
    ))
}

#[derive(Deserialize, Default)]
pub struct DeviceQuery {
    q: Option<String>,
    version: Option<String>,
    online: Option<String>,
    tag: Option<String>,
    offset: Option<i64>,
}

impl DeviceQuery {
    fn filter(&self) -> DeviceFilter {
        let some = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        DeviceFilter {
            search: some(&self.q),
            version: some(&self.version).map(|v| (v != NO_VERSION).then_some(v)),
            online: match self.online.as_deref() {
                Some("yes") => Some(true),
                Some("no") => Some(false),
                _ => None,
            },
            tag: some(&self.tag),
        }
    }

    /// This list's link at another offset, filters kept.
    fn href(&self, product: &ProductId, offset: i64) -> String {
        let mut out = format!("/products/{product}/devices?offset={offset}");
        for (key, value) in [
            ("q", &self.q),
            ("version", &self.version),
            ("online", &self.online),
            ("tag", &self.tag),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                out.push_str(&format!("&{key}={}", enc(v)));
            }
        }
        out
    }
}

async fn devices(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Query(q): Query<DeviceQuery>,
) -> PageResult {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let module = Module::default();
    let offset = q.offset.unwrap_or(0).max(0);
    let (total, rows) = s
        .store()
        .await
        .device_page(&product.id, &module, &q.filter(), PAGE, offset)
        .await?;
    let versions = s.store().await.version_counts(&product.id, &module).await?;
    let selected = |v: &str| q.version.as_deref() == Some(v);
    let body = html! {
        main {
            (product_header(&product, "Devices"))
            form.filters method="get" role="search" aria-label="Filter devices" {
                label { "Name contains" input type="search" name="q" value=[q.q.as_deref()]; }
                label { "Version"
                    select name="version" {
                        option value="" { "any" }
                        @for (v, n) in &versions {
                            @let value = v.as_ref().map_or(NO_VERSION, |v| v.as_str());
                            option value=(value) selected[selected(value)] {
                                (v.as_ref().map_or("never reported", |v| v.as_str())) " (" (n) ")"
                            }
                        }
                    }
                }
                label { "Online"
                    select name="online" {
                        option value="" { "any" }
                        option value="yes" selected[q.online.as_deref() == Some("yes")] { "online" }
                        option value="no" selected[q.online.as_deref() == Some("no")] { "offline" }
                    }
                }
                label { "Tag" input type="text" name="tag" value=[q.tag.as_deref()] placeholder="e.g. region=eu"; }
                button type="submit" { "Filter" }
                a.button.secondary href={ "/products/" (product.id) "/devices" } { "Clear" }
            }
            p #device-count.count { strong { (total) } " devices match" }
            table.list #devices {
                thead { tr { th { "Device" } th { "Version" } th { "Online" } th { "Last seen" } th { "Tags" } } }
                tbody {
                    @for d in &rows {
                        tr {
                            td { a href={ "/products/" (product.id) "/devices/" (d.name) } { (d.name) } }
                            td { @if let Some(v) = &d.version { code { (v) } } @else { span.muted { "—" } } }
                            td { (online(d.online)) }
                            td { @if let Some(t) = d.last_seen { (when(t)) } @else { span.muted { "never" } } }
                            td { @for t in &d.tags { span.tag { (t) } " " } }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.empty { "No device matches these filters." } }
            (page::pager(total, offset, PAGE, |o| q.href(&product.id, o)))
        }
    };
    Ok(page::document(
        &format!("Devices of {}", product.id),
        Some(Section::Products),
        body,
    ))
}

fn online(on: bool) -> Markup {
    html! {
        @if on { span.dot.on aria-hidden="true" {} " online" }
        @else { span.dot aria-hidden="true" {} " offline" }
    }
}

async fn device(
    State(s): State<ApiState>,
    Path((product, device)): Path<(String, String)>,
) -> PageResult {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let name = DeviceName::parse(device)?;
    let device = s.store().await.device(&product.id, &name).await?;
    let versions = s.store().await.versions(&product.id, &name).await?;
    let tags = s.store().await.tags(&product.id, &name).await?;
    let history = s
        .store()
        .await
        .device_events(&product.id, &name, 200)
        .await?;
    let current = s.store().await.latest_upgrade(&product.id, &name).await?;
    let dialect = Some(product.dialect);
    let explain = |code: Option<i32>| {
        code.zip(dialect)
            .map(|(c, d)| otter_protocol::explain(d, c))
    };
    let body = html! {
        main {
            p.crumbs { a href="/products" { "Products" } " / " a href={ "/products/" (product.id) } { (product.id) } " / " a href={ "/products/" (product.id) "/devices" } { "Devices" } " / " (name) }
            h1 { (name) }
            dl.stats {
                div { dt { "Status" } dd #online { (online(device.online)) } }
                div { dt { "Last seen" } dd { @if let Some(t) = device.last_seen { (when(t)) } @else { "never" } } }
                div { dt { "Registered" } dd { (page::time(device.created_at)) } }
                div { dt { "Dialect" } dd { (product.dialect) } }
            }
            section {
                h2 { "Versions" }
                @if versions.is_empty() { p.empty { "This device has not reported a version yet." } }
                @else {
                    table.list #versions {
                        thead { tr { th { "Module" } th { "Version" } th { "Reported" } } }
                        tbody { @for v in &versions { tr { td { (v.module) } td { code { (v.version) } } td { (when(v.reported_at)) } } } }
                    }
                }
                p { "Tags: " @if tags.is_empty() { span.muted { "none" } } @for t in &tags { span.tag { (t) } " " } }
            }
            @if let Some(u) = &current {
                section {
                    h2 { "Latest upgrade" }
                    p {
                        "To " code { (u.status.target) } " in "
                        a href={ "/campaigns/" (u.campaign_id) } { "campaign #" (u.campaign_id) } ": "
                        (badge(u.status.state.as_str()))
                        @if let Some(p) = u.status.percent { " " (p) "%" }
                        @if let Some(code) = u.status.result_code { " code " code { (code) } }
                        @if let Some(why) = explain(u.status.result_code) { " — " (why) }
                    }
                }
            }
            section {
                h2 { "Upgrade history" }
                @if history.is_empty() { p.empty { "No upgrades yet." } }
                @else {
                    table.list #history {
                        thead { tr { th { "When" } th { "Campaign" } th { "State" } th.num { "%" } th { "Result" } } }
                        tbody {
                            @for e in &history {
                                tr {
                                    td.when { (page::time(e.at)) }
                                    td { a href={ "/campaigns/" (e.campaign_id) } { "#" (e.campaign_id) } }
                                    td { (badge(e.state.as_str())) }
                                    td.num { @if let Some(p) = e.percent { (p) } }
                                    td {
                                        @if let Some(code) = e.result_code {
                                            code { (code) } " " span.explain { (explain(Some(code)).unwrap_or("")) }
                                        }
                                        @if let Some(msg) = &e.result_msg { " " span.muted { "(" (msg) ")" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::document(name.as_str(), Some(Section::Products), body))
}
