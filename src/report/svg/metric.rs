//! One metric's panel: the values its checks judged at the times they were judged, the
//! failed ones marked, its bounds from the analysis, the stable's value at each check
//! (built-in metrics), and the Events that stopped the release as thin rules.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{
    CANARY, Chart, FAILED, MARKERS, MAX, MIN, RenderError, STABLE, Style, WAITING, chart, err, escape, hex, legend,
    swatch, x, x_range,
};
use crate::api::canary::CheckResult;
use crate::api::duration::Display;
use crate::report::checks::{Judged, Kind, MetricChecks};
use crate::report::{Report, clock};

/// Draws `m`'s panel on `area`; returns the checks' elements, in panel coordinates.
pub(super) fn draw(area: &super::Area<'_>, report: &Report, m: &MetricChecks) -> Result<String, RenderError> {
    let y = y_range(m);
    let (what, unit) = match m.kind {
        Kind::SuccessRate => ("% of answers not 5xx", "%"),
        Kind::Duration => ("P99 in ms", "ms"),
        Kind::Query => ("as its query returned it", "value"),
        Kind::Other => ("checked, not in the analysis now", "value"),
    };
    let window = m.interval.map(|i| format!(", {} window", Display(i))).unwrap_or_default();
    let caption = format!("{}: {what}{window}", m.name);
    let mut chart = chart(area, report, &caption, y.clone(), unit)?;
    stops(&mut chart, report, &y)?;
    let r = x_range(report);
    for (bound, s) in [(m.min, &MIN), (m.max, &MAX)] {
        if let Some(v) = bound {
            let line = LineSeries::new(vec![(r.start, v), (r.end, v)], s.color.stroke_width(1));
            chart.draw_series(line).map_err(err)?.label(format!("{} {v}", s.label)).legend(swatch(s));
        }
    }
    // Legend entries for what is drawn below, outside plotters.
    let checked = m.checks.iter().any(|c| c.value.is_some());
    let canary = if checked { CANARY.label.to_owned() } else { format!("{} (no value recorded)", CANARY.label) };
    let mut entries = vec![(canary, &CANARY)];
    let mut shown = |s: &'static Style, any: bool| {
        if any {
            entries.push((s.label.to_owned(), s));
        }
    };
    shown(&FAILED, m.checks.iter().any(|c| c.result == CheckResult::Failed));
    shown(&WAITING, m.checks.iter().any(|c| c.result == CheckResult::Waiting));
    shown(&STABLE, m.checks.iter().any(|c| c.stable.is_some()));
    for (label, s) in entries {
        let none = std::iter::empty::<PathElement<(f64, f64)>>();
        chart.draw_series(none).map_err(err)?.label(label).legend(swatch(s));
    }
    legend(&mut chart)?;
    Ok(points(&chart, report, m, &y))
}

/// The Events that stop a release, as thin rules through the panel.
pub(super) fn stops(chart: &mut Chart<'_, '_>, report: &Report, y: &std::ops::Range<f64>) -> Result<(), RenderError> {
    for (name, s) in MARKERS.iter().filter(|(n, _)| *n != "Advance") {
        let at = report.events.iter().filter(|o| o.kind.marker() == Some(name)).map(|o| x(report, o.at));
        let rules = at.map(|x| PathElement::new(vec![(x, y.start), (x, y.end)], s.color.mix(0.5).stroke_width(1)));
        chart.draw_series(rules).map_err(err)?;
    }
    Ok(())
}

/// The y axis: a success rate up to 100 and down to a little under its lowest value or
/// bound; anything else from 0 (or its lowest value) to a little over its highest.
fn y_range(m: &MetricChecks) -> std::ops::Range<f64> {
    let values: Vec<f64> = m
        .checks
        .iter()
        .flat_map(|c| [c.value, c.stable])
        .flatten()
        .chain([m.min, m.max].into_iter().flatten())
        .filter(|v| v.is_finite())
        .collect();
    if m.kind == Kind::SuccessRate {
        let low = values.iter().copied().fold(100.0, f64::min);
        return (low - (100.0 - low) * 0.1 - 0.5).clamp(0.0, 99.0).floor()..100.5;
    }
    let high = values.iter().copied().fold(1.0, f64::max);
    let low = values.iter().copied().fold(0.0, f64::min);
    (low * 1.15)..(high * 1.15)
}

/// The checks as SVG elements: the canary's values joined by a line, each check a marker
/// with its time, value and verdict (a failed one red, one without a value on the axis),
/// and the stable's values on top.
fn points(chart: &Chart<'_, '_>, report: &Report, m: &MetricChecks, y: &std::ops::Range<f64>) -> String {
    // +Inf (a P99 in the last bucket) at the top; no value on the axis.
    let at_y = |v: f64| if v.is_finite() { v.clamp(y.start, y.end) } else { y.end };
    let pixel = |c: &Judged, v: Option<f64>| chart.backend_coord(&(x(report, c.at), v.map_or(y.start, at_y)));
    let mut out = String::new();
    let line: Vec<String> = m
        .checks
        .iter()
        .filter(|c| c.value.is_some())
        .map(|c| {
            let (px, py) = pixel(c, c.value);
            format!("{px},{py}")
        })
        .collect();
    let stroke = hex(CANARY.color);
    let _ = write!(
        out,
        "<polyline class=\"{}\" data-metric=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\" \
         points=\"{}\"/>",
        CANARY.class,
        escape(&m.name),
        line.join(" ")
    );
    for c in &m.checks {
        let (px, py) = pixel(c, c.value);
        let (style, result) = match c.result {
            CheckResult::Passed => (&CANARY, "passed"),
            CheckResult::Failed => (&FAILED, "failed"),
            CheckResult::Waiting => (&WAITING, "waiting"),
        };
        let value = match (c.value, c.rejected_share) {
            (Some(v), _) => m.shown(v),
            (None, Some(_)) => "rejected by the sequential test".to_owned(),
            (None, None) => "no value".to_owned(),
        };
        let why = c.message.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        let title = format!("{} {} {value}, {result}{why}", clock(c.at), m.name);
        let data = c.value.map(|v| format!(" data-value=\"{v}\"")).unwrap_or_default();
        let colour = hex(style.color);
        let (r, fill) = match (c.value, c.result) {
            (None, _) => (5, "none"),
            (_, CheckResult::Failed) => (6, colour.as_str()),
            _ => (4, colour.as_str()),
        };
        let _ = write!(
            out,
            "<circle class=\"check {result}\" data-metric=\"{}\" data-at=\"{}\"{data} cx=\"{px}\" cy=\"{py}\" \
             r=\"{r}\" fill=\"{fill}\" stroke=\"{colour}\" stroke-width=\"2\"><title>{}</title></circle>",
            escape(&m.name),
            c.at,
            escape(&title)
        );
    }
    // The stable's over the canary's, which it often equals: both stay visible.
    for c in &m.checks {
        let (px, py) = pixel(c, c.stable);
        if let Some(s) = c.stable {
            let title = format!("{} stable {} over the same window", clock(c.at), m.shown(s));
            let _ = write!(
                out,
                "<rect class=\"{}\" data-metric=\"{}\" data-at=\"{}\" data-value=\"{s}\" x=\"{}\" y=\"{}\" \
                 width=\"5\" height=\"5\" fill=\"{}\"><title>{}</title></rect>",
                STABLE.class,
                escape(&m.name),
                c.at,
                px - 2,
                py - 2,
                hex(STABLE.color),
                escape(&title)
            );
        }
    }
    out
}
