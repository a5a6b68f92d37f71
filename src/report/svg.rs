//! The chart: three panels on one time axis (the canary weight with the Events'
//! markers, the success rates, the P99s), drawn with plotters' SVG backend.
//!
//! Each series has its own colour, and every element drawn in it gets the series'
//! `class` (`canary-success-rate`, `marker-halt`, ...), so the page can style it and a
//! test can find it.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::Kind;
use super::{Points, Report, clock};

const SIZE: (u32, u32) = (1200, 860);
const FONT: &str = "sans-serif";

/// A series: its legend text, its class in the SVG, its colour (unique in the chart).
struct Style {
    label: &'static str,
    class: &'static str,
    color: RGBColor,
}

const WEIGHT: Style = Style { label: "canary weight %", class: "canary-weight", color: RGBColor(0x6A, 0x3D, 0x9A) };
const CANARY_SUCCESS: Style =
    Style { label: "canary success rate", class: "canary-success-rate", color: RGBColor(0xE6, 0x55, 0x0D) };
const STABLE_SUCCESS: Style =
    Style { label: "stable success rate", class: "stable-success-rate", color: RGBColor(0x31, 0x82, 0xBD) };
const CANARY_P99: Style = Style { label: "canary P99", class: "canary-p99", color: RGBColor(0xD9, 0x48, 0x01) };
const STABLE_P99: Style = Style { label: "stable P99", class: "stable-p99", color: RGBColor(0x08, 0x51, 0x9C) };
const MIN_SUCCESS: Style =
    Style { label: "min success rate", class: "threshold-success-rate", color: RGBColor(0xB0, 0x00, 0x20) };
const MAX_P99: Style = Style { label: "max P99", class: "threshold-p99", color: RGBColor(0xB0, 0x00, 0x21) };
const MARKERS: [(&str, Style); 4] = [
    ("Advance", Style { label: "Advance", class: "marker-advance", color: RGBColor(0x2C, 0xA0, 0x2C) }),
    ("Halt", Style { label: "Halt", class: "marker-halt", color: RGBColor(0xFF, 0x7F, 0x0E) }),
    ("Gate", Style { label: "Gate (waiting for approval)", class: "marker-gate", color: RGBColor(0x17, 0xBE, 0xCF) }),
    ("Rollback", Style { label: "Rolling back", class: "marker-rollback", color: RGBColor(0xD6, 0x27, 0x28) }),
];

/// Every series of the chart, for the page's legend and the tests.
pub fn classes() -> Vec<&'static str> {
    let lines = [&WEIGHT, &CANARY_SUCCESS, &STABLE_SUCCESS, &CANARY_P99, &STABLE_P99, &MIN_SUCCESS, &MAX_P99];
    lines.iter().map(|s| s.class).chain(MARKERS.iter().map(|(_, s)| s.class)).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct RenderError(String);

fn err(e: impl std::fmt::Display) -> RenderError {
    RenderError(e.to_string())
}

/// The chart of `report`, an SVG document.
pub fn render(report: &Report) -> Result<String, RenderError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let state = if report.window.running { "running" } else { report.phase.as_str() };
        let title = format!("{}.{} release, {} ({})", report.name, report.namespace, day(report.window.start), state);
        let root = root.titled(&title, (FONT, 24)).map_err(err)?;
        let panels = root.split_by_breakpoints::<i32, i32, _, _>([], [230, 530]);
        weights(&panels[0], report)?;
        let success =
            [(&CANARY_SUCCESS, &report.lines.canary_success), (&STABLE_SUCCESS, &report.lines.stable_success)];
        let min = report.thresholds.min_success_rate;
        metric(&panels[1], report, "success rate %", &success, min.map(|m| (m, &MIN_SUCCESS)), Scale::Percent)?;
        let p99 = [(&CANARY_P99, &report.lines.canary_p99), (&STABLE_P99, &report.lines.stable_p99)];
        let max = report.thresholds.max_p99_ms;
        metric(&panels[2], report, "P99 ms", &p99, max.map(|m| (m, &MAX_P99)), Scale::FromZero)?;
        root.present().map_err(err)?;
    }
    Ok(classed(svg))
}

/// Seconds since the view's start: the x coordinate.
fn x(report: &Report, at: Timestamp) -> f64 {
    at.duration_since(report.view().0).as_secs_f64()
}

fn x_of_unix(report: &Report, unix: f64) -> f64 {
    unix - report.view().0.as_millisecond() as f64 / 1000.0
}

fn x_range(report: &Report) -> std::ops::Range<f64> {
    let (from, to) = report.view();
    0.0..to.duration_since(from).as_secs_f64()
}

fn tick(report: &Report, x: f64) -> String {
    let at = report.view().0 + SignedDuration::from_secs_f64(x);
    clock(at)
}

