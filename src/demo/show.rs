//! What the demo prints, as pure functions of what it observed: the weight's progress
//! bar, the live line of a release, the Canary's Events of an act, the summary table.

use std::time::Duration;

/// Cells of the progress bar: one per 10% of traffic.
const BAR_CELLS: usize = 10;

/// One observation of the release, for its live line.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub phase: String,
    pub weight: u32,
    pub failed_checks: u32,
    /// The canary's own success rate (percent) over the metrics' interval, when measured.
    pub success_rate: Option<f64>,
    /// The canary's P99 latency in milliseconds, when measured.
    pub p99_ms: Option<f64>,
}

impl Snapshot {
    /// What makes a new plain line: the release moved (metrics alone do not).
    pub fn key(&self) -> (&str, u32, u32) {
        (&self.phase, self.weight, self.failed_checks)
    }
}

/// `[███░░░░░░░]  30%`: the weight as a bar of ten cells (capped at 100%).
pub fn progress_bar(weight: u32) -> String {
    let weight = weight.min(100);
    let full = (weight as usize * BAR_CELLS).div_ceil(100);
    format!("[{}{}] {weight:>3}%", "█".repeat(full), "░".repeat(BAR_CELLS - full))
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}%"))
}

fn millis(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}ms"))
}

/// The live line: with a bar (a terminal, redrawn in place) or plain (one per change,
/// `weight N%` so a reader can parse it).
pub fn live_line(s: &Snapshot, bar: bool) -> String {
    let weight = if bar { progress_bar(s.weight) } else { format!("weight {:>3}%", s.weight) };
    format!(
        "  {:<12} {weight}  success rate {:>7}  p99 {:>5}  failed checks {}",
        s.phase,
        percent(s.success_rate),
        millis(s.p99_ms),
        s.failed_checks
    )
}

/// The Canary's Events as the act saw them appear, as `kubectl describe` lists them:
/// each message once, in the order it first appeared, with how often it happened.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    /// Event name -> the count last seen.
    counts: std::collections::HashMap<String, u32>,
    /// (message, occurrences during the act), in order of first appearance.
    lines: Vec<(String, u32)>,
}

/// One core/v1 Event as listed: its name, count and message, and when it last happened.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenEvent {
    pub name: String,
    pub count: u32,
    pub message: String,
    /// Sorts the Events of one listing (microseconds since the epoch).
    pub at: i64,
}

impl EventLog {
    /// Starts from the Events already there: they belong to earlier acts.
    pub fn since(events: &[SeenEvent]) -> Self {
        Self { counts: events.iter().map(|e| (e.name.clone(), e.count)).collect(), lines: Vec::new() }
    }

    /// Takes a new listing: what is new or counted again since the last one is logged.
    pub fn observe(&mut self, events: &[SeenEvent]) {
        let mut fresh: Vec<(&SeenEvent, u32)> = events
            .iter()
            .filter_map(|e| {
                let before = self.counts.get(&e.name).copied().unwrap_or(0);
                (e.count > before).then(|| (e, e.count - before))
            })
            .collect();
        fresh.sort_by_key(|(e, _)| e.at);
        for (e, times) in fresh {
            self.counts.insert(e.name.clone(), e.count);
            match self.lines.iter_mut().find(|(m, _)| *m == e.message) {
                Some((_, n)) => *n += times,
                None => self.lines.push((e.message.clone(), times)),
            }
        }
    }

    /// The messages, each once.
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|(m, _)| m.as_str())
    }

    /// `  Advance podinfo.test canary weight 10`, `  Halt ... (x3)`.
    pub fn render(&self) -> String {
        self.lines.iter().map(|(m, n)| if *n > 1 { format!("  {m} (x{n})\n") } else { format!("  {m}\n") }).collect()
    }
}

/// How one act ended, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub act: u8,
    pub expected: String,
    pub got: String,
    pub duration: Duration,
    /// Every weight the canary reached, in order, each once.
    pub weights: Vec<u32>,
    /// `None` when the act ended as the scenario says; else how it differed.
    pub differs: Option<String>,
}

/// Adds `weight` to the weights visited unless it is the last one (or 0).
pub fn visit(weights: &mut Vec<u32>, weight: u32) {
    if weight > 0 && weights.last() != Some(&weight) {
        weights.push(weight);
    }
}

