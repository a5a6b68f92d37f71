//! The v1alpha1 flat fields, where each lives in v1beta1 and which Deployment
//! annotation it stands for: one table that the conversion and the admission error
//! paths both read, so a field cannot be added to one of them and forgotten in another.

use serde_json::Value;

use super::{REQUEST_DURATION, REQUEST_SUCCESS_RATE, v1alpha1, v1beta1};
use crate::api::{annotations, apisix_route};

/// One field of the v1alpha1 spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlatField {
    /// Its JSON name in the v1alpha1 spec.
    pub name: &'static str,
    /// Where it lives in the v1beta1 spec.
    pub place: Place,
    /// The Deployment annotation that sets it, where there is one.
    pub annotation: Option<&'static str>,
}

/// A place in the v1beta1 spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Place {
    /// `key` of the object at `parent`, a JSON pointer into the spec (`""`: the spec).
    /// `defaults` are the siblings a reference takes when the flat field creates it;
    /// they are implied by v1alpha1, so the spill keeps them only when they differ.
    Field { parent: &'static str, key: &'static str, defaults: &'static [(&'static str, &'static str)] },
    /// `thresholdRange.<bound>` of the first built-in metric named `metric` in [`METRICS`].
    Bound { metric: &'static str, bound: &'static str, unit: Unit },
}

/// How a metric bound is written in each version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// The same number in both.
    Number,
    /// Milliseconds in v1beta1, a Go duration in v1alpha1; held flat only when the
    /// duration gives the milliseconds back exactly.
    Millis,
}

/// Where the metrics whose bounds are [`Place::Bound`]s live in the v1beta1 spec.
pub const METRICS: &str = "/analysis/metrics";

const TARGET_DEFAULTS: &[(&str, &str)] = &[("apiVersion", "apps/v1"), ("kind", "Deployment")];
const ROUTE_DEFAULTS: &[(&str, &str)] = &[("apiVersion", apisix_route::API_VERSION), ("kind", apisix_route::KIND)];

const fn field(
    name: &'static str,
    parent: &'static str,
    key: &'static str,
    annotation: Option<&'static str>,
) -> FlatField {
    FlatField { name, place: Place::Field { parent, key, defaults: &[] }, annotation }
}

const fn reference(
    name: &'static str,
    parent: &'static str,
    defaults: &'static [(&str, &str)],
    annotation: Option<&'static str>,
) -> FlatField {
    FlatField { name, place: Place::Field { parent, key: "name", defaults }, annotation }
}

const fn bound(
    name: &'static str,
    metric: &'static str,
    bound: &'static str,
    unit: Unit,
    annotation: &'static str,
) -> FlatField {
    FlatField { name, place: Place::Bound { metric, bound, unit }, annotation: Some(annotation) }
}

/// Every v1alpha1 field, in the order of the v1alpha1 spec. The conversion lays them
/// over the spill in this order, which fixes which error a spill with several wrong
/// objects gets (`targetRef`, then `routeRef`, `service`, `analysis`, the metrics).
pub const FLAT_FIELDS: &[FlatField] = &[
    reference("target", "/targetRef", TARGET_DEFAULTS, None),
    reference("route", "/routeRef", ROUTE_DEFAULTS, Some(annotations::ROUTE)),
    field("service", "/service", "name", None),
    field("port", "/service", "port", None),
    field("stepWeight", "/analysis", "stepWeight", Some(annotations::STEP_WEIGHT)),
    field("stepWeights", "/analysis", "stepWeights", Some(annotations::STEP_WEIGHTS)),
    field("stepWeightPromotion", "/analysis", "stepWeightPromotion", Some(annotations::STEP_WEIGHT_PROMOTION)),
    field("maxWeight", "/analysis", "maxWeight", Some(annotations::MAX_WEIGHT)),
    field("interval", "/analysis", "interval", Some(annotations::INTERVAL)),
    field("threshold", "/analysis", "threshold", Some(annotations::THRESHOLD)),
    bound("minSuccessRate", REQUEST_SUCCESS_RATE, "min", Unit::Number, annotations::MIN_SUCCESS_RATE),
    bound("maxRequestDuration", REQUEST_DURATION, "max", Unit::Millis, annotations::MAX_REQUEST_DURATION),
    field("judge", "/analysis", "judge", Some(annotations::JUDGE)),
    field("confidence", "/analysis", "confidence", Some(annotations::CONFIDENCE)),
    field("progressDeadlineSeconds", "", "progressDeadlineSeconds", Some(annotations::PROGRESS_DEADLINE_SECONDS)),
    field("skipAnalysis", "", "skipAnalysis", Some(annotations::SKIP_ANALYSIS)),
    field("suspend", "", "suspend", Some(annotations::SUSPEND)),
];

impl FlatField {
    /// This field's value in a v1alpha1 spec's JSON; `null` counts as unset.
    pub fn value_in<'a>(&self, flat: &'a Value) -> Option<&'a Value> {
        flat.get(self.name).filter(|v| !v.is_null())
    }
}

/// The first built-in metric of that name: one with a templateRef is custom, whatever
/// it is called.
pub fn builtin_index(metrics: &[Value], name: &str) -> Option<usize> {
    metrics.iter().position(|m| m["name"] == name && m.get("templateRef").is_none_or(Value::is_null))
}

/// A JSON pointer as a field path under `spec` (`/analysis` -> `spec.analysis`).
fn spec_path(pointer: &str) -> String {
    format!("spec{}", pointer.replace('/', "."))
}

