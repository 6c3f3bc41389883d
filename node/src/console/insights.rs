//! The engineering view: how often agents need a person and how fast people answer,
//! as inline SVG bar charts with the numbers beside them. Aggregates only: the route it
//! reads carries no handoff content, lane or queue names.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::pages::Chrome;
use super::{Console, Viewer};

#[derive(Deserialize)]
struct Insights {
    lanes: usize,
    checkpoints: usize,
    handoffs: usize,
    hitl_rate: f64,
    decision_mix: BTreeMap<String, usize>,
    by_trigger_class: BTreeMap<String, TriggerStats>,
}

#[derive(Deserialize)]
struct TriggerStats {
    handoffs: usize,
    first_response_p50_ms: Option<i64>,
    first_response_p95_ms: Option<i64>,
    decision_p50_ms: Option<i64>,
    decision_p95_ms: Option<i64>,
}

/// One bar: its label, its length as a share of the chart's widest (0–100) and its
/// value in words.
pub struct Bar {
    pub label: String,
    pub width: f64,
    pub text: String,
    /// The bar's row in the chart (for its `y`).
    pub row: usize,
    /// Which series it belongs to (for its colour).
    pub series: &'static str,
}

/// Bars scaled to the largest value.
fn bars(values: Vec<(String, &'static str, f64, String)>) -> Vec<Bar> {
    let max = values.iter().map(|v| v.2).fold(0.0, f64::max);
    values
        .into_iter()
        .enumerate()
        .map(|(row, (label, series, value, text))| Bar {
            label,
            width: if max > 0.0 { (value / max * 100.0).max(0.5) } else { 0.0 },
            text,
            row,
            series,
        })
        .collect()
}

/// A latency as a person reads it.
fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[derive(Template)]
#[template(path = "console/insights.html")]
struct InsightsPage {
    chrome: Chrome,
    lanes: usize,
    checkpoints: usize,
    handoffs: usize,
    hitl_percent: String,
    mix: Vec<Bar>,
    latency: Vec<Bar>,
}

/// `GET /console/insights`.
pub async fn page(State(console): State<Console>, viewer: Viewer) -> Result<Response, Response> {
    let i = console.fetch::<Insights>(&viewer, "/v1/insights/handoffs").await?;
    let mix = bars(i.decision_mix.into_iter().map(|(k, n)| (k, "mix", n as f64, n.to_string())).collect());
    let mut latency = Vec::new();
    for (class, s) in i.by_trigger_class {
        let plural = if s.handoffs == 1 { "" } else { "s" };
        let label = |what: &str| format!("{class} ({} handoff{plural}): {what}", s.handoffs);
        for (what, series, ms) in [
            ("first response p50", "first", s.first_response_p50_ms),
            ("first response p95", "first95", s.first_response_p95_ms),
            ("decision p50", "decision", s.decision_p50_ms),
            ("decision p95", "decision95", s.decision_p95_ms),
        ] {
            latency.push((label(what), series, ms.unwrap_or(0) as f64, duration(ms)));
        }
    }
    let page = InsightsPage {
        chrome: Chrome::of(&viewer, "Insights", "/console/insights"),
        lanes: i.lanes,
        checkpoints: i.checkpoints,
        handoffs: i.handoffs,
        hitl_percent: format!("{:.1}%", i.hitl_rate * 100.0),
        mix,
        latency: bars(latency),
    };
    Ok(viewer.page(page.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_latencies_read_as_time() {
        let b = bars(vec![("a".into(), "mix", 2.0, "2".into()), ("b".into(), "mix", 8.0, "8".into())]);
        assert_eq!((b[0].width, b[1].width), (25.0, 100.0));
        assert!(bars(vec![("a".into(), "mix", 0.0, "0".into())])[0].width == 0.0, "nothing to scale: no bar");
        for (ms, want) in [(None, "—"), (Some(250), "250 ms"), (Some(2500), "2.5 s"), (Some(125_000), "2m 05s")] {
            assert_eq!(duration(ms), want);
        }
    }
}
