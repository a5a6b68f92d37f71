//! One store for both Event APIs, as in kube-apiserver: `events.k8s.io/v1` Events are
//! core/v1 Events seen through a field mapping, so what kube-rs's `Recorder` writes is
//! what `kubectl describe` and `kubectl get events` show.

use serde_json::{Map, Value};

pub const GROUP: &str = "events.k8s.io";

/// (events.k8s.io field, core/v1 field)
const FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("eventTime", "eventTime"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("series", "series"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Where objects of `group/plural` are stored.
pub fn storage(group: &str, plural: &str) -> (String, String) {
    if group == GROUP && plural == "events" { (String::new(), "events".into()) } else { (group.into(), plural.into()) }
}

fn map(object: &Value, api_version: &str, from_core: bool) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from(api_version));
    out.insert("kind".into(), Value::from("Event"));
    if let Some(meta) = object.get("metadata") {
        out.insert("metadata".into(), meta.clone());
    }
    for (new, core) in FIELDS {
        let (from, to) = if from_core { (core, new) } else { (new, core) };
        if let Some(v) = object.get(*from) {
            out.insert((*to).to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// An events.k8s.io/v1 Event as the core/v1 Event it is stored as.
pub fn to_core(object: &Value) -> Value {
    map(object, "v1", false)
}

/// A stored core/v1 Event as events.k8s.io/v1.
pub fn from_core(object: &Value) -> Value {
    map(object, "events.k8s.io/v1", true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_shapes_map_onto_each_other() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Canary", "name": "podinfo"}, "note": "Advance podinfo.test canary weight 10",
            "reason": "Synced", "type": "Normal", "reportingController": "apisix-canary", "action": "Advance"});
        let core = to_core(&new);
        assert_eq!(core["involvedObject"]["kind"], "Canary");
        assert_eq!(core["message"], "Advance podinfo.test canary weight 10");
        assert_eq!(core["reportingComponent"], "apisix-canary");
        assert_eq!(from_core(&core), new);
    }
}
