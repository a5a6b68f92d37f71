//! Flagger's YAML as written: every field of Flagger's Go structs has a row in README's
//! "Porting from Flagger" (`same`, `different` or `refused`), and every Canary,
//! MetricTemplate and AlertProvider of Flagger's APISIX tutorial and usage guides
//! (tests/fixtures/flagger/docs, made by generate.py there) goes through what
//! kube-apiserver would do with it here: our CRD's schema (strict about unknown fields,
//! nulls dropped where not nullable), then our validating webhook. A fixture is
//! accepted exactly when none of its fields is refused in the table, and a denial names
//! every refused field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apisix_canary::manifests::{self, Target};
use apisix_canary::metrics::Metrics;
use apisix_canary::server::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};

const KINDS: [&str; 3] = ["Canary", "MetricTemplate", "AlertProvider"];
const OURS: &str = "apisix-canary.dev/v1beta1";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One row of a kind's table: a field (with the values it is about, for a value row).
#[derive(Debug)]
struct Row {
    kind: String,
    path: String,
    values: Option<Vec<String>>,
    here: String,
}

impl Row {
    /// Whether the row is about `path` (normalized, `[]` for list items) or a field
    /// above it (a map's keys, an object taken whole).
    fn covers(&self, path: &str) -> bool {
        path == self.path
            || path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
    }
}

/// The section's rows, by the `### <Kind>` table they are in.
fn readme_rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("\n## Porting from Flagger\n").expect("README has a \"Porting from Flagger\" section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut rows = Vec::new();
    let mut kind = None;
    for line in section.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            kind = KINDS.iter().find(|k| **k == heading.trim()).map(|k| (*k).to_owned());
            continue;
        }
        let Some(kind) = &kind else { continue };
        let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").map(str::trim).collect();
        if !line.starts_with('|') || cells[0] == "field" || cells[0].starts_with("---") {
            continue;
        }
        assert_eq!(cells.len(), 3, "a row of field | here | how / why: {line}");
        let here = cells[1].to_owned();
        assert!(
            ["same", "different", "refused"].contains(&here.as_str()),
            "here is same, different or refused: {line}"
        );
        assert!(here == "same" || !cells[2].is_empty(), "a different or refused row says how or why: {line}");
        let fields: Vec<&str> = cells[0].split('`').skip(1).step_by(2).collect();
        assert!(!fields.is_empty(), "no `field` in {line}");
        for field in fields {
            let (path, values) = match field.split_once(": ") {
                Some((path, values)) => (path, Some(values.split(", ").map(str::to_owned).collect())),
                None => (field, None),
            };
            assert!(path.starts_with("spec."), "{path}: a path under spec");
            rows.push(Row { kind: kind.clone(), path: path.to_owned(), values, here: here.clone() });
        }
    }
    rows
}

/// The field row about `path` of `kind`: the deepest that covers it.
fn row_for<'a>(rows: &'a [Row], kind: &str, path: &str) -> Option<&'a Row> {
    rows.iter().filter(|r| r.kind == kind && r.values.is_none() && r.covers(path)).max_by_key(|r| r.path.len())
}

#[test]
fn every_field_of_flaggers_structs_has_a_row() {
    let rows = readme_rows();
    let fields = std::fs::read_to_string(root().join("tests/fixtures/flagger/fields.txt")).unwrap();
    let mut missing = Vec::new();
    let mut count = 0;
    for line in fields.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (kind, path) = line.split_once(' ').unwrap();
        assert!(KINDS.contains(&kind), "{line}");
        count += 1;
        if row_for(&rows, kind, path).is_none() {
            missing.push(line);
        }
    }
    assert!(count > 100, "fields.txt lists Flagger's fields ({count})");
    assert!(missing.is_empty(), "README's \"Porting from Flagger\" has no row for: {missing:#?}");
    // And no row names a field Flagger does not have (a typo would cover nothing).
    let known: Vec<(&str, &str)> = fields.lines().filter_map(|l| l.split_once(' ')).collect();
    for r in &rows {
        let covers_something = known.iter().any(|(k, p)| *k == r.kind && (r.covers(p) || p.starts_with(&r.path)));
        assert!(covers_something, "the row {} of {} is no field of Flagger's", r.path, r.kind);
    }
}

