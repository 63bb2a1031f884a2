//! The audit log page: operator actions, newest first, paged, filterable by kind of action.

use super::page::{self, PageResult, Section, enc};
use crate::api::ApiState;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use maud::html;
use serde::Deserialize;

const PAGE: i64 = 50;
/// Filter choices: action prefixes.
const KINDS: [(&str, &str); 5] = [
    ("", "all actions"),
    ("campaign.", "campaigns"),
    ("firmware.", "firmware"),
    ("device.", "devices"),
    ("product.", "products"),
];

pub fn routes() -> Router<ApiState> {
    Router::new().route("/audit", get(audit))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    offset: Option<i64>,
}

async fn audit(State(s): State<ApiState>, Query(q): Query<AuditQuery>) -> PageResult {
    let prefix = q.action.as_deref().filter(|a| !a.is_empty());
    let offset = q.offset.unwrap_or(0).max(0);
    let total = s.store().await.audit_count(prefix).await?;
    let entries = s.store().await.audit_log(prefix, PAGE, offset).await?;
    let body = html! {
        main {
            h1 { "Audit log" }
            p.muted { "What operators did through the admin API, the CLI and this console." }
            form.filters method="get" {
                label { "Show"
                    select name="action" {
                        @for (value, label) in KINDS {
                            option value=(value) selected[prefix.unwrap_or("") == value] { (label) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            table.list #audit {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Subject" } th { "Details" } } }
                tbody {
                    @for e in &entries {
                        tr data-action=(e.action) {
                            td.when { (page::time(e.at)) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td { (e.subject) }
                            td.detail { @if e.detail != serde_json::json!({}) { code { (e.detail.to_string()) } } }
                        }
                    }
                }
            }
            @if entries.is_empty() { p.empty { "Nothing recorded yet." } }
            (page::pager(total, offset, PAGE, |o| format!("/audit?action={}&offset={o}", enc(prefix.unwrap_or("")))))
        }
    };
    Ok(page::document("Audit log", Some(Section::Audit), body))
}
