//! `apisix-canary report`: a picture of a Canary's last (or current) release, drawn from
//! what its analysis judged.
//!
//! ```text
//!  status.checks + the analysis (Plan) ──checks──▶ one series per metric, its bounds ─┐
//!  Canary + its Events ──timeline──▶ window, weight steps, markers ───────────────────┤
//!  EndpointSlices + Prometheus (nodes seen) ──nodes──▶ this release's canary/stable ──┼─▶ Report ─▶ svg / html
//!  Prometheus at each check's time (stable's nodes, the check's PromQL and window) ───┘
//! ```
//!
//! With `judge: sequential`, each check of a built-in metric also recorded the test's
//! evidence (ln E) and its boundary: that metric gets a second panel, the evidence over
//! time against the boundary at which the release is rolled back.
//!
//! The values charted are the checks' own (`status.checks`: the values the Events and
//! the verdicts used, at the times they were judged), never a second query with another
//! window. [`gather`] is the only part that talks to the cluster and Prometheus; the rest
//! turns a [`Report`] into a chart ([`svg::render`]) or a page ([`html::render`]).

pub mod checks;
pub mod gather;
pub mod html;
pub mod nodes;
#[cfg(test)]
mod sample;
pub mod svg;
pub mod timeline;

use k8s_openapi::jiff::Timestamp;

use self::checks::MetricChecks;
pub use self::gather::{Release, ReportError, gather};
use self::nodes::Nodes;
use self::timeline::{Occurrence, Window};

/// Everything the chart and the page show.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub namespace: String,
    pub name: String,
    /// The Canary's phase now (`Succeeded`, `Progressing`, ...).
    pub phase: String,
    pub window: Window,
    /// The Events said within the window, oldest first.
    pub events: Vec<Occurrence>,
    pub weights: Vec<(Timestamp, u32)>,
    /// Every metric of the analysis with its checks, in the analysis' order.
    pub metrics: Vec<MetricChecks>,
    pub nodes: Nodes,
    /// The Prometheus the nodes and the stable's values were read from.
    pub prometheus: String,
    /// The status held as many checks as it keeps: older ones of this release are gone.
    pub truncated: bool,
    /// `judge: sequential`'s confidence, in percent, when the analysis has it now.
    pub confidence: Option<f64>,
    /// How the release shares the traffic: `weighted`, `A/B (...)`, `sticky (...)`.
    pub mode: String,
}

impl Report {
    /// The chart's time axis: the window, padded, and every check within it.
    pub fn view(&self) -> (Timestamp, Timestamp) {
        let (from, to) = self.window.padded();
        let checked = self.metrics.iter().flat_map(|m| &m.checks).map(|c| c.at);
        checked.fold((from, to), |(from, to), at| (from.min(at), to.max(at)))
    }
}

/// `12:04:05`, UTC: the time axis and the tables.
pub fn clock(at: Timestamp) -> String {
    at.strftime("%H:%M:%S").to_string()
}