#[test]
fn every_template_variable_has_a_row() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("### Template variables").expect("a table of the template variables");
    let table = &readme[start..readme[start..].find("\n## ").map_or(readme.len(), |i| start + i)];
    for v in apisix_canary::api::metric_template::VARIABLES {
        assert!(table.contains(&format!("`{{{{ {v} }}}}`")), "no row for {{{{ {v} }}}}");
    }
    assert!(table.contains("`{{ variables.<key> }}`"));
}

/// Every leaf under `spec`: (the path with indices, the path with `[]`, the value).
fn leaves(value: &Value, concrete: &str, normal: &str, out: &mut Vec<(String, String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(v, &format!("{concrete}.{k}"), &format!("{normal}.{k}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, &format!("{concrete}[{i}]"), &format!("{normal}[]"), out);
            }
        }
        _ => out.push((concrete.to_owned(), normal.to_owned(), value.clone())),
    }
}

/// What kube-apiserver does with a custom resource against a structural schema: nulls
/// dropped unless nullable, unknown fields refused (kubectl's default strict field
/// validation), types and required fields checked. The object as stored, or the errors.
fn schema_check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) -> Option<Value> {
    if value.is_null() {
        return schema.get("nullable").and_then(Value::as_bool).unwrap_or(false).then_some(Value::Null);
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: Invalid value: {value}: must be an integer or a string"));
        }
        return Some(value.clone());
    }
    let want = schema.get("type").and_then(Value::as_str);
    let ok = match want {
        None => preserve,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some(other) => panic!("{path}: schema type {other}"),
    };
    if !ok {
        errors.push(format!("{path}: Invalid value: {value}: {path} in body must be of type {}", want.unwrap_or("?")));
        return None;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut out = Map::new();
            for (k, v) in map {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                let sub = props.and_then(|p| p.get(k)).or(additional);
                match sub {
                    Some(sub) => {
                        if let Some(kept) = schema_check(v, sub, &child, errors) {
                            out.insert(k.clone(), kept);
                        }
                    }
                    None if preserve => {
                        out.insert(k.clone(), v.clone());
                    }
                    None => errors.push(format!("strict decoding error: unknown field \"{child}\"")),
                }
            }
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !out.contains_key(key) {
                    let child = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
                    errors.push(format!("{child}: Required value"));
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let sub = schema.get("items");
            let kept = items.iter().enumerate().filter_map(|(i, v)| match sub {
                Some(sub) => schema_check(v, sub, &format!("{path}[{i}]"), errors),
                None => Some(v.clone()),
            });
            Some(Value::Array(kept.collect()))
        }
        _ => Some(value.clone()),
    }
}

fn our_schema(kind: &str) -> Value {
    let crd = manifests::crds(&Target::default()).into_iter().find(|c| c.spec.names.kind == kind).unwrap();
    let version = crd.spec.versions.iter().find(|v| v.name == "v1beta1").unwrap();
    serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap()
}

/// The validating webhook's answer to a CREATE of `object`, as kube-apiserver asks.
async fn admit(object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap();
    let resource = format!("{}s", kind.to_lowercase()).replace("canarys", "canaries");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b5c1f0e-0000-4000-8000-00000000f1a9",
            "kind": {"group": "apisix-canary.dev", "version": "v1beta1", "kind": kind},
            "resource": {"group": "apisix-canary.dev", "version": "v1beta1", "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"].as_str().unwrap_or("default"),
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "dryRun": false
        }
    });
    let router = Router::new(Arc::new(Metrics::new()));
    let body = Full::new(Bytes::from(serde_json::to_vec(&review).unwrap()));
    let res = router.route(http::Request::post("/validate/canaries").body(body).unwrap()).await;
    assert_eq!(res.status(), http::StatusCode::OK);
    serde_json::from_slice::<Value>(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()["response"].clone()
}

