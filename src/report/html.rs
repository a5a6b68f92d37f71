//! The page: the chart inline and the release's Events as a table, in one
//! self-contained HTML file (no script, no external resource).

use super::{Report, clock};

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin-top:16px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr.Warning td{background:#fff4f0}\
.nodes{color:#555;font-size:90%}";

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
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>Phase {phase}; from {start} to {end} UTC{running}. \
         Times are UTC.</p>\n{svg}\n<p class=\"nodes\">Canary nodes: {canary}. Stable nodes: {stable}.</p>\n\
         <table>\n<thead><tr><th>time</th><th>type</th><th>message</th></tr></thead>\n<tbody>\n{rows}</tbody>\n\
         </table>\n</body>\n</html>\n",
        phase = escape(&report.phase),
        start = clock(report.window.start),
        end = clock(report.window.end),
        running = if report.window.running { " (still running)" } else { "" },
        canary = nodes(&report.nodes.canary),
        stable = nodes(&report.nodes.stable),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::jiff::Timestamp;

    use super::super::timeline::{Kind, Occurrence, Window};
    use super::super::{Lines, Thresholds};
    use super::*;
    use crate::report::nodes::Nodes;

    #[test]
    fn messages_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        let at: Timestamp = "2026-11-30T10:00:05Z".parse().unwrap();
        let message = "Halt podinfo.test advancement 404s percentage 12.00 > 5 <b>bold</b>";
        let report = Report {
            namespace: "test".into(),
            name: "podinfo".into(),
            phase: "Failed".into(),
            window: Window { start: at, end: at, running: false },
            events: vec![Occurrence {
                at,
                type_: "Warning".into(),
                message: message.into(),
                count: 2,
                kind: Kind::of(message),
            }],
            weights: vec![],
            lines: Lines::default(),
            thresholds: Thresholds::default(),
            nodes: Nodes { canary: vec!["10.0.0.9".into()], stable: vec![] },
            rate_window: Duration::from_secs(60),
        };
        let page = render(&report, "<?xml version=\"1.0\"?>\n<svg width=\"1\"></svg>");
        assert!(page.contains("<td>10:00:05</td><td>Warning</td><td>Halt podinfo.test advancement 404s percentage 12.00 &gt; 5 &lt;b&gt;bold&lt;/b&gt; <small>(x2 in all)</small></td>"), "{page}");
        assert!(!page.contains("<b>bold"), "{page}");
        assert!(!page.contains("<?xml") && page.contains("<svg width=\"1\"></svg>"), "{page}");
        assert!(page.contains("Canary nodes: 10.0.0.9. Stable nodes: none."), "{page}");
        assert!(!page.contains("<script") && !page.contains("http"), "self-contained: {page}");
    }
}