/// The summary: a header and one row per act, columns aligned.
pub fn summary(outcomes: &[Outcome]) -> String {
    let header = ["act", "expected", "got", "duration", "weights visited"].map(str::to_owned);
    let rows: Vec<[String; 5]> = outcomes
        .iter()
        .map(|o| {
            let weights = o.weights.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(" ");
            let got = if o.differs.is_some() { format!("{} (differs)", o.got) } else { o.got.clone() };
            [o.act.to_string(), o.expected.clone(), got, format!("{:.1}s", o.duration.as_secs_f64()), weights]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

/// Whether every act ended as the scenario says: a sentence saying so, or one naming
/// each act that differed and how.
pub fn verdict(outcomes: &[Outcome]) -> Result<String, String> {
    let differing: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.differs.as_ref().map(|how| format!("act {} expected {}: {how}", o.act, o.expected)))
        .collect();
    match differing.is_empty() {
        true => Ok("Every act ended as the scenario says.".to_owned()),
        false => Err(format!("Not as the scenario says: {}", differing.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_one_cell_per_ten_percent_and_rounds_up() {
        assert_eq!(progress_bar(0), "[░░░░░░░░░░]   0%");
        assert_eq!(progress_bar(30), "[███░░░░░░░]  30%");
        assert_eq!(progress_bar(5), "[█░░░░░░░░░]   5%");
        assert_eq!(progress_bar(100), "[██████████] 100%");
        assert_eq!(progress_bar(250), "[██████████] 100%", "capped");
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            phase: "Progressing".into(),
            weight: 20,
            failed_checks: 1,
            success_rate: Some(99.5),
            p99_ms: Some(12.4),
        }
    }

    #[test]
    fn the_live_line_shows_phase_weight_metrics_and_failed_checks() {
        assert_eq!(
            live_line(&snapshot(), false),
            "  Progressing  weight  20%  success rate  99.50%  p99  12ms  failed checks 1"
        );
        assert_eq!(
            live_line(&snapshot(), true),
            "  Progressing  [██░░░░░░░░]  20%  success rate  99.50%  p99  12ms  failed checks 1"
        );
        let unmeasured = Snapshot { success_rate: None, p99_ms: None, ..snapshot() };
        assert!(live_line(&unmeasured, false).contains("success rate       -  p99     -"));
    }

    #[test]
    fn a_new_line_only_when_the_release_moves() {
        let a = snapshot();
        let b = Snapshot { success_rate: Some(42.0), ..snapshot() };
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), Snapshot { weight: 30, ..snapshot() }.key());
        assert_ne!(a.key(), Snapshot { failed_checks: 2, ..snapshot() }.key());
    }

    fn event(name: &str, count: u32, message: &str, at: i64) -> SeenEvent {
        SeenEvent { name: name.into(), count, message: message.into(), at }
    }

    #[test]
    fn the_log_keeps_only_what_happened_during_the_act_in_order() {
        let before = [event("a", 1, "Advance podinfo.test canary weight 10", 1), event("h", 2, "Halt", 2)];
        let mut log = EventLog::since(&before);
        log.observe(&[
            event("a", 1, "Advance podinfo.test canary weight 10", 1),
            event("n", 1, "New revision detected! Scaling up podinfo.test", 10),
        ]);
        // Listed out of order; a repeat of an earlier act's Event counts again.
        log.observe(&[
            event("h", 4, "Halt", 12),
            event("r", 1, "Rolling back", 13),
            event("a", 2, "Advance podinfo.test canary weight 10", 11),
        ]);
        log.observe(&[event("r", 1, "Rolling back", 13), event("h2", 1, "Halt", 14)]);
        let got: Vec<&str> = log.messages().collect();
        assert_eq!(
            got,
            [
                "New revision detected! Scaling up podinfo.test",
                "Advance podinfo.test canary weight 10",
                "Halt",
                "Rolling back"
            ]
        );
        assert_eq!(
            log.render(),
            "  New revision detected! Scaling up podinfo.test\n  Advance podinfo.test canary weight 10\n  Halt (x3)\n  Rolling back\n"
        );
    }

    #[test]
    fn weights_visited_skip_zero_and_repeats() {
        let mut w = Vec::new();
        for weight in [0, 10, 10, 20, 30, 0, 30] {
            visit(&mut w, weight);
        }
        assert_eq!(w, [10, 20, 30]);
    }

    #[test]
    fn the_summary_aligns_its_columns_and_marks_a_difference() {
        let outcomes = [
            Outcome {
                act: 1,
                expected: "Succeeded".into(),
                got: "Succeeded".into(),
                duration: Duration::from_millis(12_340),
                weights: vec![10, 20, 30],
                differs: None,
            },
            Outcome {
                act: 2,
                expected: "Failed (threshold)".into(),
                got: "Progressing".into(),
                duration: Duration::from_secs(90),
                weights: vec![10],
                differs: Some("timed out".into()),
            },
        ];
        assert_eq!(
            summary(&outcomes),
            "act  expected            got                    duration  weights visited\n\
             1    Succeeded           Succeeded              12.3s     10 20 30\n\
             2    Failed (threshold)  Progressing (differs)  90.0s     10\n"
        );
    }

    #[test]
    fn the_verdict_names_each_act_that_differed() {
        let ok = Outcome {
            act: 1,
            expected: "Succeeded".into(),
            got: "Succeeded".into(),
            duration: Duration::from_secs(12),
            weights: vec![10, 20, 30],
            differs: None,
        };
        assert_eq!(verdict(std::slice::from_ref(&ok)), Ok("Every act ended as the scenario says.".into()));
        let late = Outcome {
            act: 3,
            expected: "Failed (404s)".into(),
            differs: Some("no ending after 90s".into()),
            ..ok.clone()
        };
        assert_eq!(
            verdict(&[ok, late]),
            Err("Not as the scenario says: act 3 expected Failed (404s): no ending after 90s".into())
        );
    }
}
