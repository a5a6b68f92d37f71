//! The metric specs and statuses of autoscaling/v1's round-trip annotations, in the
//! v2beta1 shape v1 keeps them in (`targetAverageUtilization`, `currentAverageValue`),
//! converted to and from v2 as kube's `pkg/apis/autoscaling/v1/conversion.go` does, and
//! written in the field order of Go's encoder, so the annotations read as a cluster's.

use serde_json::{Map, Value, json};

/// An object of the present fields among `fields`, in order.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect())
}

fn at(v: &Value, pointer: &str) -> Option<Value> {
    v.pointer(pointer).filter(|v| !v.is_null()).cloned()
}

/// A `resource.Quantity` that is not a pointer in Go: absent reads as zero.
fn quantity(v: &Value, pointer: &str) -> Option<Value> {
    Some(at(v, pointer).unwrap_or_else(|| json!("0")))
}

/// A v2 `MetricSpec` as v1's.
pub fn spec_to_v1(m: &Value) -> Value {
    let resource = |r: &Value, container: bool| {
        object(vec![
            ("name", at(r, "/name")),
            ("targetAverageUtilization", at(r, "/target/averageUtilization")),
            ("targetAverageValue", at(r, "/target/averageValue")),
            ("container", if container { Some(at(r, "/container").unwrap_or_else(|| json!(""))) } else { None }),
        ])
    };
    object(vec![
        ("type", at(m, "/type")),
        (
            "object",
            m.get("object").map(|o| {
                object(vec![
                    ("target", at(o, "/describedObject")),
                    ("metricName", at(o, "/metric/name")),
                    ("targetValue", quantity(o, "/target/value")),
                    ("selector", at(o, "/metric/selector")),
                    ("averageValue", at(o, "/target/averageValue")),
                ])
            }),
        ),
        (
            "pods",
            m.get("pods").map(|p| {
                object(vec![
                    ("metricName", at(p, "/metric/name")),
                    ("targetAverageValue", quantity(p, "/target/averageValue")),
                    ("selector", at(p, "/metric/selector")),
                ])
            }),
        ),
        ("resource", m.get("resource").map(|r| resource(r, false))),
        ("containerResource", m.get("containerResource").map(|r| resource(r, true))),
        (
            "external",
            m.get("external").map(|e| {
                object(vec![
                    ("metricName", at(e, "/metric/name")),
                    ("metricSelector", at(e, "/metric/selector")),
                    ("targetValue", at(e, "/target/value")),
                    ("targetAverageValue", at(e, "/target/averageValue")),
                ])
            }),
        ),
    ])
}

/// A v1 `MetricSpec` (from the annotation) as v2's.
pub fn spec_to_v2(m: &Value) -> Value {
    let resource = |r: &Value, container: bool| {
        let utilization = at(r, "/targetAverageUtilization");
        let type_ = if utilization.is_some() { "Utilization" } else { "AverageValue" };
        object(vec![
            ("name", at(r, "/name")),
            ("container", if container { at(r, "/container") } else { None }),
            (
                "target",
                Some(object(vec![
                    ("type", Some(json!(type_))),
                    ("averageUtilization", utilization),
                    ("averageValue", at(r, "/targetAverageValue")),
                ])),
            ),
        ])
    };
    let metric =
        |v: &Value, selector: &str| Some(object(vec![("name", at(v, "/metricName")), ("selector", at(v, selector))]));
    object(vec![
        ("type", at(m, "/type")),
        (
            "object",
            m.get("object").map(|o| {
                let average = at(o, "/averageValue");
                let type_ = if average.is_some() { "AverageValue" } else { "Value" };
                object(vec![
                    ("describedObject", at(o, "/target")),
                    ("metric", metric(o, "/selector")),
                    (
                        "target",
                        Some(object(vec![
                            ("type", Some(json!(type_))),
                            ("value", quantity(o, "/targetValue")),
                            ("averageValue", average),
                        ])),
                    ),
                ])
            }),
        ),
        (
            "pods",
            m.get("pods").map(|p| {
                let target = json!({"type": "AverageValue", "averageValue": quantity(p, "/targetAverageValue")});
                object(vec![("metric", metric(p, "/selector")), ("target", Some(target))])
            }),
        ),
        ("resource", m.get("resource").map(|r| resource(r, false))),
        ("containerResource", m.get("containerResource").map(|r| resource(r, true))),
        (
            "external",
            m.get("external").map(|e| {
                let value = at(e, "/targetValue");
                let type_ = if value.is_some() { "Value" } else { "AverageValue" };
                object(vec![
                    ("metric", metric(e, "/metricSelector")),
                    (
                        "target",
                        Some(object(vec![
                            ("type", Some(json!(type_))),
                            ("value", value),
                            ("averageValue", at(e, "/targetAverageValue")),
                        ])),
                    ),
                ])
            }),
        ),
    ])
}

