//! The built-in kinds' schemas: k8s-openapi's, generated from Kubernetes' own OpenAPI
//! (descriptions, formats, `x-kubernetes-int-or-string` included) and named as
//! kube-apiserver names them (`io.k8s.api.apps.v1.Deployment`), taken through schemars
//! and rewritten into the OpenAPI 3.0 that kube-apiserver publishes and kubectl reads.

use std::sync::OnceLock;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

/// Where OpenAPI v3 documents keep their schemas, as `$ref`s name them.
pub const COMPONENTS: &str = "#/components/schemas/";

/// Registers `T` (and, through it, everything it references) with `generator`.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// Adding a built-in kind's type to a generator.
struct Add<'a>(&'a mut SchemaGenerator);

impl crate::builtin::WithKind for Add<'_> {
    type Output = String;

    fn with<T>(self) -> String
    where
        T: serde::de::DeserializeOwned + serde::Serialize + JsonSchema,
    {
        add::<T>(self.0)
    }
}

/// The schema name of built-in `group`'s `kind` at `version` after adding it to
/// `generator`; `None` for a kind without a typed form here.
fn add_kind(generator: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
    crate::builtin::with_kind(group, version, kind, Add(generator))
}

/// Draft 2020-12 without transforms: schemars' plain output (`#/$defs/` refs, `$ref`
/// siblings), which [`normalise`] turns into what kube serves, whatever schemars'
/// OpenAPI settings would do in some later version.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().with(|s| s.meta_schema = None).into_generator()
}

/// Every definition `generator` collected, as OpenAPI v3 components.
fn take_components(mut generator: SchemaGenerator) -> Map<String, Value> {
    let mut components = Map::new();
    for (name, mut schema) in generator.take_definitions(false) {
        normalise(&mut schema, &mut components);
        components.insert(name, schema);
    }
    components
}

/// `(group, version, kind)` of a built-in kind.
pub type Gvk<'a> = (&'a str, &'a str, &'a str);

/// The components of a group-version's built-in `kinds` and the schema name of each
/// (`None` for a kind without a typed form here).
pub fn components(kinds: &[Gvk<'_>]) -> (Map<String, Value>, Vec<Option<String>>) {
    let mut generator = generator();
    let names: Vec<Option<String>> = kinds.iter().map(|(g, v, k)| add_kind(&mut generator, g, v, k)).collect();
    let mut components = take_components(generator);
    for ((group, version, kind), name) in kinds.iter().zip(&names) {
        let Some(schema) = name.as_ref().and_then(|n| components.get_mut(n)) else { continue };
        // k8s-openapi requires `metadata` because its Rust field is not optional;
        // kube-apiserver's schemas do not (kubectl explain would mark it `-required-`).
        if let Some(object) = schema.as_object_mut()
            && let Some(Value::Array(required)) = object.get_mut("required")
        {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                object.remove("required");
            }
        }
        // How kubectl (explain, field validation) finds a kind's schema in the document.
        schema["x-kubernetes-group-version-kind"] = json!([{"group": group, "version": version, "kind": kind}]);
    }
    (components, names)
}

/// What kube-apiserver adds to every custom resource's schema, as Kubernetes documents it
/// for its own kinds: TypeMeta's `apiVersion` and `kind`, the ObjectMeta and ListMeta
/// schemas (and what they reference) and their fields' descriptions.
pub struct Meta {
    pub api_version: Value,
    pub kind: Value,
    pub object_meta: String,
    pub list_meta: String,
    pub components: Map<String, Value>,
}

/// [`Meta`], built once: it is the same for every document.
pub fn meta() -> &'static Meta {
    static META: OnceLock<Meta> = OnceLock::new();
    META.get_or_init(|| {
        let mut generator = generator();
        let object_meta = add::<meta::ObjectMeta>(&mut generator);
        let list_meta = add::<meta::ListMeta>(&mut generator);
        // Every kind embeds TypeMeta and ObjectMeta with the same documentation, every
        // list ListMeta (Status reads as a list).
        let object = add::<core::ConfigMap>(&mut generator);
        let list = add::<meta::Status>(&mut generator);
        let all = take_components(generator);
        let property = |schema: &str, key: &str| all[schema]["properties"][key].clone();
        let described = |v: Value| v["description"].as_str().unwrap_or_default().to_owned();
        Meta {
            api_version: property(&object, "apiVersion"),
            kind: property(&object, "kind"),
            object_meta: described(property(&object, "metadata")),
            list_meta: described(property(&list, "metadata")),
            // Only the metadata schemas and what they reference belong in a CRD's document.
            components: closure(&all, &[&object_meta, &list_meta]),
        }
    })
}

