use super::*;
use crate::report::sample;

#[test]
fn series_colours_are_unique_so_classes_are_exact() {
    let mut colours: Vec<(u8, u8, u8)> = PLOTTED
        .iter()
        .copied()
        .chain(DRAWN)
        .chain(MARKERS.iter().map(|(_, s)| s))
        .map(|s| (s.color.0, s.color.1, s.color.2))
        .collect();
    let n = colours.len();
    colours.sort_unstable();
    colours.dedup();
    assert_eq!(colours.len(), n);
    assert!(!colours.contains(&(0, 0, 0)) && !colours.contains(&(255, 255, 255)), "text and background");
    let svg =
        classed(r##"<polyline fill="none" opacity="1" stroke="#6A3D9A"/><rect fill="#2CA02C" stroke="#2CA02C"/>"##);
    assert_eq!(
        svg,
        r##"<polyline class="canary-weight" fill="none" opacity="1" stroke="#6A3D9A"/><rect class="marker-advance" fill="#2CA02C" stroke="#2CA02C"/>"##
    );
}

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"))
}

/// Each panel's `(data-metric, [(data-at, data-value, cy, class)])` of its checks.
type Points = Vec<(String, Option<f64>, f64, String)>;

fn checks(doc: &roxmltree::Document<'_>) -> Vec<(String, Points)> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some("panel metric"))
        .map(|panel| {
            let points = panel
                .descendants()
                .filter(|n| n.has_tag_name("circle") && n.attribute("class").is_some_and(|c| c.starts_with("check ")))
                .map(|n| {
                    assert_eq!(n.attribute("data-metric"), panel.attribute("data-metric"), "in its metric's panel");
                    let value = n.attribute("data-value").map(|v| v.parse().unwrap());
                    let cy = n.attribute("cy").unwrap().parse().unwrap();
                    (n.attribute("data-at").unwrap().to_owned(), value, cy, n.attribute("class").unwrap().to_owned())
                })
                .collect();
            (panel.attribute("data-metric").unwrap().to_owned(), points)
        })
        .collect()
}

#[test]
fn every_check_is_a_point_at_its_value_in_its_metrics_panel() {
    let report = sample::report();
    let svg = render(&report).unwrap();
    let doc = parse(&svg);
    let panels = checks(&doc);
    let names: Vec<&str> = panels.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["request-success-rate", "request-duration", "404s percentage"]);
    for ((name, points), m) in panels.iter().zip(&report.metrics) {
        let want: Vec<(String, Option<f64>)> = m.checks.iter().map(|c| (c.at.to_string(), c.value)).collect();
        let got: Vec<(String, Option<f64>)> = points.iter().map(|(at, v, _, _)| (at.clone(), *v)).collect();
        assert_eq!(got, want, "{name}");
        // Drawn where the value says: one linear map from value to pixel per panel.
        let valued: Vec<(f64, f64)> = points.iter().filter_map(|(_, v, cy, _)| v.map(|v| (v, *cy))).collect();
        let (lo, hi) =
            (valued.iter().min_by(|a, b| a.0.total_cmp(&b.0)), valued.iter().max_by(|a, b| a.0.total_cmp(&b.0)));
        let (Some(lo), Some(hi)) = (lo, hi) else { continue };
        if hi.0 > lo.0 {
            assert!(hi.1 < lo.1, "{name}: a higher value is drawn higher");
            for (v, cy) in &valued {
                let expected = lo.1 + (v - lo.0) / (hi.0 - lo.0) * (hi.1 - lo.1);
                assert!((cy - expected).abs() <= 1.0, "{name}: {v} at {cy}, not {expected}");
            }
        }
    }
    let classes = |metric: &str, class: &str| {
        panels.iter().find(|(n, _)| n == metric).unwrap().1.iter().filter(|p| p.3 == class).count()
    };
    assert_eq!(classes("request-success-rate", "check failed"), 2);
    assert_eq!(classes("request-success-rate", "check waiting"), 1);
    assert_eq!(classes("404s percentage", "check failed"), 1);
    let stable: Vec<f64> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("stable-check"))
        .map(|n| n.attribute("data-value").unwrap().parse().unwrap())
        .collect();
    assert_eq!(stable, [99.8, 45.02, 44.1, 10.0, 11.0], "the stable at each built-in check that has it");
    // The bounds from the analysis, in their panels, with their legends.
    let texts: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    for legend in ["min 99", "max 500", "max 5", "canary, as checked", "failed check", "canary weight %"] {
        assert!(texts.contains(&legend), "no legend {legend:?} in {texts:?}");
    }
    let bound_in = |class: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .filter_map(|n| n.ancestors().find(|a| a.attribute("data-metric").is_some()))
            .filter_map(|p| p.attribute("data-metric"))
            .collect::<Vec<_>>()
    };
    assert!(bound_in("threshold-min").contains(&"request-success-rate"));
    assert!(
        bound_in("threshold-max").contains(&"404s percentage")
            && bound_in("threshold-max").contains(&"request-duration")
    );
    assert!(doc.descendants().any(|n| n.attribute("class") == Some("marker-rollback")));
    // A tooltip says what each point is.
    assert!(svg.contains("<title>10:00:10 request-success-rate 41.76 %, failed: Halt podinfo.test advancement success rate 41.76% &lt; 99%</title>"), "{svg}");
}