/// A v2 `MetricStatus` as v1's.
pub fn status_to_v1(m: &Value) -> Value {
    let resource = |r: &Value, container: bool| {
        object(vec![
            ("name", at(r, "/name")),
            ("currentAverageUtilization", at(r, "/current/averageUtilization")),
            ("currentAverageValue", quantity(r, "/current/averageValue")),
            ("container", if container { Some(at(r, "/container").unwrap_or_else(|| json!(""))) } else { None }),
        ])
    };
    object(vec![
        ("type", Some(at(m, "/type").unwrap_or_else(|| json!("")))),
        (
            "object",
            m.get("object").map(|o| {
                object(vec![
                    ("target", at(o, "/describedObject")),
                    ("metricName", at(o, "/metric/name")),
                    ("currentValue", quantity(o, "/current/value")),
                    ("selector", at(o, "/metric/selector")),
                    ("averageValue", at(o, "/current/averageValue")),
                ])
            }),
        ),
        (
            "pods",
            m.get("pods").map(|p| {
                object(vec![
                    ("metricName", at(p, "/metric/name")),
                    ("currentAverageValue", quantity(p, "/current/averageValue")),
                    ("selector", at(p, "/metric/selector")),
                ])
            }),
        ),
        ("resource", m.get("resource").map(|r| resource(r, false))),
        ("containerResource", m.get("containerResource").map(|r| resource(r, true))),
        (
            "external",
            m.get("external").map(|e| {
                object(vec![
                    ("metricName", at(e, "/metric/name")),
                    ("metricSelector", at(e, "/metric/selector")),
                    ("currentValue", quantity(e, "/current/value")),
                    ("currentAverageValue", at(e, "/current/averageValue")),
                ])
            }),
        ),
    ])
}

/// A v1 `MetricStatus` (from the annotation) as v2's.
pub fn status_to_v2(m: &Value) -> Value {
    let resource = |r: &Value, container: bool| {
        object(vec![
            ("name", at(r, "/name")),
            ("container", if container { at(r, "/container") } else { None }),
            (
                "current",
                Some(object(vec![
                    ("averageUtilization", at(r, "/currentAverageUtilization")),
                    ("averageValue", quantity(r, "/currentAverageValue")),
                ])),
            ),
        ])
    };
    let metric =
        |v: &Value, selector: &str| Some(object(vec![("name", at(v, "/metricName")), ("selector", at(v, selector))]));
    object(vec![
        ("type", Some(at(m, "/type").unwrap_or_else(|| json!("")))),
        (
            "object",
            m.get("object").map(|o| {
                let current =
                    object(vec![("value", quantity(o, "/currentValue")), ("averageValue", at(o, "/averageValue"))]);
                object(vec![
                    ("describedObject", at(o, "/target")),
                    ("metric", metric(o, "/selector")),
                    ("current", Some(current)),
                ])
            }),
        ),
        (
            "pods",
            m.get("pods").map(|p| {
                let current = json!({"averageValue": quantity(p, "/currentAverageValue")});
                object(vec![("metric", metric(p, "/selector")), ("current", Some(current))])
            }),
        ),
        ("resource", m.get("resource").map(|r| resource(r, false))),
        ("containerResource", m.get("containerResource").map(|r| resource(r, true))),
        (
            "external",
            m.get("external").map(|e| {
                let current = object(vec![
                    ("value", quantity(e, "/currentValue")),
                    ("averageValue", at(e, "/currentAverageValue")),
                ]);
                object(vec![("metric", metric(e, "/metricSelector")), ("current", Some(current))])
            }),
        ),
    ])
}