/// The schemas named `roots` and every schema they reference, however deep.
fn closure(all: &Map<String, Value>, roots: &[&str]) -> Map<String, Value> {
    let mut kept = Map::new();
    let mut pending: Vec<String> = roots.iter().map(|r| (*r).to_owned()).collect();
    while let Some(name) = pending.pop() {
        let Some(schema) = all.get(&name).filter(|_| !kept.contains_key(&name)) else { continue };
        references(schema, &mut pending);
        kept.insert(name, schema.clone());
    }
    kept
}

/// The component names `schema` references.
fn references(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(o) => {
            if let Some(name) = o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(COMPONENTS)) {
                out.push(name.to_owned());
            }
            o.values().for_each(|v| references(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// Rewrites one schema from schemars' JSON Schema 2020-12 into OpenAPI 3.0 as
/// kube-apiserver writes it, in place; nested `$defs` move to `hoisted`.
///
/// - `$ref`s point at `#/components/schemas/<name>`; a `$ref` with siblings (a field's
///   description next to its type's reference) becomes `allOf: [{$ref}]` plus the
///   siblings, since OpenAPI 3.0 ignores a `$ref`'s siblings;
/// - `type: [T, "null"]` and `anyOf: [X, {type: null}]` become `nullable: true`: kubectl's
///   templates compare `type` with a string and fail on a list;
/// - `oneOf`/`anyOf` of integer and string becomes `x-kubernetes-int-or-string: true`;
/// - `const` becomes a one-value `enum`, `examples` the first `example`, `true`/`false`
///   schemas `{}` and `{not: {}}`.
pub fn normalise(schema: &mut Value, hoisted: &mut Map<String, Value>) {
    match schema {
        Value::Bool(true) => *schema = json!({}),
        Value::Bool(false) => *schema = json!({"not": {}}),
        _ => {}
    }
    let Some(object) = schema.as_object_mut() else { return };
    for defs in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = object.remove(defs) {
            for (name, mut nested) in defs {
                normalise(&mut nested, hoisted);
                hoisted.insert(name, nested);
            }
        }
    }
    if let Some(Value::String(reference)) = object.get_mut("$ref") {
        *reference = rewrite_ref(reference);
    }
    if object.contains_key("$ref") && object.len() > 1 {
        let reference = object.remove("$ref").unwrap_or_default();
        object.insert("allOf".into(), json!([{"$ref": reference}]));
    }
    if let Some(Value::Array(types)) = object.get("type").cloned() {
        let non_null: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if non_null.len() < types.len() {
            object.insert("nullable".into(), json!(true));
        }
        object.remove("type");
        match non_null.as_slice() {
            [one] => _ = object.insert("type".into(), one.clone()),
            _ if is_int_or_string(non_null.iter().map(|t| t.as_str().unwrap_or_default())) => {
                object.insert("x-kubernetes-int-or-string".into(), json!(true));
            }
            _ => {}
        }
    }
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(alternatives)) = object.get_mut(key) else { continue };
        let before = alternatives.len();
        alternatives.retain(|a| a.get("type") != Some(&json!("null")) || a.as_object().is_some_and(|o| o.len() > 1));
        if alternatives.len() < before {
            object.insert("nullable".into(), json!(true));
        }
        let Some(Value::Array(alternatives)) = object.get(key) else { continue };
        let bare_types: Option<Vec<&str>> = alternatives
            .iter()
            .map(|a| a.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("type")).and_then(Value::as_str))
            .collect();
        if bare_types.is_some_and(|t| t.len() == 2 && is_int_or_string(t.into_iter())) {
            object.remove(key);
            object.insert("x-kubernetes-int-or-string".into(), json!(true));
        } else if alternatives.len() == 1 {
            // What is left of `Option<T>`: T itself, as a one-reference allOf if it is one.
            let Some(Value::Array(mut only)) = object.remove(key) else { continue };
            match only.pop() {
                Some(Value::Object(single)) if single.contains_key("$ref") => {
                    object.insert("allOf".into(), json!([single]));
                }
                Some(Value::Object(single)) => {
                    for (k, v) in single {
                        object.entry(k).or_insert(v);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(value) = object.remove("const") {
        object.insert("enum".into(), json!([value]));
    }
    if let Some(Value::Array(mut examples)) = object.remove("examples")
        && !examples.is_empty()
    {
        object.entry("example").or_insert(examples.swap_remove(0));
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(nested) = object.get_mut(key).filter(|v| v.is_object() || key != "additionalProperties") {
            match nested {
                Value::Array(list) => list.iter_mut().for_each(|s| normalise(s, hoisted)),
                nested => normalise(nested, hoisted),
            }
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = object.get_mut(key) {
            list.iter_mut().for_each(|s| normalise(s, hoisted));
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(|s| normalise(s, hoisted));
    }
}

fn is_int_or_string<'a>(types: impl Iterator<Item = &'a str>) -> bool {
    let mut types: Vec<&str> = types.collect();
    types.sort_unstable();
    types == ["integer", "string"]
}

/// `#/$defs/<name>` (or `#/definitions/`) as `#/components/schemas/<name>`, the JSON
/// pointer's escapes undone (kube's names have none to escape).
fn rewrite_ref(reference: &str) -> String {
    let name = ["#/$defs/", "#/definitions/", COMPONENTS].iter().find_map(|p| reference.strip_prefix(p));
    match name {
        Some(name) => format!("{COMPONENTS}{}", name.replace("~1", "/").replace("~0", "~")),
        None => reference.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_point_at_components_and_ref_siblings_become_all_of() {
        let (components, names) = components(&[("apps", "v1", "Deployment")]);
        assert_eq!(names, [Some("io.k8s.api.apps.v1.Deployment".to_owned())]);
        let deployment = &components["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert!(deployment.get("required").is_none(), "metadata is never required: {deployment}");
        let spec = &deployment["properties"]["spec"];
        assert_eq!(spec["allOf"], json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]));
        assert_eq!(spec["description"], "Specification of the desired behavior of the Deployment.");
        assert_eq!(
            components["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["paused"]["description"],
            "Indicates that the deployment is paused."
        );
        // Everything referenced, however deep, is in the components.
        let text = serde_json::to_string(&components).unwrap();
        assert!(!text.contains("$defs"));
        for reference in text.split("\"$ref\":\"").skip(1) {
            let name = reference.split('"').next().unwrap().strip_prefix(COMPONENTS).unwrap();
            assert!(components.contains_key(name), "{name} is referenced, not defined");
        }
        assert!(components.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    }

    #[test]
    fn int_or_string_and_nullable_as_kube_writes_them() {
        let mut hoisted = Map::new();
        let mut schema = json!({
            "type": "object",
            "properties": {
                "port": {"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "a port"},
                "either": {"type": ["string", "integer"]},
                "maybe": {"type": ["string", "null"]},
                "optional": {"anyOf": [{"$ref": "#/$defs/io.k8s.Thing"}, {"type": "null"}]},
                "fixed": {"const": "x"},
            },
            "$defs": {"io.k8s.Thing": {"type": "object", "properties": {"n": {"$ref": "#/$defs/io.k8s.Other", "description": "d"}}}},
        });
        normalise(&mut schema, &mut hoisted);
        let p = &schema["properties"];
        assert_eq!(p["port"], json!({"x-kubernetes-int-or-string": true, "description": "a port"}));
        assert_eq!(p["either"], json!({"x-kubernetes-int-or-string": true}));
        assert_eq!(p["maybe"], json!({"type": "string", "nullable": true}));
        assert_eq!(p["optional"], json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.Thing"}], "nullable": true}));
        assert_eq!(p["fixed"], json!({"enum": ["x"]}));
        assert!(schema.get("$defs").is_none());
        assert_eq!(
            hoisted["io.k8s.Thing"]["properties"]["n"],
            json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.Other"}], "description": "d"})
        );
    }

    #[test]
    fn int_or_string_of_k8s_openapi_kept() {
        let (components, _) = components(&[("apps", "v1", "Deployment")]);
        let int_or_string = &components["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
        // No `type`: kubectl explain names the field's type after the reference (IntOrString).
        assert!(int_or_string.get("type").is_none());
    }

    #[test]
    fn meta_carries_type_meta_and_object_meta() {
        let meta = meta();
        assert_eq!(meta.api_version["type"], "string");
        assert!(meta.kind["description"].as_str().unwrap().starts_with("Kind is a string value"));
        assert!(meta.object_meta.starts_with("Standard object's metadata."));
        assert!(meta.list_meta.starts_with("Standard list metadata."));
        for name in ["ObjectMeta", "ListMeta", "ManagedFieldsEntry", "OwnerReference", "Time"] {
            assert!(meta.components.contains_key(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")), "{name}");
        }
        assert!(!meta.components.contains_key("io.k8s.api.core.v1.ConfigMap"));
    }

    #[test]
    fn every_builtin_has_a_schema() {
        for r in crate::resources::Resources::default().snapshot() {
            for v in &r.versions {
                let name = add_kind(&mut generator(), &r.group, v, &r.kind);
                assert!(name.is_some_and(|n| n.contains(&format!(".{v}."))), "{}/{v} {}", r.group, r.kind);
            }
        }
    }
}
