//! The table of v1alpha1 flat fields against the conversion: every field of the
//! v1alpha1 spec has a row, and every row, set alone, goes to v1beta1 at the place the
//! table names and comes back unchanged with nothing spilled.

use apisix_canary::api::canary::convert::{to_v1alpha1, to_v1beta1};
use apisix_canary::api::canary::flat::{FLAT_FIELDS, METRICS, Place, Unit, v1alpha1_path};
use apisix_canary::api::canary::v1alpha1;
use serde_json::{Map, Value, json};

/// Every field set. No `..Default::default()`: a field added to v1alpha1 must be added
/// here, and then `every_v1alpha1_field_has_a_row` asks for its row.
fn full() -> v1alpha1::CanarySpec {
    v1alpha1::CanarySpec {
        target: "web".to_owned(),
        route: Some("shop".to_owned()),
        service: Some("web-canary".to_owned()),
        port: Some(8080),
        step_weight: Some(10),
        step_weights: Some(vec![5, 10, 20]),
        step_weight_promotion: Some(50),
        max_weight: Some(40),
        interval: Some("30s".to_owned()),
        threshold: Some(3),
        min_success_rate: Some(99.5),
        max_request_duration: Some("1.5s".to_owned()),
        judge: Some("sequential".to_owned()),
        confidence: Some(99.9),
        progress_deadline_seconds: Some(300),
        skip_analysis: Some(true),
        suspend: Some(false),
    }
}

fn flat_json(spec: &v1alpha1::CanarySpec) -> Map<String, Value> {
    match serde_json::to_value(spec).unwrap() {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn every_v1alpha1_field_has_a_row() {
    let mut fields: Vec<String> = flat_json(&full()).keys().cloned().collect();
    let mut rows: Vec<String> = FLAT_FIELDS.iter().map(|f| f.name.to_owned()).collect();
    fields.sort();
    rows.sort();
    assert_eq!(fields, rows);
}

/// The v1beta1 spec with the target and `row` alone set, written from the row's place.
fn expected_v1beta1(row: &apisix_canary::api::canary::flat::FlatField, value: &Value) -> Value {
    let mut spec = json!({"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}});
    match row.place {
        Place::Field { parent, key, defaults } => {
            let mut object = Map::new();
            for (k, d) in defaults {
                object.insert((*k).to_owned(), json!(d));
            }
            object.insert(key.to_owned(), value.clone());
            match parent.strip_prefix('/') {
                None => spec.as_object_mut().unwrap().extend(object),
                Some(name) => {
                    let into = spec.as_object_mut().unwrap().entry(name).or_insert_with(|| json!({}));
                    into.as_object_mut().unwrap().extend(object);
                }
            }
        }
        Place::Bound { metric, bound, unit } => {
            let number = match unit {
                Unit::Number => value.clone(),
                Unit::Millis => {
                    assert_eq!(value, "1.5s", "the sample duration");
                    json!(1500)
                }
            };
            let (parent, key) = METRICS.trim_start_matches('/').split_once('/').unwrap();
            spec[parent] = json!({key: [{"name": metric, "thresholdRange": {bound: number}}]});
        }
    }
    spec
}

#[test]
fn every_row_alone_converts_to_its_place_and_back() {
    let full = flat_json(&full());
    for row in FLAT_FIELDS {
        let value = &full[row.name];
        let mut alone = json!({"target": "web"});
        alone[row.name] = value.clone();
        let flat: v1alpha1::CanarySpec = serde_json::from_value(alone).unwrap();
        let flat = v1alpha1::Canary::new("web", flat);

        let beta = to_v1beta1(&flat).unwrap();
        // As JSON: a key the v1beta1 types do not know would be dropped when read.
        assert_eq!(serde_json::to_value(&beta.spec).unwrap(), expected_v1beta1(row, value), "{}", row.name);
        assert_eq!(beta.metadata.annotations, None, "{}: nothing to remember", row.name);

        let back = to_v1alpha1(&beta).unwrap();
        assert_eq!(back, flat, "{}: v1beta1 -> v1alpha1", row.name);
        assert_eq!(to_v1beta1(&back).unwrap(), beta, "{}: and v1beta1 again", row.name);
    }
}

#[test]
fn every_field_row_maps_its_v1beta1_path_to_its_flat_path() {
    for row in FLAT_FIELDS {
        if let Place::Field { parent, key, .. } = row.place {
            let beta = format!("spec{}.{key}", parent.replace('/', "."));
            assert_eq!(v1alpha1_path(&beta), Some(format!("spec.{}", row.name)), "{beta}");
        }
    }
}