/// Field names in the order Go declares them, for every struct the annotations hold
/// (a key's rank only matters against the keys of the same struct).
const GO_ORDER: &[&str] = &[
    "type",
    "status",
    "lastTransitionTime",
    "reason",
    "message",
    "object",
    "pods",
    "resource",
    "containerResource",
    "external",
    "target",
    "kind",
    "name",
    "apiVersion",
    "metricName",
    "metricSelector",
    "targetValue",
    "currentValue",
    "targetAverageUtilization",
    "currentAverageUtilization",
    "targetAverageValue",
    "currentAverageValue",
    "selector",
    "averageValue",
    "container",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "ScaleUp",
    "ScaleDown",
    "StabilizationWindowSeconds",
    "SelectPolicy",
    "Policies",
    "Tolerance",
    "Type",
    "Value",
    "PeriodSeconds",
];

/// `v` as Go's `json.Marshal` writes the struct it came from: fields in declaration
/// order (map keys, such as `matchLabels`' own, sorted).
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let rank = |k: &str| GO_ORDER.iter().position(|o| *o == k).unwrap_or(GO_ORDER.len());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `(v2 key, internal Go field)` of the behavior, which kube keeps in the annotation in
/// its internal form: Go's field names, absent pointers as `null`.
const BEHAVIOR_FIELDS: &[(&str, &str)] = &[
    ("stabilizationWindowSeconds", "StabilizationWindowSeconds"),
    ("selectPolicy", "SelectPolicy"),
    ("policies", "Policies"),
    ("tolerance", "Tolerance"),
];
const POLICY_FIELDS: &[(&str, &str)] = &[("type", "Type"), ("value", "Value"), ("periodSeconds", "PeriodSeconds")];

/// A v2 `behavior` as the annotation holds it.
pub fn behavior_to_internal(b: &Value) -> Value {
    let rules = |r: Option<&Value>| match r.filter(|r| r.is_object()) {
        None => Value::Null,
        Some(r) => {
            let mut out = Map::new();
            for (v2, go) in BEHAVIOR_FIELDS {
                let value = match (*v2, r.get(*v2)) {
                    ("policies", Some(Value::Array(policies))) => Value::Array(
                        policies
                            .iter()
                            .map(|p| rename(p, POLICY_FIELDS.iter().map(|(a, b)| (*a, *b)), false))
                            .collect(),
                    ),
                    (_, value) => value.cloned().unwrap_or(Value::Null),
                };
                out.insert((*go).to_owned(), value);
            }
            Value::Object(out)
        }
    };
    json!({"ScaleUp": rules(b.get("scaleUp")), "ScaleDown": rules(b.get("scaleDown"))})
}

/// The annotation's behavior as v2's; `None` when it sets nothing.
pub fn behavior_from_internal(b: &Value) -> Option<Value> {
    let rules = |r: Option<&Value>| -> Option<Value> {
        let r = r.filter(|r| r.is_object())?;
        let mut out = rename(r, BEHAVIOR_FIELDS.iter().map(|(a, b)| (*b, *a)), true);
        if let Some(Value::Array(policies)) = out.get_mut("policies") {
            for p in policies.iter_mut() {
                *p = rename(p, POLICY_FIELDS.iter().map(|(a, b)| (*b, *a)), true);
            }
        }
        Some(out)
    };
    let out = object(vec![("scaleUp", rules(b.get("ScaleUp"))), ("scaleDown", rules(b.get("ScaleDown")))]);
    out.as_object().is_some_and(|m| !m.is_empty()).then_some(out)
}

/// `v`'s fields renamed by `(from, to)`; nulls dropped when `drop_null`.
fn rename<'a>(v: &Value, names: impl Iterator<Item = (&'a str, &'a str)>, drop_null: bool) -> Value {
    let mut out = Map::new();
    for (from, to) in names {
        match v.get(from) {
            Some(Value::Null) | None if drop_null => {}
            value => _ = out.insert(to.to_owned(), value.cloned().unwrap_or(Value::Null)),
        }
    }
    Value::Object(out)
}
