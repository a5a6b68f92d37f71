//! Server-side printing (`meta.k8s.io/v1 Table`), so `kubectl get` shows the columns a
//! real cluster shows: kube-apiserver's printers for the built-in kinds, and a CRD's
//! `additionalPrinterColumns` for custom resources.

use serde_json::{Value, json};

mod builtin;
mod event;
mod hpa;

use self::builtin::builtin;
use super::resources::Resource;

/// How a client asked to see objects (`Accept: application/json;as=...;g=meta.k8s.io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Object,
    /// A `Table` of printer columns (`kubectl get`), each row carrying what it says.
    Table(Include),
    /// Their metadata only (`PartialObjectMetadata`, as metadata informers ask).
    Metadata,
}

/// What each row of a Table carries as its `object` (`?includeObject=`, kube's
/// `TableOptions`): kubectl asks for `Object` to sort by a field (`--sort-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Include {
    /// No object (`null`).
    None,
    /// The object's `PartialObjectMetadata`, kube-apiserver's default.
    #[default]
    Metadata,
    /// The whole object, with its apiVersion and kind.
    Object,
}

impl Include {
    /// `?includeObject=`: absent or empty is `Metadata`; an unknown value is refused in
    /// kube-apiserver's words (a 400).
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.unwrap_or_default() {
            "None" => Ok(Include::None),
            "" | "Metadata" => Ok(Include::Metadata),
            "Object" => Ok(Include::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// The shape an `Accept` header asks for (its first media type decides), with what a
/// Table's rows carry from `?includeObject=`, read only when a Table is asked for (as
/// kube-apiserver reads it).
pub fn wanted(accept: &str, include: Option<&str>) -> Result<Shape, String> {
    let first = accept.split(',').next().unwrap_or_default();
    Ok(if first.contains("as=Table") {
        Shape::Table(Include::parse(include)?)
    } else if first.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Object
    })
}

/// `o` as a `meta.k8s.io/v1 PartialObjectMetadata`.
pub fn partial(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or_default()})
}

/// A row's `object`: what `include` asks for of `o`, an object of resource `r` at `version`.
fn row_object(r: &Resource, version: &str, o: &Value, include: Include) -> Value {
    match include {
        Include::None => Value::Null,
        Include::Metadata => partial(o),
        Include::Object => {
            // As kube-apiserver converts each row's object to the version asked for: a
            // client decodes it by its kind (kubectl's --sort-by reads it as unstructured).
            let mut full = o.clone();
            if let Some(fields) = full.as_object_mut() {
                fields.insert("apiVersion".into(), json!(r.api_version(version)));
                fields.insert("kind".into(), json!(r.kind));
            }
            full
        }
    }
}

/// `items` as a `PartialObjectMetadataList`.
pub fn partial_list(items: &[Value], resource_version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "items": items.iter().map(partial).collect::<Vec<_>>(),
    })
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// kube's `HumanDuration`: `45s`, `3m20s`, `5h`, `2d3h`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn age(object: &Value) -> String {
    let created = object.pointer("/metadata/creationTimestamp").and_then(Value::as_str);
    let parsed = created.and_then(|c| c.parse::<k8s_openapi::jiff::Timestamp>().ok());
    match parsed {
        Some(t) => human_age(k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

/// A CRD's printer columns for `version`: (name, type, priority, jsonPath).
fn crd_columns(r: &Resource, version: &str) -> Vec<(String, String, u8, String)> {
    let versions =
        r.crd.as_ref().and_then(|c| c.pointer("/spec/versions")).and_then(Value::as_array).cloned().unwrap_or_default();
    let v = versions.iter().find(|v| v["name"] == version);
    v.and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                text(c.get("name")),
                text(c.get("type")),
                c["priority"].as_u64().unwrap_or(0) as u8,
                text(c.get("jsonPath")),
            )
        })
        .collect()
}

/// The values at a simple JSONPath: `.status.phase`, `.spec.http[].match.hosts`
/// (`[]` and `[*]` visit every element).
fn walk<'a>(v: &'a Value, parts: &[&str], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = parts.split_first() else {
        out.push(v);
        return;
    };
    let (field, each) = match first.strip_suffix("[]").or_else(|| first.strip_suffix("[*]")) {
        Some(field) => (field, true),
        None => (*first, false),
    };
    let Some(next) = (if field.is_empty() { Some(v) } else { v.get(field) }) else { return };
    if each {
        for item in next.as_array().into_iter().flatten() {
            walk(item, rest, out);
        }
    } else {
        walk(next, rest, out);
    }
}

