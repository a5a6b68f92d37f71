//! Decoding errors in kube-apiserver's words. Its JSON decoder is Go's
//! `encoding/json` (strict: sigs.k8s.io/json), so a wrong type reads
//! `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of
//! type int32`, and `fieldValidation=Strict` finds fields given twice. Here the same
//! facts come from serde (where it failed, what it found) and the kind's schema (the Go
//! struct and type at that place: k8s-openapi's schemas name kube's definitions).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::{self, Write as _};

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Paths of the fields a JSON body gives more than once (`spec.replicas`,
/// `spec.template.spec.containers[0].name`), as strict decoding reports them. Empty for
/// a body that is not JSON (its parse says so elsewhere). Every write's body is walked:
/// keys are borrowed from it where they can be, and a path is written out only for a
/// field found twice.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let (mut path, mut found) = (String::new(), Vec::new());
    let mut reader = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: &mut path, found: &mut found }.deserialize(&mut reader);
    found
}

/// One value of the body being walked, at `path` (the walk's one buffer, each level
/// appending its part and truncating it again).
struct Walk<'a> {
    path: &'a mut String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A key as the body has it: borrowed unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.path.len();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if base > 0 {
                self.path.push('.');
            }
            self.path.push_str(&key);
            if !seen.insert(key) && !self.found.contains(self.path) {
                self.found.push(self.path.clone());
            }
            map.next_value_seed(Walk { path: &mut *self.path, found: &mut *self.found })?;
            self.path.truncate(base);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let base = self.path.len();
        for i in 0.. {
            let _ = write!(self.path, "[{i}]");
            let more = seq.next_element_seed(Walk { path: &mut *self.path, found: &mut *self.found })?.is_some();
            self.path.truncate(base);
            if !more {
                break;
            }
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Decodes `object` as `T`: the value, or kube's message for why it does not decode.
pub fn typed<T: serde::de::DeserializeOwned + schemars::JsonSchema>(object: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(object.clone()).map_err(|e| {
        let segments: Vec<Segment> = e
            .path()
            .iter()
            .map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
                serde_path_to_error::Segment::Map { key } => Segment::Field(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Segment::Field(variant.clone()),
                serde_path_to_error::Segment::Unknown => Segment::Field("?".into()),
            })
            .collect();
        let message = e.inner().to_string();
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        go_type_error(&schema.to_value(), &T::schema_name(), &segments, &message).unwrap_or(message)
    })
}

/// A step of the path to a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// What Go's `UnmarshalTypeError` says for serde's "invalid type/value" `message` at
/// `path` in an object of the schema `root` (named `root_name`); `None` for other
/// errors, or a path the schema does not know.
pub fn go_type_error(root: &Value, root_name: &str, path: &[Segment], message: &str) -> Option<String> {
    let found = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))?;
    let found = found.split(", expected").next()?;
    let defs = root.get("$defs").and_then(Value::as_object);
    let empty = Map::new();
    let defs = defs.unwrap_or(&empty);
    // Walk the schema along the path: the innermost struct and the field's schema.
    let mut schema = root;
    let mut structure = root_name;
    let mut fields = Vec::new();
    for segment in path {
        let (here, name) = resolve(defs, schema);
        if let Some(name) = name {
            structure = name;
        }
        schema = match segment {
            Segment::Field(key) => {
                match here.get("properties").and_then(|p| p.get(key)) {
                    Some(field) => {
                        fields.push(key.as_str());
                        field
                    }
                    // Go names struct fields in the path, not map keys.
                    None => here.get("additionalProperties").filter(|a| a.is_object())?,
                }
            }
            Segment::Index(_) => here.get("items")?,
        };
    }
    if fields.is_empty() {
        return None;
    }
    let go_type = go_type(defs, schema);
    let integer = matches!(go_type.as_str(), "int" | "int32" | "int64");
    let value = match found.split_once(' ').map_or(found, |(kind, _)| kind) {
        "string" => "string".to_owned(),
        "boolean" => "bool".to_owned(),
        "sequence" => "array".to_owned(),
        "map" => "object".to_owned(),
        // A number Go cannot store in the type (1.5 or 3000000000 for an int32) is shown.
        "integer" | "floating" if integer || message.starts_with("invalid value") => {
            format!("number {}", found.rsplit('`').nth(1).unwrap_or_default())
        }
        "integer" | "floating" => "number".to_owned(),
        _ => return None,
    };
    let short = structure.rsplit('.').next().unwrap_or(structure);
    Some(format!("json: cannot unmarshal {value} into Go struct field {short}.{} of type {go_type}", fields.join(".")))
}

