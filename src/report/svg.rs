//! The chart: panels on one time axis, the canary weight with the Events' markers, then
//! one panel per metric of the analysis with the values its checks judged, drawn with
//! plotters' SVG backend.
//!
//! A metric the sequential test judged (`judge: sequential`) gets a second panel under
//! its own: the test's evidence at each check against the boundary it rejects at.
//!
//! Each panel is drawn on its own and placed in the chart as a group
//! (`<g class="panel" data-metric="...">`). Plotters draws the axes, the bounds and the
//! weight line; every element it draws in a series' colour gets the series' `class`
//! (`canary-weight`, `threshold-min`, `marker-halt`, ...). The checks are drawn here, one
//! element each, with their class (`check passed`, `check failed`, `stable-check`), time
//! and value as data attributes and a tooltip, so the page can style them and a test can
//! read every point back.

mod metric;
mod sequential;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::html::escape;
use super::timeline::Kind;
use super::{Report, clock};

const WIDTH: u32 = 1200;
const TITLE_HEIGHT: u32 = 40;
const WEIGHT_HEIGHT: u32 = 230;
const METRIC_HEIGHT: u32 = 240;
const SEQUENTIAL_HEIGHT: u32 = 220;
/// Room on the right for half the last time label, which is centred on its tick.
const MARGIN_RIGHT: u32 = 48;
const MARGIN: u32 = 12;
const Y_LABELS: u32 = 60;
const X_LABELS: u32 = 28;
const FONT: &str = "sans-serif";

/// A series: its legend text, its class in the SVG, its colour (unique in the chart).
struct Style {
    label: &'static str,
    class: &'static str,
    color: RGBColor,
}

const WEIGHT: Style = Style { label: "canary weight %", class: "canary-weight", color: RGBColor(0x6A, 0x3D, 0x9A) };
const MIN: Style = Style { label: "min", class: "threshold-min", color: RGBColor(0xB0, 0x00, 0x20) };
const MAX: Style = Style { label: "max", class: "threshold-max", color: RGBColor(0xB0, 0x00, 0x21) };
const MARKERS: [(&str, Style); 4] = [
    ("Advance", Style { label: "Advance", class: "marker-advance", color: RGBColor(0x2C, 0xA0, 0x2C) }),
    ("Halt", Style { label: "Halt", class: "marker-halt", color: RGBColor(0xFF, 0x7F, 0x0E) }),
    ("Gate", Style { label: "Gate (waiting for approval)", class: "marker-gate", color: RGBColor(0x17, 0xBE, 0xCF) }),
    ("Rollback", Style { label: "Rolling back", class: "marker-rollback", color: RGBColor(0xD6, 0x27, 0x28) }),
];
/// Drawn here, not by plotters: their elements carry their classes themselves.
const CANARY: Style = Style { label: "canary, as checked", class: "canary-checks", color: RGBColor(0xE6, 0x55, 0x0D) };
const FAILED: Style = Style { label: "failed check", class: "check failed", color: RGBColor(0xC0, 0x10, 0x10) };
const WAITING: Style =
    Style { label: "not judged (too few requests)", class: "check waiting", color: RGBColor(0x99, 0x99, 0x99) };
const STABLE: Style = Style {
    label: "stable, same PromQL and window at each check",
    class: "stable-check",
    color: RGBColor(0x31, 0x82, 0xBD),
};

/// The sequential test's boundary, `ln(1/α)`: its label says the value and confidence.
const BOUNDARY: Style = Style { label: "rejects at", class: "sequential-boundary", color: RGBColor(0x99, 0x34, 0x04) };
/// Its evidence at each check, and the check at which it rejected.
const EVIDENCE: Style = Style { label: "ln E at each check", class: "evidence", color: RGBColor(0x2F, 0x4F, 0x4F) };
const REJECTED: Style =
    Style { label: "rejected: rolled back", class: "evidence rejected", color: RGBColor(0xA5, 0x00, 0x26) };

