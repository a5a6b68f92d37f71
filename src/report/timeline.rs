//! The release's story from the Canary's Events, pure: what each message says
//! ([`Kind`]), when the last release ran ([`window`]) and the canary weight over it
//! ([`weight_steps`]).
//!
//! An Event repeated within the recorder's window is one Event counted again (client-go's
//! correlator): its `firstTimestamp` may belong to an earlier release and its
//! `lastTimestamp` to this one. Each Event is therefore read as up to two occurrences,
//! its first and its last, and a release keeps those that fall inside it.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What an Event's message says about the release (Flagger's words, as the controller
/// writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "New revision detected! Scaling up ..." (`restart: false`) or "... Restarting
    /// analysis for ..." (a new template mid-analysis: the same release goes on).
    Start {
        restart: bool,
    },
    /// "Advance X canary weight N" (N) or "Advance X primary weight N" (100 - N).
    Advance(u32),
    /// "Halt X advancement waiting for ... approval ...": a gate holds the release.
    Gate,
    /// Any other "Halt X advancement ...": a failed or withheld check.
    Halt,
    /// "Rolling back X ...".
    Rollback,
    /// "Promotion completed! ..." or "Canary failed! ...": the canary is gone.
    End,
    Other,
}

impl Kind {
    pub fn of(message: &str) -> Kind {
        if let Some(rest) = message.strip_prefix("New revision detected!") {
            return Kind::Start { restart: rest.trim_start().starts_with("Restarting") };
        }
        if let Some(rest) = message.strip_prefix("Advance ") {
            let mut words = rest.split_whitespace().skip(1);
            let (side, noun, n) = (words.next(), words.next(), words.next().and_then(|n| n.parse::<u32>().ok()));
            return match (side, noun, n) {
                (Some("canary"), Some("weight"), Some(n)) => Kind::Advance(n.min(100)),
                (Some("primary"), Some("weight"), Some(n)) => Kind::Advance(100 - n.min(100)),
                _ => Kind::Other,
            };
        }
        if message.starts_with("Halt ") {
            let gate = message.contains(" advancement waiting for ") && message.contains("approval");
            return if gate { Kind::Gate } else { Kind::Halt };
        }
        if message.starts_with("Rolling back") {
            return Kind::Rollback;
        }
        if message.starts_with("Promotion completed!") || message.starts_with("Canary failed!") {
            return Kind::End;
        }
        Kind::Other
    }

    /// The marker's name in the chart's legend and the table, for the kinds marked.
    pub fn marker(self) -> Option<&'static str> {
        match self {
            Kind::Advance(_) => Some("Advance"),
            Kind::Halt => Some("Halt"),
            Kind::Gate => Some("Gate"),
            Kind::Rollback => Some("Rollback"),
            _ => None,
        }
    }
}

/// One time an Event was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub at: Timestamp,
    /// `Warning` or `Normal`.
    pub type_: String,
    pub message: String,
    /// How often the Event was counted in all (the table shows it).
    pub count: i32,
    pub kind: Kind,
}

/// The occurrences of `events`, oldest first: each Event's first time, and its last
/// when it was counted more than once.
pub fn occurrences(events: &[Event]) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for e in events {
        // eventTime and a repeat's series.lastObservedTime have microseconds, the other
        // two whole seconds: steps a fraction of a second apart keep their order.
        let first = e.event_time.as_ref().map(|t| t.0).or(e.first_timestamp.as_ref().map(|t| t.0));
        let repeated = e.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0);
        let last = repeated.or_else(|| {
            e.last_timestamp.as_ref().map(|t| t.0).filter(|l| first.is_none_or(|f| l.as_second() > f.as_second()))
        });
        let last = last.or(first);
        let (Some(first), Some(last)) = (first, last) else { continue };
        let message = e.message.clone().unwrap_or_default();
        let count = e.count.unwrap_or(1).max(1);
        let one = |at| Occurrence {
            at,
            type_: e.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
            message: message.clone(),
            count,
            kind: Kind::of(&message),
        };
        out.push(one(first));
        if last != first {
            out.push(one(last));
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message.cmp(&b.message)));
    out
}

/// When the release ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Still running: `end` is now.
    pub running: bool,
}

impl Window {
    /// The window with some room on each side: 5% of its span, at least 5 s.
    pub fn padded(&self) -> (Timestamp, Timestamp) {
        let pad = (self.end.duration_since(self.start) / 20).max(MIN_PAD);
        (self.start - pad, self.end + pad)
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at <= self.end
    }
}

const MIN_PAD: SignedDuration = SignedDuration::from_secs(5);