#[test]
fn no_text_runs_past_the_right_edge() {
    let svg = render(&sample::report()).unwrap();
    let doc = parse(&svg);
    let width: f64 = doc.root_element().attribute("width").unwrap().parse().unwrap();
    let mut rightmost = 0.0f64;
    for n in doc.descendants().filter(|n| n.has_tag_name("text") && n.attribute("transform").is_none()) {
        let x: f64 = n.attribute("x").unwrap().parse().unwrap();
        let size: f64 = n.attribute("font-size").unwrap_or("12").parse().unwrap();
        // A generous 0.6 em a character: sans-serif digits and letters are narrower.
        let len = n.text().unwrap_or_default().trim().chars().count() as f64 * size * 0.6;
        let right = match n.attribute("text-anchor") {
            Some("middle") => x + len / 2.0,
            Some("end") => x,
            _ => x + len,
        };
        rightmost = rightmost.max(right);
        assert!(right <= width, "{:?} ends at {right}, past {width}", n.text());
    }
    assert!(rightmost > width - 60.0, "the last time label is near the edge: {rightmost}");
}

#[test]
fn a_metric_never_checked_still_has_its_panel() {
    let mut report = sample::report();
    report.metrics[1].checks.clear();
    let svg = render(&report).unwrap();
    let doc = parse(&svg);
    let panels = checks(&doc);
    assert_eq!(panels[1], ("request-duration".to_owned(), vec![]));
    assert!(svg.contains("canary, as checked (no value recorded)"));
    let height: u32 = doc.root_element().attribute("height").unwrap().parse().unwrap();
    assert_eq!(height, TITLE_HEIGHT + WEIGHT_HEIGHT + 3 * METRIC_HEIGHT);
}

/// The points of a sequential panel: `(data-at, ln E, data-boundary, cy, class)`.
type Evidence = Vec<(String, f64, f64, f64, String)>;

fn evidence(panel: roxmltree::Node<'_, '_>) -> Evidence {
    panel
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("class").is_some_and(|c| c.starts_with("evidence")))
        .map(|n| {
            let number = |a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
            let at = n.attribute("data-at").unwrap().to_owned();
            (at, number("data-value"), number("data-boundary"), number("cy"), n.attribute("class").unwrap().to_owned())
        })
        .collect()
}

/// The y of every point of the polylines of `class` in `panel`.
fn line_ys(panel: roxmltree::Node<'_, '_>, class: &str) -> Vec<f64> {
    let lines = panel.descendants().filter(|n| n.has_tag_name("polyline") && n.attribute("class") == Some(class));
    let points = lines.flat_map(|n| n.attribute("points").unwrap().split_whitespace().collect::<Vec<_>>());
    points.map(|p| p.split_once(',').unwrap().1.parse().unwrap()).collect()
}