/// A printer-column cell: one value as is, several (or an array) as JSON, dates as ages.
fn cell(o: &Value, path: &str, type_: &str) -> Value {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut found = Vec::new();
    walk(o, &parts, &mut found);
    let value = match found.as_slice() {
        [] => return Value::Null,
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    };
    match (&value, type_) {
        (Value::String(t), "date") => t
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map(|t| json!(human_age(k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second())))
            .unwrap_or(value),
        (Value::Array(_) | Value::Object(_), _) => json!(serde_json::to_string(&value).unwrap_or_default()),
        _ => value,
    }
}

/// The Table of `objects` of resource `r` at `version`, each row with what `include` asks.
pub fn table(r: &Resource, version: &str, objects: &[Value], resource_version: &str, include: Include) -> Value {
    let (columns, rows): (Vec<Value>, Vec<Value>) = if r.crd.is_some() {
        let custom = crd_columns(r, version);
        let mut columns = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ];
        if custom.is_empty() {
            columns.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
        }
        for (name, type_, priority, _) in &custom {
            columns.push(json!({"name": name, "type": type_, "format": "", "description": "", "priority": priority}));
        }
        let rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![json!(text(o.pointer("/metadata/name")))];
                if custom.is_empty() {
                    cells.push(json!(age(o)));
                }
                cells.extend(custom.iter().map(|(_, type_, _, path)| cell(o, path, type_)));
                json!({"cells": cells, "object": row_object(r, version, o, include)})
            })
            .collect();
        (columns, rows)
    } else {
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        for o in objects {
            let (cols, cells) = builtin(&r.kind, o).unwrap_or_else(|| {
                (
                    vec![("Name", "string", 0), ("Age", "string", 0)],
                    vec![json!(text(o.pointer("/metadata/name"))), json!(age(o))],
                )
            });
            if columns.is_empty() {
                columns = cols
                    .iter()
                    .map(|(n, t, p)| {
                        let format = if *n == "Name" { "name" } else { "" };
                        json!({"name": n, "type": t, "format": format, "description": "", "priority": p})
                    })
                    .collect();
            }
            rows.push(json!({"cells": cells, "object": row_object(r, version, o, include)}));
        }
        if columns.is_empty() {
            let cols = builtin(&r.kind, &json!({}))
                .map(|(c, _)| c)
                .unwrap_or_else(|| vec![("Name", "string", 0), ("Age", "string", 0)]);
            columns = cols
                .iter()
                .map(|(n, t, p)| json!({"name": n, "type": t, "format": "", "description": "", "priority": p}))
                .collect();
        }
        (columns, rows)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86_400, "3d"),
        ] {
            assert_eq!(human_age(s), want);
        }
    }

    #[test]
    fn the_first_media_type_decides_the_shape_and_include_object_the_rows() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        assert_eq!(wanted(table, None), Ok(Shape::Table(Include::Metadata)));
        assert_eq!(wanted(table, Some("")), Ok(Shape::Table(Include::Metadata)));
        assert_eq!(wanted(table, Some("Object")), Ok(Shape::Table(Include::Object)));
        assert_eq!(wanted(table, Some("None")), Ok(Shape::Table(Include::None)));
        assert_eq!(wanted(table, Some("object")), Err("unrecognized includeObject value: \"object\"".into()));
        let metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(wanted(metadata, None), Ok(Shape::Metadata));
        assert_eq!(wanted("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", None), Ok(Shape::Metadata));
        // Read only for a Table, as kube-apiserver reads TableOptions.
        assert_eq!(wanted("application/json", Some("bogus")), Ok(Shape::Object));
        assert_eq!(wanted("", None), Ok(Shape::Object));
    }

    #[test]
    fn rows_carry_the_whole_object_only_when_asked() {
        let pods = Resource {
            group: String::new(),
            versions: vec!["v1".into()],
            storage_version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
            singular: "pod".into(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced: true,
            status: true,
            scale: None,
            crd: None,
        };
        // A list's items as stored: no apiVersion or kind of their own.
        let pod = json!({"metadata": {"name": "web-1", "namespace": "test"},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}});
        let row = |include| table(&pods, "v1", std::slice::from_ref(&pod), "7", include)["rows"][0]["object"].clone();
        let full = row(Include::Object);
        assert_eq!((&full["apiVersion"], &full["kind"]), (&json!("v1"), &json!("Pod")));
        assert_eq!(full["status"]["startTime"], "2026-01-01T00:00:00Z", "the field kubectl sorts by");
        let metadata = row(Include::Metadata);
        assert_eq!(metadata["kind"], "PartialObjectMetadata");
        assert_eq!(metadata["metadata"]["name"], "web-1");
        assert!(metadata.get("status").is_none());
        assert_eq!(row(Include::None), Value::Null);
    }
}
