//! A sequentially judged metric's second panel: the test's evidence against a healthy
//! canary (`ln E`, as each check recorded it) over time, against the boundary
//! `ln(1/α)` at which the test rejects and the release is rolled back; the check at
//! which it rejected marked.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{BOUNDARY, Chart, EVIDENCE, REJECTED, RenderError, Style, chart, err, escape, hex, legend, swatch, x};
use crate::analysis::sequential::Evidence;
use crate::report::checks::{Judged, MetricChecks};
use crate::report::{Report, clock};

/// The axis reaches this many boundaries at most: a rejection far past the boundary is
/// drawn at the top, its value in its tooltip, so the boundary stays readable.
const HEADROOM: f64 = 3.0;

/// Draws `m`'s test on `area`; returns the evidence's elements, in panel coordinates.
pub(super) fn draw(area: &super::Area<'_>, report: &Report, m: &MetricChecks) -> Result<String, RenderError> {
    let tested: Vec<(&Judged, Evidence)> = m.checks.iter().filter_map(|c| Some((c, c.evidence?))).collect();
    let y = y_range(&tested);
    let caption = format!("{}: sequential test, evidence against a healthy canary", m.name);
    let mut chart = chart(area, report, &caption, y.clone(), "ln E")?;
    super::metric::stops(&mut chart, report, &y)?;
    let boundary = stepped(report, &tested);
    let last = tested.last().map_or(0.0, |(_, e)| e.boundary);
    let label = boundary_label(last, report.confidence);
    let line = LineSeries::new(boundary, BOUNDARY.color.stroke_width(2));
    chart.draw_series(line).map_err(err)?.label(label).legend(swatch(&BOUNDARY));
    let mut entries = vec![&EVIDENCE];
    if tested.iter().any(|(_, e)| e.rejects()) {
        entries.push(&REJECTED);
    }
    for s in entries {
        let none = std::iter::empty::<PathElement<(f64, f64)>>();
        chart.draw_series(none).map_err(err)?.label(s.label).legend(swatch(s));
    }
    legend(&mut chart)?;
    Ok(points(&chart, report, m, &tested, &y))
}

/// "rejects at ln(1/α) = 5.30 (99 % confidence)": α is the confidence's share of this
/// metric, split across the metrics tested.
pub(super) fn boundary_label(boundary: f64, confidence: Option<f64>) -> String {
    let confidence = confidence.map(|c| format!(" ({c} % confidence)")).unwrap_or_default();
    format!("{} ln(1/α) = {boundary:.2}{confidence}", BOUNDARY.label)
}

/// From 0 (or the lowest evidence) to a little over the boundary and the highest
/// evidence, at most [`HEADROOM`] boundaries.
fn y_range(tested: &[(&Judged, Evidence)]) -> std::ops::Range<f64> {
    let boundary = tested.iter().map(|(_, e)| e.boundary).fold(0.0, f64::max);
    let high = tested.iter().map(|(_, e)| e.log_e).fold(boundary, f64::max).min(boundary * HEADROOM).max(1.0);
    let low = tested.iter().map(|(_, e)| e.log_e).fold(0.0, f64::min).max(-high);
    let pad = (high - low) * 0.1;
    (low - if low < 0.0 { pad } else { 0.0 })..(high + pad)
}

/// The boundary over the whole time axis, stepping where a check recorded another one
/// (the analysis' confidence or its metrics edited during the release).
fn stepped(report: &Report, tested: &[(&Judged, Evidence)]) -> Vec<(f64, f64)> {
    let r = super::x_range(report);
    let Some((_, first)) = tested.first() else { return Vec::new() };
    let mut line = vec![(r.start, first.boundary)];
    let mut held = first.boundary;
    for (c, e) in tested {
        if e.boundary != held {
            let at = x(report, c.at);
            line.extend([(at, held), (at, e.boundary)]);
            held = e.boundary;
        }
    }
    line.push((r.end, held));
    line
}

/// The evidence as SVG elements: a line through the checks, each check a marker with its
/// time, `ln E` and boundary as data attributes, the rejecting ones larger and red.
fn points(
    chart: &Chart<'_, '_>,
    report: &Report,
    m: &MetricChecks,
    tested: &[(&Judged, Evidence)],
    y: &std::ops::Range<f64>,
) -> String {
    let pixel = |c: &Judged, v: f64| chart.backend_coord(&(x(report, c.at), v.clamp(y.start, y.end)));
    let line: Vec<String> = tested
        .iter()
        .map(|(c, e)| {
            let (px, py) = pixel(c, e.log_e);
            format!("{px},{py}")
        })
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<polyline class=\"evidence-line\" data-metric=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" \
         points=\"{}\"/>",
        escape(&m.name),
        hex(EVIDENCE.color),
        line.join(" ")
    );
    for (c, e) in tested {
        let (px, py) = pixel(c, e.log_e);
        let (style, r): (&Style, u32) = if e.rejects() { (&REJECTED, 7) } else { (&EVIDENCE, 4) };
        let verdict = if e.rejects() {
            format!("≥ {:.2}: the test rejects", e.boundary)
        } else {
            format!("< {:.2}", e.boundary)
        };
        let share = c.rejected_share.map(|s| format!(", share counted {s:.1} %")).unwrap_or_default();
        let title = format!("{} {} ln E = {:.2} {verdict}{share}", clock(c.at), m.name, e.log_e);
        let colour = hex(style.color);
        let _ = write!(
            out,
            "<circle class=\"{}\" data-metric=\"{}\" data-at=\"{}\" data-value=\"{}\" data-boundary=\"{}\" \
             cx=\"{px}\" cy=\"{py}\" r=\"{r}\" fill=\"{colour}\" stroke=\"{colour}\" stroke-width=\"2\">\
             <title>{}</title></circle>",
            style.class,
            escape(&m.name),
            c.at,
            e.log_e,
            e.boundary,
            escape(&title)
        );
    }
    out
}
