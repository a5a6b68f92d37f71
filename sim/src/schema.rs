//! Custom resources checked against their CRD's structural schema, as kube-apiserver
//! does: unknown fields pruned, types, required fields, enums, bounds and patterns
//! enforced, every violation named with its field path.

use serde_json::{Map, Value};

/// The `openAPIV3Schema` of `version` in a CRD.
pub fn of_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?.as_array()?.iter().find(|v| v["name"] == version)?.pointer("/schema/openAPIV3Schema")
}

/// Prunes `object` in place and returns every violation, `path: message` each.
pub fn check(schema: &Value, object: &mut Value) -> Vec<String> {
    check_and_prune(schema, object).0
}

/// The fields pruning would drop (`spec.analysiz`, `spec.http[0].bogus`): the unknown
/// fields `fieldValidation` judges.
pub fn unknown_fields(schema: &Value, object: &Value) -> Vec<String> {
    check_and_prune(schema, &mut object.clone()).1
}

/// Prunes `object` in place: (violations, pruned field paths).
fn check_and_prune(schema: &Value, object: &mut Value) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut pruned = Vec::new();
    let Some(map) = object.as_object_mut() else {
        return (vec!["<root>: must be an object".into()], pruned);
    };
    // apiVersion, kind and metadata are the API server's own, whatever the schema says.
    let props = schema.get("properties").and_then(Value::as_object);
    for (key, value) in map.iter_mut() {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(key)) {
            visit(s, value, key, &mut Found { errors: &mut errors, pruned: &mut pruned });
        }
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true)) {
        map.retain(|k, _| {
            let keep =
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.is_some_and(|p| p.contains_key(k));
            if !keep {
                pruned.push(k.clone());
            }
            keep
        });
    }
    required(schema, map, "", &mut errors);
    (errors, pruned)
}

/// What a walk finds: violations, and the fields it pruned.
struct Found<'a> {
    errors: &'a mut Vec<String>,
    pruned: &'a mut Vec<String>,
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    for field in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(field) {
            let at = if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") };
            errors.push(format!("{at}: Required value"));
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn visit(schema: &Value, value: &mut Value, path: &str, found: &mut Found<'_>) {
    let errors = &mut *found.errors;
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            // kube-apiserver drops nulls of non-nullable fields when pruning.
            *value = Value::Null;
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !matches!(value, Value::String(_)) && type_name(value) != "integer" {
            errors
                .push(format!("{path}: Invalid value: {}: {path} in body must be of type int-or-string", shown(value)));
        }
        return;
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let fits = got == want || (want == "number" && got == "integer");
        if !fits {
            errors.push(format!(
                "{path}: Invalid value: \"{got}\": {path} in body must be of type {want}: {}",
                shown(value)
            ));
            return;
        }
    } else if preserve {
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(shown).collect();
        errors.push(format!("{path}: Unsupported value: {}: supported values: {}", shown(value), supported.join(", ")));
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errors
                    .push(format!("{path}: Invalid value: {n}: {path} in body should be less than or equal to {max}"));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if schema.get("minLength").and_then(Value::as_u64).is_some_and(|m| len < m) {
                errors.push(format!(
                    "{path}: Invalid value: {s:?}: {path} in body should be at least {} chars long",
                    schema["minLength"]
                ));
            }
            if schema.get("maxLength").and_then(Value::as_u64).is_some_and(|m| len > m) {
                errors.push(format!("{path}: Too long: may not be more than {} bytes", schema["maxLength"]));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && let Ok(re) = regex::Regex::new(pattern)
                && !re.is_match(s)
            {
                errors.push(format!("{path}: Invalid value: {s:?}: {path} in body should match '{pattern}'"));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if schema.get("minItems").and_then(Value::as_u64).is_some_and(|m| n < m) {
                errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should have at least {} items",
                    schema["minItems"]
                ));
            }
            if schema.get("maxItems").and_then(Value::as_u64).is_some_and(|m| n > m) {
                errors.push(format!("{path}: Too many: {n}: must have at most {} items", schema["maxItems"]));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    visit(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map.iter_mut() {
                let child_path = format!("{path}.{key}");
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) | (None, Some(s)) => visit(s, child, &child_path, found),
                    (None, None) => {}
                }
            }
            if !preserve && additional.is_none() && schema.get("additionalProperties") != Some(&Value::Bool(true)) {
                map.retain(|k, _| {
                    let keep = props.is_some_and(|p| p.contains_key(k));
                    if !keep {
                        found.pruned.push(format!("{path}.{k}"));
                    }
                    keep
                });
            }
            required(schema, map, path, found.errors);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["http"], "properties": {
            "http": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "minLength": 1, "pattern": "^[a-z-]+$"},
                "weight": {"type": "integer", "minimum": 0},
                "port": {"x-kubernetes-int-or-string": true},
                "scheme": {"type": "string", "enum": ["http", "https"]},
                "plugins": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }}}
        }}}})
    }

    #[test]
    fn valid_objects_pass_and_unknown_fields_are_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "extra": 1,
            "spec": {"http": [{"name": "method", "weight": 10, "port": "http", "bogus": true,
                "plugins": [{"name": "p", "config": {"anything": [1]}}]}]}});
        assert_eq!(check(&schema(), &mut o), Vec::<String>::new());
        assert!(o.get("extra").is_none() && o["spec"]["http"][0].get("bogus").is_none());
        let sent = json!({"extra": 1, "spec": {"http": [{"name": "a", "bogus": true, "plugins": [{"any": 1}]}]}});
        assert_eq!(unknown_fields(&schema(), &sent), ["spec.http[0].bogus", "extra"]);
        assert_eq!(o["spec"]["http"][0]["plugins"][0]["config"]["anything"][0], 1, "preserved");
        assert_eq!(o["metadata"]["name"], "a");
    }

    #[test]
    fn violations_name_the_field() {
        let mut o = json!({"spec": {"http": [{"name": "Bad_Name", "weight": -1, "port": 1.5, "scheme": "ftp"}, {"weight": "x"}]}});
        let errors = check(&schema(), &mut o);
        assert_eq!(
            errors,
            [
                "spec.http[0].name: Invalid value: \"Bad_Name\": spec.http[0].name in body should match '^[a-z-]+$'",
                "spec.http[0].port: Invalid value: 1.5: spec.http[0].port in body must be of type int-or-string",
                "spec.http[0].scheme: Unsupported value: \"ftp\": supported values: \"http\", \"https\"",
                "spec.http[0].weight: Invalid value: -1: spec.http[0].weight in body should be greater than or equal to 0",
                "spec.http[1].weight: Invalid value: \"string\": spec.http[1].weight in body must be of type integer: \"x\"",
                "spec.http[1].name: Required value",
            ]
        );
        assert_eq!(check(&schema(), &mut json!({"spec": {}})), ["spec.http: Required value"]);
    }
}
