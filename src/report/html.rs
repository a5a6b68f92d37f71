//! The page: the chart inline and the release's Events as a table, in one
//! self-contained HTML file (no script, no external resource).

use super::checks::{self, Judged, MetricChecks};
use super::{Report, clock};
use crate::api::canary::MAX_CHECKS;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin-top:16px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr.Warning td,tr.Failed td{background:#fff4f0}\
.nodes,.note{color:#555;font-size:90%}.alike{background:#fff8e0;border-left:4px solid #e6a700;padding:6px 10px}";

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page of `report`, with `svg` (its chart) inline.
pub fn render(report: &Report, svg: &str) -> String {
    let title = escape(&format!("{}.{} release report", report.name, report.namespace));
    // An inline <svg> needs no XML prolog.
    let svg = svg.find("<svg").map_or(svg, |i| &svg[i..]);
    let mut rows = String::new();
    for o in &report.events {
        let count = if o.count > 1 { format!(" <small>(x{} in all)</small>", o.count) } else { String::new() };
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}{count}</td></tr>\n",
            escape(&o.type_),
            clock(o.at),
            escape(&o.type_),
            escape(&o.message)
        ));
    }
    let nodes = |list: &[String]| if list.is_empty() { "none".to_owned() } else { escape(&list.join(", ")) };
    let apart = if report.nodes.told_apart {
        String::new()
    } else {
        " The stable's nodes during the release could not be told from the canary's (no traffic before its first \
         step, nor before it started, nor an earlier release): the canary's list holds both, and the stable's \
         values are not shown."
            .to_owned()
    };
    let truncated = if report.truncated {
        format!(
            "<p class=\"note\">The status keeps the last {MAX_CHECKS} checks: the earlier ones are not shown.</p>\n"
        )
    } else {
        String::new()
    };
    let sequential = if report.metrics.iter().any(MetricChecks::tested) {
        "<p class=\"note\">Judged by the sequential test (<code>judge: sequential</code>): under each metric it \
         tested, its evidence against a healthy canary (ln E, the log of its likelihood ratio) at each check, and \
         the boundary ln(1/α) at or above which it rejects and the release is rolled back at once.</p>\n"
    } else {
        ""
    };
    let alike: String = checks::failed_alike(&report.metrics)
        .iter()
        .map(|a| format!("<p class=\"alike\">{}</p>\n", escape(&a.said())))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>Phase {phase}; {mode} release; from {start} to {end} UTC{running}. \
         Times are UTC. The values are those the analysis judged, at the times it judged them \
         (<code>status.checks</code>); the stable's are its values over the same window at those times.</p>\n\
         {alike}{sequential}{svg}\n<p class=\"nodes\">Canary nodes: {canary}. Stable nodes: {stable}.{apart} \
         Prometheus: {prometheus}.</p>\n{truncated}<h2>Checks</h2>\n{checks}<h2>Events</h2>\n\
         <table>\n<thead><tr><th>time</th><th>type</th><th>message</th></tr></thead>\n<tbody>\n{rows}</tbody>\n\
         </table>\n</body>\n</html>\n",
        phase = escape(&report.phase),
        mode = escape(&report.mode),
        start = clock(report.window.start),
        end = clock(report.window.end),
        running = if report.window.running { " (still running)" } else { "" },
        canary = nodes(&report.nodes.canary),
        stable = nodes(&report.nodes.stable),
        prometheus = escape(&report.prometheus),
        checks = checks_table(report),
    )
}

