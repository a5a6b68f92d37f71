//! A custom resource's schemas as kube-apiserver publishes them (apiextensions-apiserver's
//! OpenAPI builder): the CRD version's `openAPIV3Schema` reduced to its structural part
//! and unfolded, with TypeMeta's `apiVersion` and `kind` and a reference to ObjectMeta
//! added, under the kind's REST-friendly name (`dev.apisix-canary.v1beta1.Canary`), next
//! to its list kind's schema.

use serde_json::{Map, Value, json};

use super::builtin::{COMPONENTS, meta};
use crate::resources::Resource;

/// kube's name of `group/version.kind`: the group reversed (`io.k8s...`, `dev.apisix-canary...`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let group: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", group.join("."))
}

/// The descriptions kube-apiserver gives an embedded resource's type fields (they differ
/// from TypeMeta's own).
const EMBEDDED_API_VERSION: &str = "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND: &str = "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Adds `r`'s schemas at `version` (the kind's, its list's, the metadata's) to
/// `components`; returns the kind's schema name.
pub fn add(r: &Resource, version: &str, crd: &Value, components: &mut Map<String, Value>) -> String {
    let meta = meta();
    let gvk = |kind: &str| json!([{"group": r.group, "version": version, "kind": kind}]);
    let name = schema_name(&r.group, version, &r.kind);
    let schema = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|versions| versions.iter().find(|v| v["name"] == version))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"));
    let mut kind = match schema {
        Some(schema) => {
            let mut schema = structural(schema);
            schema["properties"]["apiVersion"] = meta.api_version.clone();
            schema["properties"]["kind"] = meta.kind.clone();
            schema["properties"]["metadata"] = object_meta(&meta.object_meta);
            schema
        }
        // Without a schema kube publishes a bare object: no fields to explain.
        None => json!({"type": "object"}),
    };
    kind["x-kubernetes-group-version-kind"] = gvk(&r.kind);
    components.insert(name.clone(), kind);

    let list_kind = crd
        .pointer("/spec/names/listKind")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{}List", r.kind), str::to_owned);
    let items_description = format!(
        "List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
        r.plural
    );
    let list = json!({
        "description": format!("{list_kind} is a list of {}", r.kind),
        "required": ["items"],
        "properties": {
            "apiVersion": meta.api_version,
            "items": {"type": "array", "items": {"$ref": format!("{COMPONENTS}{name}")}, "description": items_description},
            "kind": meta.kind,
            "metadata": {
                "allOf": [{"$ref": format!("{COMPONENTS}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}],
                "description": meta.list_meta,
            },
        },
        "x-kubernetes-group-version-kind": gvk(&list_kind),
    });
    components.insert(schema_name(&r.group, version, &list_kind), list);
    for (n, s) in &meta.components {
        components.entry(n.clone()).or_insert_with(|| s.clone());
    }
    name
}

fn object_meta(description: &str) -> Value {
    json!({
        "allOf": [{"$ref": format!("{COMPONENTS}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}],
        "description": description,
    })
}

/// What kube-apiserver keeps of a CRD schema (its structural form: no `example`,
/// `externalDocs`, `$schema`, ...), unfolded: an `x-kubernetes-int-or-string` field gets
/// its `anyOf: [integer, string]`, an `x-kubernetes-embedded-resource` object its
/// `apiVersion`, `kind` and `metadata`.
fn structural(schema: &Value) -> Value {
    const KEPT: &[&str] = &[
        "type",
        "title",
        "description",
        "default",
        "nullable",
        "format",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
    ];
    let Some(object) = schema.as_object() else { return schema.clone() };
    let mut out = Map::new();
    for (key, value) in object {
        let value = match key.as_str() {
            "properties" => match value.as_object() {
                Some(p) => Value::Object(p.iter().map(|(k, v)| (k.clone(), structural(v))).collect()),
                None => continue,
            },
            "items" | "not" => structural(value),
            "additionalProperties" if value.is_object() => structural(value),
            "allOf" | "anyOf" | "oneOf" => match value.as_array() {
                Some(list) => Value::Array(list.iter().map(structural).collect()),
                None => continue,
            },
            k if KEPT.contains(&k) || k.starts_with("x-kubernetes-") || k == "additionalProperties" => value.clone(),
            _ => continue,
        };
        out.insert(key.clone(), value);
    }
    if out.get("x-kubernetes-int-or-string") == Some(&json!(true)) && !has_int_or_string_any_of(&out) {
        let any_of = json!([{"type": "integer"}, {"type": "string"}]);
        match out.get_mut("anyOf") {
            None => _ = out.insert("anyOf".into(), any_of),
            Some(_) => {
                let all_of = out.entry("allOf").or_insert_with(|| json!([]));
                if let Some(list) = all_of.as_array_mut() {
                    list.insert(0, json!({"anyOf": any_of}));
                }
            }
        }
    }
    if out.get("x-kubernetes-embedded-resource") == Some(&json!(true)) {
        let properties = out.entry("properties").or_insert_with(|| json!({}));
        properties["apiVersion"] = json!({"type": "string", "description": EMBEDDED_API_VERSION});
        properties["kind"] = json!({"type": "string", "description": EMBEDDED_KIND});
        properties["metadata"] = object_meta(&meta().object_meta);
        let required = out.entry("required").or_insert_with(|| json!([]));
        if let Some(required) = required.as_array_mut() {
            for field in ["kind", "apiVersion"] {
                if !required.iter().any(|r| r == field) {
                    required.push(json!(field));
                }
            }
        }
    }
    Value::Object(out)
}

/// `anyOf: [{type: integer}, {type: string}]` (possibly with more in each), the pattern
/// an int-or-string field may already spell out.
fn has_int_or_string_any_of(schema: &Map<String, Value>) -> bool {
    let types = |list: &Value| -> Vec<String> {
        list.as_array().into_iter().flatten().filter_map(|a| a["type"].as_str().map(str::to_owned)).collect()
    };
    let is_pattern = |list: &Value| types(list) == ["integer", "string"];
    schema.get("anyOf").is_some_and(is_pattern)
        || schema.get("allOf").and_then(|a| a.get(0)).and_then(|first| first.get("anyOf")).is_some_and(is_pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A widget.",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "description": "What the widget should be.",
                            "example": {"size": 3},
                            "properties": {
                                "size": {"x-kubernetes-int-or-string": true, "description": "How big."},
                                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                    "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                    },
                }}}],
            },
        })
    }

    #[test]
    fn crd_schema_as_kube_publishes_it() {
        let crd = crd();
        let r = Resource::from_crd(&crd).unwrap();
        let mut components = Map::new();
        let name = add(&r, "v1", &crd, &mut components);
        assert_eq!(name, "com.example.v1.Widget");
        let widget = &components["com.example.v1.Widget"];
        assert_eq!(
            widget["x-kubernetes-group-version-kind"],
            json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
        );
        assert_eq!(widget["description"], "A widget.");
        assert_eq!(widget["properties"]["spec"]["description"], "What the widget should be.");
        assert!(widget["properties"]["spec"].get("example").is_none(), "not structural: dropped");
        let size = &widget["properties"]["spec"]["properties"]["size"];
        assert_eq!(size["anyOf"], json!([{"type": "integer"}, {"type": "string"}]));
        assert_eq!(size["description"], "How big.");
        let metadata = &widget["properties"]["metadata"];
        assert_eq!(
            metadata["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(metadata["description"].as_str().unwrap().starts_with("Standard object's metadata."));
        assert!(widget["properties"]["kind"]["description"].as_str().unwrap().starts_with("Kind is a string value"));
        let template = &widget["properties"]["spec"]["properties"]["template"];
        assert_eq!(template["properties"]["kind"]["description"], EMBEDDED_KIND);
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        let list = &components["com.example.v1.WidgetList"];
        assert_eq!(list["properties"]["items"]["items"]["$ref"], "#/components/schemas/com.example.v1.Widget");
        assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "WidgetList");
        for n in ["ObjectMeta", "ListMeta", "ManagedFieldsEntry"] {
            assert!(components.contains_key(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{n}")), "{n}");
        }
    }

    #[test]
    fn names_reverse_the_group() {
        assert_eq!(schema_name("apisix-canary.dev", "v1beta1", "Canary"), "dev.apisix-canary.v1beta1.Canary");
        assert_eq!(schema_name("apisix.apache.org", "v2", "ApisixRoute"), "org.apache.apisix.v2.ApisixRoute");
        assert_eq!(schema_name("local", "v1", "Thing"), "local.v1.Thing");
    }
}