#[test]
fn the_sequential_test_is_drawn_against_its_boundary_with_its_rejection_marked() {
    let report = sample::sequential();
    let svg = render(&report).unwrap();
    let doc = parse(&svg);
    let panels: Vec<roxmltree::Node<'_, '_>> =
        doc.descendants().filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("panel "))).collect();
    let kinds: Vec<(&str, &str)> =
        panels.iter().map(|p| (p.attribute("class").unwrap(), p.attribute("data-metric").unwrap_or(""))).collect();
    assert_eq!(
        kinds,
        [
            ("panel weights", ""),
            ("panel metric", "request-success-rate"),
            ("panel sequential", "request-success-rate"),
            ("panel metric", "request-duration"),
            ("panel sequential", "request-duration"),
        ],
        "each tested metric's test right under its own panel"
    );
    let height: u32 = doc.root_element().attribute("height").unwrap().parse().unwrap();
    assert_eq!(height, TITLE_HEIGHT + WEIGHT_HEIGHT + 2 * METRIC_HEIGHT + 2 * SEQUENTIAL_HEIGHT);

    for (panel, m) in [(panels[2], &report.metrics[0]), (panels[4], &report.metrics[1])] {
        let points = evidence(panel);
        let want: Vec<(String, f64, f64)> =
            m.checks.iter().filter_map(|c| c.evidence.map(|e| (c.at.to_string(), e.log_e, e.boundary))).collect();
        let got: Vec<(String, f64, f64)> = points.iter().map(|p| (p.0.clone(), p.1, p.2)).collect();
        assert_eq!(got, want, "{}: every check's evidence, in time order", m.name);
        assert!(want.len() >= 3, "{}: {want:?}", m.name);
        // One linear map from ln E to pixel: the points and the boundary line on it.
        let lo = points.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        let hi = points.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert!(hi.1 > lo.1 && hi.3 < lo.3, "{}: more evidence is drawn higher", m.name);
        let pixel = |v: f64| lo.3 + (v - lo.1) / (hi.1 - lo.1) * (hi.3 - lo.3);
        for p in &points {
            assert!((p.3 - pixel(p.1)).abs() <= 1.0, "{}: ln E {} at {}, not {}", m.name, p.1, p.3, pixel(p.1));
        }
        let boundary = line_ys(panel, "sequential-boundary");
        assert!(boundary.len() >= 2, "{}: no boundary line", m.name);
        // Pixels are whole: extrapolated from a narrow spread of points, so is the error.
        let b = 200f64.ln();
        let slack = 1.0 + (b - lo.1).abs().max((b - hi.1).abs()) / (hi.1 - lo.1);
        for y in boundary {
            assert!((y - pixel(b)).abs() <= slack, "{}: the boundary at {y}, not ln 200 at {}", m.name, pixel(b));
        }
        assert_eq!(line_ys(panel, "evidence-line").len(), points.len());
    }
    // The rejection between intervals, marked: only in the 5xx share's test.
    let rejected = |panel| evidence(panel).into_iter().filter(|p| p.4 == "evidence rejected").collect::<Vec<_>>();
    let rejection = rejected(panels[2]);
    assert_eq!(rejection.len(), 1, "{rejection:?}");
    assert_eq!(rejection[0].0, "2026-12-07T16:45:26Z");
    assert!((rejection[0].1 - 8.776849628299187).abs() < 1e-9);
    assert_eq!(rejected(panels[4]), []);
    assert!(svg.contains("16:45:26 request-success-rate ln E = 8.78 ≥ 5.30: the test rejects, share counted 15.0 %"));
    let texts: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    assert!(texts.contains(&"rejects at ln(1/α) = 5.30 (99 % confidence)"), "{texts:?}");
    assert!(texts.contains(&"rejected: rolled back"), "{texts:?}");

    // In the metric's own panel the rejection is a failed check with no value: its
    // 15 % is a share of failures, not a success rate.
    let rate = &checks(&doc)[0].1;
    let last = rate.last().unwrap();
    assert_eq!((last.0.as_str(), last.1, last.3.as_str()), ("2026-12-07T16:45:26Z", None, "check failed"));
    assert!(rate.iter().all(|p| p.1 != Some(15.0)), "{rate:?}");
}

#[test]
fn evidence_far_past_the_boundary_is_drawn_at_the_top_and_the_boundary_stays_readable() {
    let mut report = sample::sequential();
    let last = report.metrics[0].checks.last_mut().unwrap();
    last.evidence = last.evidence.map(|e| crate::analysis::sequential::Evidence { log_e: 400.0, ..e });
    let svg = render(&report).unwrap();
    let doc = parse(&svg);
    let panel = doc.descendants().find(|n| n.attribute("class") == Some("panel sequential")).unwrap();
    let points = evidence(panel);
    let top = points.iter().find(|p| p.4 == "evidence rejected").unwrap();
    assert_eq!(top.1, 400.0, "its value kept");
    let lowest = points.iter().map(|p| p.3).fold(0.0, f64::max);
    let boundary = line_ys(panel, "sequential-boundary")[0];
    assert!(top.3 < boundary && boundary < lowest, "{top:?} {boundary} {lowest}");
    assert!(lowest - boundary > 30.0, "the boundary is not squashed onto the other points: {boundary} {lowest}");
}