/// Every check, oldest first: its metric, the canary's value, the stable's, the verdict,
/// and with `judge: sequential` the test's evidence against its boundary.
fn checks_table(report: &Report) -> String {
    let mut all: Vec<(&MetricChecks, &Judged)> =
        report.metrics.iter().flat_map(|m| m.checks.iter().map(move |c| (m, c))).collect();
    if all.is_empty() {
        return "<p>No check recorded.</p>\n".to_owned();
    }
    all.sort_by_key(|(_, c)| c.at);
    let tested = report.metrics.iter().any(MetricChecks::tested);
    let mut rows = String::new();
    for (m, c) in all {
        let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| m.shown(v));
        let result = format!("{:?}", c.result);
        let evidence = match (tested, c.evidence) {
            (false, _) => String::new(),
            (true, None) => "<td></td>".to_owned(),
            (true, Some(e)) => {
                let against = if e.rejects() { "≥" } else { "&lt;" };
                format!("<td>{:.2} {against} {:.2}</td>", e.log_e, e.boundary)
            }
        };
        rows.push_str(&format!(
            "<tr class=\"{result}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{evidence}<td>{}</td><td>{}</td></tr>\n",
            clock(c.at),
            escape(&m.name),
            c.rejected_share.map_or_else(|| value(c.value), |s| format!("share {s:.1} %")),
            if m.kind.builtin() { value(c.stable) } else { String::new() },
            escape(&m.bounds()),
            result,
            escape(c.message.as_deref().unwrap_or_default()),
        ));
    }
    let evidence = if tested { "<th>sequential test: ln E against ln(1/α)</th>" } else { "" };
    format!(
        "<table class=\"checks\">\n<thead><tr><th>time</th><th>metric</th><th>canary</th><th>stable, same window</th>\
         <th>bounds</th>{evidence}<th>result</th><th>message</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn messages_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        let report = sample::report();
        let page = render(&report, "<?xml version=\"1.0\"?>\n<svg width=\"1\"></svg>");
        assert!(page.contains("<td>10:00:30</td><td>Warning</td><td>Halt podinfo.test advancement 404s percentage 12.00 &gt; 5 &lt;b&gt;bold&lt;/b&gt; <small>(x2 in all)</small></td>"), "{page}");
        assert!(!page.contains("<b>bold"), "{page}");
        assert!(!page.contains("<?xml") && page.contains("<svg width=\"1\"></svg>"), "{page}");
        assert!(page.contains("Canary nodes: 10.0.0.9. Stable nodes: 10.0.0.1, 10.0.0.2."), "{page}");
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="), "self-contained");
    }

    #[test]
    fn every_check_is_a_row_and_a_stable_failing_alike_is_said() {
        let page = render(&sample::report(), "<svg></svg>");
        let rows: usize =
            ["Passed", "Failed", "Waiting"].iter().map(|r| page.matches(&format!("<tr class=\"{r}\">")).count()).sum();
        assert_eq!(rows, sample::CHECKS, "{page}");
        assert!(
            page.contains(
                "<td>10:00:10</td><td>request-success-rate</td><td>41.76 %</td><td>45.02 %</td><td>min 99</td>\
                 <td>Failed</td><td>Halt podinfo.test advancement success rate 41.76% &lt; 99%</td>"
            ),
            "{page}"
        );
        assert!(page.contains("<td>404s percentage</td><td>0.00</td><td></td><td>max 5</td>"), "{page}");
        let alike = &page[page.find("<p class=\"alike\">").expect("the stable failed alike")..];
        assert!(alike.starts_with("<p class=\"alike\">request-success-rate: the stable failed alike."), "{alike}");
        assert!(alike.contains("the stable answered 45.02 % in the same 10s window"), "{alike}");
        // Before the chart: the first thing read after the summary.
        assert!(page.find("class=\"alike\"") < page.find("<svg"));

        let mut apart = sample::report();
        apart.nodes.told_apart = false;
        apart.truncated = true;
        let page = render(&apart, "<svg></svg>");
        assert!(page.contains("could not be told from the canary"), "{page}");
        assert!(page.contains("The status keeps the last 100 checks"), "{page}");
    }

    #[test]
    fn the_sequential_tests_evidence_is_a_column_and_its_rejection_shows_the_share_it_counted() {
        let page = render(&sample::sequential(), "<svg></svg>");
        assert!(page.contains("<th>bounds</th><th>sequential test: ln E against ln(1/α)</th><th>result</th>"));
        assert!(
            page.contains(
                "<td>16:45:24</td><td>request-success-rate</td><td>89.56 %</td><td>-</td><td>min 99</td>\
                 <td>3.04 &lt; 5.30</td><td>Failed</td>"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                "<td>16:45:26</td><td>request-success-rate</td><td>share 15.0 %</td><td>-</td><td>min 99</td>\
                 <td>8.78 ≥ 5.30</td><td>Failed</td><td>Rolling back podinfo.test: canary 5xx share 15.0 % &gt; 1 %"
            ),
            "{page}"
        );
        assert!(page.contains("Judged by the sequential test"), "{page}");
        // Flagger's rule: no such column, no such note.
        let page = render(&sample::report(), "<svg></svg>");
        assert!(!page.contains("sequential test") && !page.contains("ln E"), "{page}");
    }
}
