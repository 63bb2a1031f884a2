//! The page frame (head, navigation, footer) and the small formatting helpers every page uses.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use otter_core::Timestamp;
use otter_core::campaign::{CampaignState, Outcome};
use otter_store::StoreError;

/// Top-level sections, for the navigation's current-page mark.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Products,
    Campaigns,
    Audit,
}

/// A whole HTML document; `section` None means no navigation (the sign-in page).
pub fn document(title: &str, section: Option<Section>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Otter" }
                link rel="stylesheet" href="/console/app.css";
                script src="/console/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                @if let Some(section) = section {
                    header.top {
                        a.brand href="/products" { "Otter" }
                        nav aria-label="Main" {
                            (nav_link("/products", "Products", section == Section::Products))
                            (nav_link("/campaigns", "Campaigns", section == Section::Campaigns))
                            (nav_link("/audit", "Audit log", section == Section::Audit))
                        }
                        form.signout method="post" action="/logout" {
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                div #main tabindex="-1" { (body) }
            }
        }
    };
    Html(markup.into_string())
}

fn nav_link(href: &str, label: &str, current: bool) -> Markup {
    html! {
        @if current { a href=(href) aria-current="page" { (label) } }
        @else { a href=(href) { (label) } }
    }
}

/// The sub-navigation of a product's pages.
pub fn product_nav(product: &str, current: &str) -> Markup {
    let links = [
        ("", "Overview"),
        ("/devices", "Devices"),
        ("/firmware", "Firmware"),
        ("/campaigns/new", "New campaign"),
    ];
    html! {
        nav.sub aria-label="Product" {
            @for (path, label) in links {
                @let href = if path == "/campaigns/new" {
                    format!("/campaigns/new?product={product}")
                } else {
                    format!("/products/{product}{path}")
                };
                (nav_link(&href, label, label == current))
            }
        }
    }
}

/// A page that could not be shown, as an HTML page with the reason.
#[derive(Debug)]
pub struct PageError(pub StatusCode, pub String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(error = %self.1, "console page failed");
        }
        let body = html! {
            main {
                h1 { (self.0.as_u16()) " " (self.0.canonical_reason().unwrap_or("")) }
                p.error role="alert" { (self.1) }
                p { a href="/products" { "Back to the products" } }
            }
        };
        (self.0, document("Error", Some(Section::Products), body)).into_response()
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self(StatusCode::NOT_FOUND, format!("{what} not found")),
            other => Self(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl From<otter_core::InvalidName> for PageError {
    fn from(e: otter_core::InvalidName) -> Self {
        Self(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<crate::api::ApiError> for PageError {
    fn from(e: crate::api::ApiError) -> Self {
        use crate::api::ApiError as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::BadRequest(_) => StatusCode::BAD_REQUEST,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Unauthorized => StatusCode::UNAUTHORIZED,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::Internal(_) | E::Storage => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

pub type PageResult = Result<Html<String>, PageError>;

/// `2026-11-24 22:24:03 UTC`.
pub fn time(t: Timestamp) -> String {
    let ms = t.as_ms();
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// A `<time>` element: absolute time, with "3 min ago" when it is recent.
pub fn when(t: Timestamp) -> Markup {
    let age = Timestamp::from(otter_store::now_ms()).ms_since(t) / 1000;
    let ago = match age {
        i64::MIN..0 => None,
        0..60 => Some(format!("{age} s ago")),
        60..3600 => Some(format!("{} min ago", age / 60)),
        3600..86_400 => Some(format!("{} h ago", age / 3600)),
        _ => None,
    };
    html! {
        time datetime=(time(t)) title=(time(t)) {
            @if let Some(ago) = ago { (ago) } @else { (time(t)) }
        }
    }
}

/// `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit.min(UNITS.len() - 1)])
}

/// A state word as a colored badge (CSS classes per state name).
/// Why an upgrade is where it is, in words.
pub fn reason(reason: otter_core::Reason) -> &'static str {
    reason.describe()
}

pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state) } { (state.replace('_', " ")) } }
}

/// A campaign's badge: its state while live, how it ended once over (a campaign that finished
/// with failed devices does not get the clean green "finished").
pub fn campaign_badge(state: CampaignState, failed: i64) -> Markup {
    match Outcome::of(state, failed) {
        Some(Outcome::FinishedWithFailures) => badge(Outcome::FinishedWithFailures.as_str()),
        _ => badge(state.as_str()),
    }
}

/// "Previous / Next" links of a paged list; `href(offset)` builds a page's link.
pub fn pager(total: i64, offset: i64, limit: i64, href: impl Fn(i64) -> String) -> Markup {
    let first = if total == 0 { 0 } else { offset + 1 };
    let last = (offset + limit).min(total);
    html! {
        nav.pager aria-label="Pages" {
            span.count { (first) "–" (last) " of " (total) }
            @if offset > 0 {
                a rel="prev" href=(href((offset - limit).max(0))) { "← Previous" }
            }
            @if last < total {
                a rel="next" href=(href(offset + limit)) { "Next →" }
            }
        }
    }
}

/// Query-string encoding of one value.
pub fn enc(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