/// The v1alpha1 path of a field error found in the v1beta1 expansion of a v1alpha1
/// spec, when the field is one v1alpha1 holds flat: `spec.analysis.stepWeight` ->
/// `spec.stepWeight`. A reference stands for its flat field as a whole (`spec.routeRef`
/// -> `spec.route`); its other fields came from the spill. Metric bounds need the
/// metric's index: see [`flat_bound_paths`].
pub fn v1alpha1_path(v1beta1_path: &str) -> Option<String> {
    FLAT_FIELDS.iter().find_map(|f| {
        let Place::Field { parent, key, defaults } = f.place else { return None };
        let parent = spec_path(parent);
        let here = v1beta1_path
            .strip_prefix(parent.as_str())
            .is_some_and(|rest| rest.strip_prefix('.') == Some(key) || (rest.is_empty() && !defaults.is_empty()));
        here.then(|| format!("spec.{}", f.name))
    })
}

/// The v1beta1 paths (`spec.analysis.metrics[0].thresholdRange.min`) of the metric
/// bounds that `flat` holds, given the metrics of its v1beta1 expansion. Those were
/// checked at the flat fields, in the words of the flat fields.
pub fn flat_bound_paths(flat: &v1alpha1::CanarySpec, metrics: &[v1beta1::Metric]) -> Vec<String> {
    let (Ok(flat), Ok(Value::Array(metrics))) = (serde_json::to_value(flat), serde_json::to_value(metrics)) else {
        return Vec::new();
    };
    FLAT_FIELDS
        .iter()
        .filter(|f| f.value_in(&flat).is_some())
        .filter_map(|f| {
            let Place::Bound { metric, bound, .. } = f.place else { return None };
            let i = builtin_index(&metrics, metric)?;
            Some(format!("{}[{i}].thresholdRange.{bound}", spec_path(METRICS)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_fields_map_to_their_flat_paths() {
        let cases = [
            ("spec.targetRef.name", Some("spec.target")),
            ("spec.targetRef", Some("spec.target")),
            ("spec.routeRef.name", Some("spec.route")),
            ("spec.routeRef", Some("spec.route")),
            ("spec.service.name", Some("spec.service")),
            ("spec.service.port", Some("spec.port")),
            ("spec.analysis.interval", Some("spec.interval")),
            ("spec.analysis.threshold", Some("spec.threshold")),
            ("spec.analysis.maxWeight", Some("spec.maxWeight")),
            ("spec.analysis.stepWeight", Some("spec.stepWeight")),
            ("spec.analysis.stepWeights", Some("spec.stepWeights")),
            ("spec.analysis.stepWeightPromotion", Some("spec.stepWeightPromotion")),
            ("spec.analysis.judge", Some("spec.judge")),
            ("spec.analysis.confidence", Some("spec.confidence")),
            ("spec.progressDeadlineSeconds", Some("spec.progressDeadlineSeconds")),
            ("spec.skipAnalysis", Some("spec.skipAnalysis")),
            ("spec.suspend", Some("spec.suspend")),
            // Defaulted siblings of a reference and fields v1alpha1 lacks came from the spill.
            ("spec.targetRef.kind", None),
            ("spec.routeRef.apiVersion", None),
            ("spec.service", None),
            ("spec.service.targetPort", None),
            ("spec.analysis", None),
            ("spec.analysis.metrics[0].thresholdRange.min", None),
            ("spec.analysis.webhooks[0].url", None),
            ("spec.provider", None),
            // Prefixes and suffixes of a flat path are other fields.
            ("spec.routeRefs", None),
            ("spec.analysis.stepWeightsX", None),
            ("spec.analysis.judges", None),
            ("spec.suspend.x", None),
            ("spec", None),
        ];
        for (beta, alpha) in cases {
            assert_eq!(v1alpha1_path(beta).as_deref(), alpha, "{beta}");
        }
    }

    fn metric(name: &str, template: Option<&str>) -> v1beta1::Metric {
        v1beta1::Metric {
            name: name.to_owned(),
            template_ref: template.map(|t| super::super::NamespacedRef { name: t.to_owned(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_held_flat_are_found_at_the_first_builtin_metric() {
        let metrics = [
            metric(REQUEST_SUCCESS_RATE, Some("custom")),
            metric("latency", Some("latency")),
            metric(REQUEST_DURATION, None),
            metric(REQUEST_SUCCESS_RATE, None),
            metric(REQUEST_SUCCESS_RATE, None),
        ];
        let both = v1alpha1::CanarySpec {
            min_success_rate: Some(99.0),
            max_request_duration: Some("500ms".to_owned()),
            ..Default::default()
        };
        assert_eq!(
            flat_bound_paths(&both, &metrics),
            ["spec.analysis.metrics[3].thresholdRange.min", "spec.analysis.metrics[2].thresholdRange.max"]
        );
        // A duration that does not parse is still the flat field's: it was reported there.
        let duration_only =
            v1alpha1::CanarySpec { max_request_duration: Some("soon".to_owned()), ..Default::default() };
        assert_eq!(flat_bound_paths(&duration_only, &metrics), ["spec.analysis.metrics[2].thresholdRange.max"]);
        // Bounds not written flat, or no built-in metric to hold them: nothing.
        assert!(flat_bound_paths(&v1alpha1::CanarySpec::default(), &metrics).is_empty());
        assert!(flat_bound_paths(&both, &metrics[..2]).is_empty());
    }

    #[test]
    fn every_flat_field_has_one_row_and_every_analysis_annotation_one_field() {
        let mut names: Vec<_> = FLAT_FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FLAT_FIELDS.len(), "a flat field has two rows");
        let mut keys: Vec<_> = FLAT_FIELDS.iter().filter_map(|f| f.annotation).collect();
        keys.sort_unstable();
        let mut expected = [annotations::ANALYSIS_KEYS, &[annotations::ROUTE]].concat();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
}
