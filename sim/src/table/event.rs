//! kube-apiserver's printer for Events (`printEvent`), for both Event APIs (they print
//! the same internal Event): `kubectl get events`'s LAST SEEN, TYPE, REASON, OBJECT and
//! MESSAGE. LAST SEEN is the series' last observation, else `lastTimestamp`, else the
//! first time seen (`firstTimestamp`, else `eventTime`).

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::builtin::Column;
use super::{human_age, text};

pub(super) fn columns() -> Vec<Column> {
    vec![
        ("Last Seen", "string", 0),
        ("Type", "string", 0),
        ("Reason", "string", 0),
        ("Object", "string", 0),
        ("Message", "string", 0),
    ]
}

/// kube's `translateTimestampSince`: the age of a time, `<unknown>` without one.
fn since(time: Option<&str>) -> String {
    match time.and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(t) => human_age(Timestamp::now().as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

pub(super) fn cells(object: &Value) -> Vec<Value> {
    // An events.k8s.io/v1 Event as the core/v1 Event it is.
    let core;
    let o = if object.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1") {
        core = crate::events::to_core(object);
        &core
    } else {
        object
    };
    let set = |pointer: &str| o.pointer(pointer).and_then(Value::as_str).filter(|t| !t.is_empty());
    let first = set("/firstTimestamp").or_else(|| set("/eventTime"));
    let last = set("/series/lastObservedTime").or_else(|| set("/lastTimestamp")).or(first);
    let involved = o.get("involvedObject").cloned().unwrap_or_default();
    let kind = text(involved.get("kind")).to_lowercase();
    let object = match text(involved.get("name")) {
        name if name.is_empty() => kind,
        name => format!("{kind}/{name}"),
    };
    vec![
        json!(since(last)),
        json!(text(o.get("type"))),
        json!(text(o.get("reason"))),
        json!(object),
        json!(text(o.get("message")).trim()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(event: Value) -> Value {
        cells(&event)[0].clone()
    }

    #[test]
    fn last_seen_is_read_as_kube_reads_it_in_both_apis() {
        let hour_ago = (Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(3600)).to_string();
        let day_ago = (Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(86_400)).to_string();
        let core = json!({"apiVersion": "v1", "kind": "Event", "firstTimestamp": day_ago, "lastTimestamp": hour_ago,
            "involvedObject": {"kind": "Pod", "name": "web"}, "type": "Normal", "reason": "Pulled", "message": " pulled \n"});
        assert_eq!(cells(&core), [json!("60m"), json!("Normal"), json!("Pulled"), json!("pod/web"), json!("pulled")]);
        // events.k8s.io names the same fields otherwise.
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "deprecatedFirstTimestamp": day_ago,
            "deprecatedLastTimestamp": hour_ago, "regarding": {"kind": "Pod", "name": "web"}, "note": "pulled"});
        assert_eq!(cells(&new)[0], "60m");
        assert_eq!((&cells(&new)[3], &cells(&new)[4]), (&json!("pod/web"), &json!("pulled")));
        // A Recorder's Event: its eventTime, or its series' last observation.
        assert_eq!(seen(json!({"apiVersion": "events.k8s.io/v1", "eventTime": day_ago})), "24h");
        let series = json!({"apiVersion": "events.k8s.io/v1", "eventTime": day_ago,
            "series": {"count": 3, "lastObservedTime": hour_ago}});
        assert_eq!(seen(series), "60m");
        assert_eq!(seen(json!({"firstTimestamp": day_ago})), "24h");
        assert_eq!(seen(json!({"metadata": {"creationTimestamp": day_ago}})), "<unknown>");
        assert_eq!(cells(&json!({"involvedObject": {"kind": "Node"}}))[3], "node");
    }
}