/// What one fixture should come to: the refused fields' paths (with indices) by the
/// table, and those its `# expect: refused PATH -- why` lines add.
fn expected_refusals(rows: &[Row], kind: &str, name: &str, spec: &Value, text: &str) -> BTreeSet<String> {
    let mut used = Vec::new();
    leaves(spec, "spec", "spec", &mut used);
    let mut refused = BTreeSet::new();
    for (concrete, normal, value) in &used {
        let row = row_for(rows, kind, normal)
            .unwrap_or_else(|| panic!("{name}: README's \"Porting from Flagger\" has no {kind} row for {normal}"));
        if row.here == "refused" {
            // The refused field itself: as many segments of the concrete path as the row has.
            let depth = row.path.matches(['.', '[']).count();
            let mut cut = concrete.as_str();
            while cut.matches(['.', '[']).count() > depth {
                cut = &cut[..cut.rfind(['.', '[']).unwrap()];
            }
            refused.insert(cut.to_owned());
        }
        let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        let value_row = rows
            .iter()
            .find(|r| r.kind == kind && r.path == *normal && r.values.as_ref().is_some_and(|v| v.contains(&shown)));
        if value_row.is_some_and(|r| r.here == "refused") {
            refused.insert(concrete.clone());
        }
    }
    for line in text.lines().filter_map(|l| l.strip_prefix("# expect: refused ")) {
        let (path, why) = line.split_once(" -- ").unwrap_or_else(|| panic!("{name}: `# expect: refused PATH -- why`"));
        assert!(!why.trim().is_empty(), "{name}: say why {path} is refused");
        refused.insert(path.to_owned());
    }
    refused
}

fn fixtures() -> Vec<(String, String)> {
    let dir = root().join("tests/fixtures/flagger/docs");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| (file_name(&p), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test]
async fn flaggers_examples_are_accepted_unless_a_field_is_refused_and_then_named() {
    let rows = readme_rows();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 40, "the docs' examples ({})", fixtures.len());
    let mut outcomes = Vec::new();
    for (name, text) in &fixtures {
        assert!(text.starts_with("# Source: fluxcd/flagger docs/gitbook/"), "{name}: first line names its source");
        let mut object: Value = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        assert!(KINDS.contains(&kind.as_str()), "{name}: kind {kind}");
        let written = object["apiVersion"].as_str().unwrap_or_default();
        assert!(written.starts_with("flagger.app/"), "{name}: Flagger's apiVersion as written, not {written}");
        let expected = expected_refusals(&rows, &kind, name, &object["spec"], text);

        object["apiVersion"] = json!(OURS);
        let mut problems = Vec::new();
        // apiVersion, kind and metadata are the API server's own: the schema is the spec's.
        let spec_schema = our_schema(&kind)["properties"]["spec"].clone();
        let spec = schema_check(&object["spec"], &spec_schema, "spec", &mut problems);
        let mut stored = object.clone();
        stored["spec"] = spec.unwrap_or(Value::Null);
        let message = if problems.is_empty() {
            let response = admit(&stored).await;
            match response["allowed"].as_bool() {
                Some(true) => None,
                _ => Some(response["status"]["message"].as_str().unwrap_or_default().to_owned()),
            }
        } else {
            Some(problems.join(", "))
        };
        match (&message, expected.is_empty()) {
            (None, true) => {}
            (Some(m), true) => panic!("{name}: refused, but no field of it is refused in README's table: {m}"),
            (None, false) => panic!("{name}: accepted, but README refuses {expected:?}"),
            (Some(m), false) => {
                for path in &expected {
                    assert!(m.contains(path.as_str()), "{name}: the denial does not name {path}: {m}");
                }
            }
        }
        outcomes.push((name.clone(), message.is_some()));
    }
    // Both outcomes occur: the tutorial's objects port, other providers' templates do not.
    let refused: Vec<&str> = outcomes.iter().filter(|(_, r)| *r).map(|(n, _)| n.as_str()).collect();
    assert!(!refused.contains(&"apisix-progressive-delivery-2.yaml"), "the tutorial's Canary ports");
    assert!(refused.contains(&"metrics-13.yaml"), "Datadog's template is refused: {refused:?}");
}
