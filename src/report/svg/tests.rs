use super::*;
use crate::report::sample;

#[test]
fn series_colours_are_unique_so_classes_are_exact() {
    let drawn = [&CANARY, &FAILED, &WAITING, &STABLE];
    let mut colours: Vec<(u8, u8, u8)> = PLOTTED
        .iter()
        .copied()
        .chain(drawn)
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