/// The series plotters draws, which [`classed`] tags by colour.
const PLOTTED: [&Style; 4] = [&WEIGHT, &MIN, &MAX, &BOUNDARY];
/// The series drawn here, each element with its class.
const DRAWN: [&Style; 6] = [&CANARY, &FAILED, &WAITING, &STABLE, &EVIDENCE, &REJECTED];

/// Every class of the chart, for the page and the tests.
pub fn classes() -> Vec<&'static str> {
    let drawn = DRAWN;
    PLOTTED.iter().chain(&drawn).map(|s| s.class).chain(MARKERS.iter().map(|(_, s)| s.class)).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct RenderError(String);

fn err(e: impl std::fmt::Display) -> RenderError {
    RenderError(e.to_string())
}

/// The chart of `report`, an SVG document.
pub fn render(report: &Report) -> Result<String, RenderError> {
    let count = |n: usize| u32::try_from(n).unwrap_or(0);
    let tested = report.metrics.iter().filter(|m| m.tested()).count();
    let height =
        TITLE_HEIGHT + WEIGHT_HEIGHT + METRIC_HEIGHT * count(report.metrics.len()) + SEQUENTIAL_HEIGHT * count(tested);
    let state = if report.window.running { "running" } else { report.phase.as_str() };
    let title = format!("{}.{} release, {} ({})", report.name, report.namespace, day(report.window.start), state);
    let mut svg = format!(
        "<svg width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" \
         fill=\"#FFFFFF\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"{FONT}\" \
         font-size=\"19\">{}</text>\n",
        WIDTH / 2,
        TITLE_HEIGHT - 12,
        escape(&title)
    );
    let mut top = TITLE_HEIGHT;
    svg.push_str(&panel("weights", "", top, WEIGHT_HEIGHT, |area| weights(area, report))?);
    top += WEIGHT_HEIGHT;
    for m in &report.metrics {
        svg.push_str(&panel("metric", &m.name, top, METRIC_HEIGHT, |area| metric::draw(area, report, m))?);
        top += METRIC_HEIGHT;
        if m.tested() {
            let draw = |area: &Area<'_>| sequential::draw(area, report, m);
            svg.push_str(&panel("sequential", &m.name, top, SEQUENTIAL_HEIGHT, draw)?);
            top += SEQUENTIAL_HEIGHT;
        }
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// One panel drawn by `draw` on an area of its own, as a group at `top`: plotters'
/// elements classed, then what `draw` returns (elements in panel coordinates).
fn panel(
    kind: &str,
    metric: &str,
    top: u32,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<String, RenderError>,
) -> Result<String, RenderError> {
    let mut drawn = String::new();
    let extra = {
        let area = SVGBackend::with_string(&mut drawn, (WIDTH, height)).into_drawing_area();
        let extra = draw(&area)?;
        area.present().map_err(err)?;
        extra
    };
    // Plotters' document without its own <svg> element.
    let body = drawn.find('>').map_or(drawn.as_str(), |i| &drawn[i + 1..]);
    let body = body.trim_end().strip_suffix("</svg>").unwrap_or(body);
    let data = if metric.is_empty() { String::new() } else { format!(" data-metric=\"{}\"", escape(metric)) };
    Ok(format!("<g class=\"panel {kind}\"{data} transform=\"translate(0,{top})\">{}{extra}</g>\n", classed(body)))
}

/// Seconds since the view's start: the x coordinate.
fn x(report: &Report, at: Timestamp) -> f64 {
    at.duration_since(report.view().0).as_secs_f64()
}

fn x_range(report: &Report) -> std::ops::Range<f64> {
    let (from, to) = report.view();
    0.0..to.duration_since(from).as_secs_f64()
}

fn tick(report: &Report, x: f64) -> String {
    clock(report.view().0 + SignedDuration::from_secs_f64(x))
}

fn day(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart over the report's time axis and `y`, its mesh drawn.
fn chart<'a, 'b>(
    area: &'a Area<'b>,
    report: &'a Report,
    caption: &str,
    y: std::ops::Range<f64>,
    unit: &str,
) -> Result<Chart<'a, 'b>, RenderError> {
    let mut chart = ChartBuilder::on(area)
        .margin(MARGIN)
        .margin_right(MARGIN_RIGHT)
        .x_label_area_size(X_LABELS)
        .y_label_area_size(Y_LABELS)
        .caption(caption, (FONT, 16))
        .build_cartesian_2d(x_range(report), y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| tick(report, *v))
        .y_desc(unit)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn weights(area: &Area<'_>, report: &Report) -> Result<String, RenderError> {
    let mut chart = chart(area, report, "canary weight and events", 0f64..105f64, "weight %")?;
    let mut stepped = Vec::new();
    for (i, (at, w)) in report.weights.iter().enumerate() {
        if let Some(prev) = i.checked_sub(1).map(|p| report.weights[p].1) {
            stepped.push((x(report, *at), f64::from(prev)));
        }
        stepped.push((x(report, *at), f64::from(*w)));
    }
    let style = WEIGHT.color.stroke_width(2);
    chart.draw_series(LineSeries::new(stepped, style)).map_err(err)?.label(WEIGHT.label).legend(swatch(&WEIGHT));
    let weight_at = |at: Timestamp| report.weights.iter().take_while(|(t, _)| *t <= at).last().map_or(0, |s| s.1);
    for (name, s) in &MARKERS {
        let points: Vec<(f64, f64)> = report
            .events
            .iter()
            .filter(|o| o.kind.marker() == Some(name))
            .map(|o| (x(report, o.at), f64::from(if let Kind::Advance(w) = o.kind { w } else { weight_at(o.at) })))
            .collect();
        if points.is_empty() {
            continue;
        }
        let color = s.color;
        let drawn = match *name {
            "Advance" => chart.draw_series(points.iter().map(|p| TriangleMarker::new(*p, 7, color.filled()))),
            "Rollback" => chart.draw_series(points.iter().map(|p| Cross::new(*p, 8, color.stroke_width(3)))),
            "Gate" => chart.draw_series(points.iter().map(|p| Circle::new(*p, 7, color.filled()))),
            // A halt: a short thick bar at the weight held.
            _ => chart.draw_series(
                points
                    .iter()
                    .map(|p| PathElement::new(vec![(p.0, p.1 - 4.0), (p.0, p.1 + 4.0)], color.stroke_width(6))),
            ),
        }
        .map_err(err)?;
        drawn.label(s.label).legend(swatch(s));
    }
    legend(&mut chart)?;
    Ok(String::new())
}

fn swatch(s: &Style) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> + use<> {
    let color = s.color;
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
}

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<(), RenderError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(err)
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Tags every element plotters drew in a series' colour (stroke or fill) with the
/// series' class.
fn classed(svg: &str) -> String {
    let colours: Vec<(String, &str)> = PLOTTED
        .into_iter()
        .chain(MARKERS.iter().map(|(_, s)| s))
        .map(|s| (format!("\"{}\"", hex(s.color)), s.class))
        .collect();
    let mut out = String::with_capacity(svg.len() + svg.len() / 8);
    for (i, piece) in svg.split('<').enumerate() {
        if i > 0 {
            out.push('<');
        }
        let tag_end = piece.find('>').unwrap_or(piece.len());
        let class = colours.iter().find(|(hex, _)| {
            let tag = &piece[..tag_end];
            tag.contains(&format!("stroke={hex}")) || tag.contains(&format!("fill={hex}"))
        });
        match (class, piece.find(' ')) {
            (Some((_, class)), Some(space)) if space < tag_end && !piece.starts_with("text") => {
                out.push_str(&piece[..space]);
                out.push_str(&format!(" class=\"{class}\""));
                out.push_str(&piece[space..]);
            }
            _ => out.push_str(piece),
        }
    }
    out
}

#[cfg(test)]
mod tests;