/// The last release: from its last "New revision detected! Scaling up" (a restart
/// within it does not start another) to its last occurrence, or to `now` while
/// `running`. `None` without any "New revision detected!".
pub fn window(occurrences: &[Occurrence], running: bool, now: Timestamp) -> Option<Window> {
    let last_start = |restart_too: bool| {
        occurrences
            .iter()
            .filter(|o| matches!(o.kind, Kind::Start { restart } if restart_too || !restart))
            .map(|o| o.at)
            .max()
    };
    let start = last_start(false).or_else(|| last_start(true))?;
    let end = if running {
        now.max(start)
    } else {
        occurrences.iter().map(|o| o.at).filter(|t| *t >= start).max().unwrap_or(start)
    };
    Some(Window { start, end, running })
}

/// The release as its recorded checks span it, for when its Events have expired (an
/// hour, by default) but the status still holds them: from the first check to the last,
/// or to `now` while `running`. `None` without a check.
pub fn window_of_checks(checked: impl IntoIterator<Item = Timestamp>, running: bool, now: Timestamp) -> Option<Window> {
    let (start, last) = checked.into_iter().fold(None, |span: Option<(Timestamp, Timestamp)>, at| {
        Some(span.map_or((at, at), |(a, b)| (a.min(at), b.max(at))))
    })?;
    Some(Window { start, end: if running { now.max(last) } else { last }, running })
}

