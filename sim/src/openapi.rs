//! Just enough OpenAPI v3 for kubectl: the discovery root and, per group-version, the
//! PATCH operations with their `x-kubernetes-group-version-kind` and the
//! `fieldValidation` parameter, so kubectl leaves validation to the server instead of
//! downloading schemas.

use serde_json::{Map, Value, json};

use super::resources::Resources;

/// `api/v1`, `apis/apps/v1`, ...
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `GET /openapi/v3`
pub fn root(resources: &Resources) -> Value {
    let mut paths = Map::new();
    for r in resources.snapshot() {
        for v in &r.versions {
            let path = gv_path(&r.group, v);
            let hash = format!("{:016x}", fxhash(&path));
            paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}));
        }
    }
    json!({"paths": paths})
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// `GET /openapi/v3/<gv path>`, or `None` for an unknown group-version.
pub fn group_version(resources: &Resources, gv: &str) -> Option<Value> {
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in resources.snapshot() {
        for v in r.versions.iter().filter(|v| gv_path(&r.group, v) == gv) {
            let gvk = json!({"group": r.group, "version": v, "kind": r.kind});
            let base = if r.namespaced {
                format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
            } else {
                format!("/{gv}/{}/{{name}}", r.plural)
            };
            let op = json!({
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            });
            paths.insert(base, json!({"patch": op}));
            let schema_name =
                format!("{}.{v}.{}", if r.group.is_empty() { "io.k8s.api.core" } else { &r.group }, r.kind);
            schemas.insert(schema_name, json!({"type": "object", "x-kubernetes-group-version-kind": [gvk]}));
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