fn day(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn weights(area: &Area<'_>, report: &Report) -> Result<(), RenderError> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .caption("canary weight and events", (FONT, 16))
        .build_cartesian_2d(x_range(report), 0f64..105f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| tick(report, *v))
        .y_desc("weight %")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
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
    legend(&mut chart)
}

#[derive(Clone, Copy, PartialEq)]
enum Scale {
    /// Up to 100, down to a little under the lowest value or bound.
    Percent,
    /// From 0 to a little over the highest value or bound.
    FromZero,
}

fn metric(
    area: &Area<'_>,
    report: &Report,
    unit: &str,
    lines: &[(&Style, &Points)],
    bound: Option<(f64, &Style)>,
    scale: Scale,
) -> Result<(), RenderError> {
    let values = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)).filter(|v| v.is_finite());
    let values: Vec<f64> = values.chain(bound.map(|(b, _)| b)).collect();
    let y = match scale {
        Scale::Percent => {
            let low = values.iter().copied().fold(100.0, f64::min);
            (low - (100.0 - low) * 0.1 - 0.5).clamp(0.0, 99.0).floor()..100.5
        }
        Scale::FromZero => 0.0..(values.iter().copied().fold(1.0, f64::max) * 1.15),
    };
    let caption = format!("{unit} ({} rate window)", crate::api::duration::Display(report.rate_window));
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .caption(caption, (FONT, 16))
        .build_cartesian_2d(x_range(report), y.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| tick(report, *v))
        .y_desc(unit)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    // The events that stop a release, as thin lines through the panel.
    for (name, s) in MARKERS.iter().filter(|(n, _)| *n != "Advance") {
        let at = report.events.iter().filter(|o| o.kind.marker() == Some(name)).map(|o| x(report, o.at));
        let rules = at.map(|x| PathElement::new(vec![(x, y.start), (x, y.end)], s.color.mix(0.5).stroke_width(1)));
        chart.draw_series(rules).map_err(err)?;
    }
    if let Some((value, s)) = bound {
        let r = x_range(report);
        let line = LineSeries::new(vec![(r.start, value), (r.end, value)], s.color.stroke_width(1));
        chart.draw_series(line).map_err(err)?.label(format!("{} {value}", s.label)).legend(swatch(s));
    }
    for (s, points) in lines {
        let points: Vec<(f64, f64)> =
            points.iter().filter(|(_, v)| v.is_finite()).map(|(t, v)| (x_of_unix(report, *t), *v)).collect();
        let label = if points.is_empty() { format!("{} (no data)", s.label) } else { s.label.to_owned() };
        chart
            .draw_series(LineSeries::new(points, s.color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(swatch(s));
    }
    legend(&mut chart)
}

fn swatch(s: &Style) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> + use<> {
    let color = s.color;
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Result<(), RenderError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(err)
}

/// Tags every element drawn in a series' colour (stroke or fill) with the series' class.
fn classed(svg: String) -> String {
    let all = [&WEIGHT, &CANARY_SUCCESS, &STABLE_SUCCESS, &CANARY_P99, &STABLE_P99, &MIN_SUCCESS, &MAX_P99];
    let colours: Vec<(String, &str)> = all
        .into_iter()
        .chain(MARKERS.iter().map(|(_, s)| s))
        .map(|s| (format!("#{:02X}{:02X}{:02X}", s.color.0, s.color.1, s.color.2), s.class))
        .collect();
    let mut out = String::with_capacity(svg.len() + svg.len() / 8);
    for (i, piece) in svg.split('<').enumerate() {
        if i > 0 {
            out.push('<');
        }
        let tag_end = piece.find('>').unwrap_or(piece.len());
        let class = colours.iter().find(|(hex, _)| {
            let tag = &piece[..tag_end];
            tag.contains(&format!("stroke=\"{hex}\"")) || tag.contains(&format!("fill=\"{hex}\""))
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
mod tests {
    use super::*;

    #[test]
    fn series_colours_are_unique_so_classes_are_exact() {
        let all = [&WEIGHT, &CANARY_SUCCESS, &STABLE_SUCCESS, &CANARY_P99, &STABLE_P99, &MIN_SUCCESS, &MAX_P99];
        let mut colours: Vec<(u8, u8, u8)> = all
            .iter()
            .copied()
            .chain(MARKERS.iter().map(|(_, s)| s))
            .map(|s| (s.color.0, s.color.1, s.color.2))
            .collect();
        let n = colours.len();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours.len(), n);
        assert!(!colours.contains(&(0, 0, 0)) && !colours.contains(&(255, 255, 255)), "text and background");
        let svg = classed(
            r##"<polyline fill="none" opacity="1" stroke="#E6550D"/><rect fill="#2CA02C" stroke="#2CA02C"/>"##.into(),
        );
        assert_eq!(
            svg,
            r##"<polyline class="canary-success-rate" fill="none" opacity="1" stroke="#E6550D"/><rect class="marker-advance" fill="#2CA02C" stroke="#2CA02C"/>"##
        );
    }
}