/// The canary's weight over the window, as a step line: 0 at the start, each Advance,
/// 0 again at a rollback or the end of the canary, and the last weight held to the
/// window's end.
pub fn weight_steps(occurrences: &[Occurrence], window: &Window) -> Vec<(Timestamp, u32)> {
    let mut steps = vec![(window.start, 0)];
    for o in occurrences.iter().filter(|o| window.contains(o.at)) {
        let weight = match o.kind {
            Kind::Advance(w) => w,
            Kind::Rollback | Kind::End => 0,
            _ => continue,
        };
        steps.push((o.at, weight));
    }
    let last = steps.last().map_or(0, |s| s.1);
    steps.push((window.end, last));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "podinfo.test";

    fn at(s: u32) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + i64::from(s)).unwrap()
    }

    fn occ(s: u32, message: &str) -> Occurrence {
        Occurrence { at: at(s), type_: "Normal".into(), message: message.into(), count: 1, kind: Kind::of(message) }
    }

    #[test]
    fn a_repeat_is_placed_at_its_microsecond_not_at_the_start_of_its_second() {
        use k8s_openapi::api::core::v1::EventSeries;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
        // The release starts 0.8 s into the second the last one was promoted in: its
        // "New revision detected!" repeats an earlier release's Event.
        let promoted = at(10).checked_add(SignedDuration::from_millis(200)).unwrap();
        let started = at(10).checked_add(SignedDuration::from_millis(800)).unwrap();
        let event = |message: &str, first: Timestamp, last: Timestamp, count: i32| Event {
            message: Some(message.into()),
            event_time: Some(MicroTime(first)),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(Timestamp::from_second(last.as_second()).unwrap())),
            count: Some(count),
            series: (count > 1)
                .then_some(EventSeries { count: Some(count), last_observed_time: Some(MicroTime(last)) }),
            ..Event::default()
        };
        let events = [
            event(&format!("New revision detected! Scaling up {ID}"), at(0), started, 2),
            event(&format!("Promotion completed! Scaling down {ID}"), promoted, promoted, 1),
        ];
        let occurrences = occurrences(&events);
        let start = occurrences.iter().rfind(|o| matches!(o.kind, Kind::Start { .. })).unwrap();
        assert_eq!(start.at, started);
        let end = occurrences.iter().find(|o| o.kind == Kind::End).unwrap();
        assert!(end.at < start.at, "the earlier release's end comes before this one's start");
    }

    #[test]
    fn messages_are_classified() {
        let cases = [
            (format!("New revision detected! Scaling up {ID}"), Kind::Start { restart: false }),
            (format!("New revision detected! Restarting analysis for {ID}"), Kind::Start { restart: true }),
            (format!("Advance {ID} canary weight 30"), Kind::Advance(30)),
            (format!("Advance {ID} primary weight 70"), Kind::Advance(30)),
            (format!("Advance {ID} canary weight 250"), Kind::Advance(100)),
            (format!("Advance {ID} canary weight x"), Kind::Other),
            (format!("Halt {ID} advancement waiting for approval load-test"), Kind::Gate),
            (format!("Halt {ID} advancement waiting for traffic increase approval g"), Kind::Gate),
            (format!("Halt {ID} advancement waiting for promotion approval g"), Kind::Gate),
            (format!("Halt {ID} advancement success rate 40.00% < 99%"), Kind::Halt),
            (format!("Halt {ID} advancement waiting for traffic: request-success-rate needs 20"), Kind::Halt),
            (format!("Rolling back {ID} failed checks threshold reached 4"), Kind::Rollback),
            (format!("Promotion completed! Scaling down {ID}"), Kind::End),
            (format!("Canary failed! Scaling down {ID}"), Kind::End),
            (format!("Starting canary analysis for {ID}"), Kind::Other),
        ];
        for (message, want) in cases {
            assert_eq!(Kind::of(&message), want, "{message}");
        }
        assert_eq!(Kind::Gate.marker(), Some("Gate"));
        assert_eq!(Kind::Other.marker(), None);
        assert_eq!(Kind::Start { restart: false }.marker(), None);
    }

    #[test]
    fn the_window_is_the_last_release() {
        let events = [
            occ(0, "New revision detected! Scaling up podinfo.test"),
            occ(5, "Promotion completed! Scaling down podinfo.test"),
            occ(100, "New revision detected! Scaling up podinfo.test"),
            occ(104, "New revision detected! Restarting analysis for podinfo.test"),
            occ(110, "Advance podinfo.test canary weight 10"),
            occ(130, "Canary failed! Scaling down podinfo.test"),
        ];
        let w = window(&events, false, at(1000)).unwrap();
        assert_eq!(w, Window { start: at(100), end: at(130), running: false }, "the restart is the same release");
        let running = window(&events, true, at(200)).unwrap();
        assert_eq!((running.end, running.running), (at(200), true), "now while it runs");
        assert_eq!(w.padded(), (at(95), at(135)), "at least 5 s each side");
        let long = Window { start: at(0), end: at(1000), running: false };
        assert_eq!(long.padded(), (at(0) - SignedDuration::from_secs(50), at(1050)), "5% of a long one");
        let only_restart = [occ(7, "New revision detected! Restarting analysis for podinfo.test")];
        assert_eq!(window(&only_restart, false, at(9)).unwrap().start, at(7), "its earlier Events expired");
        assert_eq!(window(&[occ(1, "Advance podinfo.test canary weight 10")], false, at(9)), None);
        assert_eq!(window(&[], true, at(9)), None, "no release");
        let checked = [at(30), at(12), at(20)];
        assert_eq!(
            window_of_checks(checked, false, at(99)),
            Some(Window { start: at(12), end: at(30), running: false })
        );
        assert_eq!(window_of_checks(checked, true, at(99)).map(|w| w.end), Some(at(99)));
        assert_eq!(window_of_checks([], false, at(99)), None);
    }

    #[test]
    fn weights_step_up_and_drop_to_zero_at_the_end() {
        let events = [
            occ(0, "Advance podinfo.test canary weight 10"),
            occ(100, "New revision detected! Scaling up podinfo.test"),
            occ(102, "Starting canary analysis for podinfo.test"),
            occ(104, "Advance podinfo.test canary weight 10"),
            occ(106, "Halt podinfo.test advancement success rate 40.00% < 99%"),
            occ(108, "Advance podinfo.test canary weight 20"),
            occ(110, "Advance podinfo.test primary weight 90"),
            occ(112, "Promotion completed! Scaling down podinfo.test"),
        ];
        let w = window(&events, false, at(500)).unwrap();
        let steps: Vec<(u32, u32)> =
            weight_steps(&events, &w).iter().map(|(t, n)| ((t.as_second() - at(0).as_second()) as u32, *n)).collect();
        assert_eq!(steps, [(100, 0), (104, 10), (108, 20), (110, 10), (112, 0), (112, 0)]);
        let rolled = [
            occ(0, "New revision detected! Scaling up podinfo.test"),
            occ(2, "Advance podinfo.test canary weight 10"),
            occ(4, "Rolling back podinfo.test aborted by the operator"),
        ];
        let w = Window { start: at(0), end: at(9), running: true };
        let steps: Vec<u32> = weight_steps(&rolled, &w).iter().map(|s| s.1).collect();
        assert_eq!(steps, [0, 10, 0, 0]);
    }

    #[test]
    fn a_repeated_event_is_two_occurrences() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "podinfo.1"},
            "involvedObject": {"kind": "Canary", "name": "podinfo"},
            "message": "Halt podinfo.test advancement success rate 40.00% < 99%",
            "type": "Warning",
            "count": 3,
            "firstTimestamp": "2026-11-30T10:00:00Z",
            "lastTimestamp": "2026-11-30T10:00:06Z",
        }))
        .unwrap();
        let once: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "podinfo.2"},
            "involvedObject": {"kind": "Canary", "name": "podinfo"},
            "message": "New revision detected! Scaling up podinfo.test",
            "eventTime": "2026-11-30T09:59:58.000000Z",
        }))
        .unwrap();
        let got = occurrences(&[event, once]);
        let times: Vec<String> = got.iter().map(|o| o.at.to_string()).collect();
        assert_eq!(times, ["2026-11-30T09:59:58Z", "2026-11-30T10:00:00Z", "2026-11-30T10:00:06Z"]);
        assert_eq!((got[1].kind, got[1].count, got[1].type_.as_str()), (Kind::Halt, 3, "Warning"));
        assert_eq!(got[0].type_, "Normal");
    }
}