/// A schema with its `$ref` followed: (the definition, its name when it was a ref).
fn resolve<'a>(defs: &'a Map<String, Value>, schema: &'a Value) -> (&'a Value, Option<&'a str>) {
    let reference = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/"));
    match reference.and_then(|name| defs.get(name).map(|def| (def, name))) {
        Some((def, name)) => (def, Some(name)),
        None => (schema, None),
    }
}

/// Go's name of the type a schema describes: `int32`, `[]v1.Container`,
/// `map[string]string`, `v1.DeploymentSpec`.
fn go_type(defs: &Map<String, Value>, schema: &Value) -> String {
    if let (_, Some(name)) = resolve(defs, schema) {
        let mut parts = name.rsplit('.');
        let (kind, package) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        return format!("{package}.{kind}");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => match schema.get("format").and_then(Value::as_str) {
            Some("int32") => "int32".into(),
            Some("int64") => "int64".into(),
            _ => "int".into(),
        },
        Some("number") => "float64".into(),
        Some("boolean") => "bool".into(),
        Some("string") if schema.get("format").and_then(Value::as_str) == Some("byte") => "[]uint8".into(),
        Some("string") => "string".into(),
        Some("array") => format!("[]{}", schema.get("items").map_or("interface {}".into(), |i| go_type(defs, i))),
        Some("object") => match schema.get("additionalProperties").filter(|a| a.is_object()) {
            Some(values) => format!("map[string]{}", go_type(defs, values)),
            None => "map[string]interface {}".into(),
        },
        _ => "interface {}".into(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    use super::*;

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec})
    }

    fn error(spec: Value) -> String {
        typed::<Deployment>(&deployment(spec)).unwrap_err()
    }

    #[test]
    fn wrong_types_are_named_as_go_names_them() {
        let template = |c: Value| json!({"template": {"spec": {"containers": [c]}}});
        for (spec, expected) in [
            (json!({"replicas": "two"}), "string into Go struct field DeploymentSpec.spec.replicas of type int32"),
            (json!({"replicas": 1.5}), "number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
            (json!({"paused": "yes"}), "string into Go struct field DeploymentSpec.spec.paused of type bool"),
            (
                json!({"selector": "app=x"}),
                "string into Go struct field DeploymentSpec.spec.selector of type v1.LabelSelector",
            ),
            (
                template(json!({"name": "app", "image": 7})),
                "number into Go struct field Container.spec.template.spec.containers.image of type string",
            ),
            (
                template(json!({"name": "app", "args": "run"})),
                "string into Go struct field Container.spec.template.spec.containers.args of type []string",
            ),
            (
                json!({"template": {"metadata": {"labels": {"app": 1}}}}),
                "number into Go struct field ObjectMeta.spec.template.metadata.labels of type string",
            ),
        ] {
            assert_eq!(error(spec), format!("json: cannot unmarshal {expected}"));
        }
        assert_eq!(
            typed::<Deployment>(&json!({"spec": "x"})).unwrap_err(),
            "json: cannot unmarshal string into Go struct field Deployment.spec of type v1.DeploymentSpec"
        );
    }

    #[test]
    fn duplicate_fields_are_found_with_their_path() {
        let body = br#"{"spec": {"replicas": 1, "replicas": 2, "template": {"spec": {"containers": [{"name": "a", "name": "b"}]}}}, "kind": "x"}"#;
        assert_eq!(duplicate_fields(body), ["spec.replicas", "spec.template.spec.containers[0].name"]);
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": {"b": 1}}"#).is_empty());
        assert!(duplicate_fields(b"not json").is_empty());
        // A key written with an escape is the same key.
        assert_eq!(duplicate_fields(br#"{"m": {"a\u0062": 1, "ab": 2}}"#), ["m.ab"]);
    }
}
