//! The version-distribution chart: an inline SVG of horizontal bars, drawn on the server (no
//! chart library, readable without script, and each bar links to the devices at that version).

use maud::{Markup, html};

/// Bars shown at most; the rest are summed into "other versions".
const MAX_BARS: usize = 12;
const ROW: usize = 28;
const LABEL_W: usize = 150;
const BAR_W: usize = 420;

/// One bar: label, count, and where clicking it leads.
pub struct Bar {
    pub label: String,
    pub count: i64,
    pub href: Option<String>,
}

pub fn bars(title: &str, mut bars: Vec<Bar>) -> Markup {
    if bars.len() > MAX_BARS {
        let rest: i64 = bars.drain(MAX_BARS - 1..).map(|b| b.count).sum();
        bars.push(Bar {
            label: "other versions".into(),
            count: rest,
            href: None,
        });
    }
    let total: i64 = bars.iter().map(|b| b.count).sum();
    let max = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let height = bars.len().max(1) * ROW + 8;
    let width = LABEL_W + BAR_W + 110;
    html! {
        figure.chart {
            figcaption { (title) }
            svg role="img" aria-label=(summary(title, &bars, total)) viewBox={ "0 0 " (width) " " (height) }
                width=(width) height=(height) xmlns="http://www.w3.org/2000/svg" {
                @if bars.is_empty() {
                    text x="0" y="20" class="muted" { "No devices yet." }
                }
                @for (i, bar) in bars.iter().enumerate() {
                    @let y = i * ROW + 4;
                    @let len = (bar.count as f64 / max as f64 * BAR_W as f64).round().max(1.0);
                    @let pct = if total > 0 { bar.count as f64 * 100.0 / total as f64 } else { 0.0 };
                    g.bar data-version=(bar.label) {
                        text x=(LABEL_W - 8) y=(y + 18) text-anchor="end" { (bar.label) }
                        @if let Some(href) = &bar.href {
                            a href=(href) {
                                rect x=(LABEL_W) y=(y + 3) width=(len) height=(ROW - 8) rx="3" {}
                            }
                        } @else {
                            rect x=(LABEL_W) y=(y + 3) width=(len) height=(ROW - 8) rx="3" {}
                        }
                        text.count x=(LABEL_W as f64 + len + 6.0) y=(y + 18) {
                            (bar.count) " (" (format!("{pct:.1}")) "%)"
                        }
                    }
                }
            }
        }
    }
}

/// What a screen reader says for the chart: every bar's label and count.
fn summary(title: &str, bars: &[Bar], total: i64) -> String {
    let parts: Vec<String> = bars
        .iter()
        .map(|b| format!("{}: {}", b.label, b.count))
        .collect();
    format!("{title}, {total} devices: {}", parts.join(", "))
}
