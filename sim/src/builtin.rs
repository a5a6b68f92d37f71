//! Built-in kinds decoded as kube-apiserver decodes them: into their typed form (the
//! k8s-openapi types), which refuses wrong types, drops unknown fields (reported per
//! `fieldValidation`), and leaves the canonical JSON that is stored.

use serde_json::{Map, Value};

/// What `fieldValidation` asks for unknown fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Ignore") => Self::Ignore,
            Some("Strict") => Self::Strict,
            _ => Self::Warn,
        }
    }
}

/// Something done with the typed form of a built-in kind, whichever it is.
pub trait WithKind {
    type Output;
    fn with<T>(self) -> Self::Output
    where
        T: serde::de::DeserializeOwned + serde::Serialize + schemars::JsonSchema;
}

/// Runs `job` with the k8s-openapi type of built-in `group`'s `kind` at `version`; `None`
/// for kinds without a typed form here (they are stored as written). The one table of
/// the built-in kinds' types: decoding and the OpenAPI schemas both read it.
pub fn with_kind<J: WithKind>(group: &str, version: &str, kind: &str, job: J) -> Option<J::Output> {
    use k8s_openapi::api::admissionregistration::v1 as admissionregistration;
    use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};
    use k8s_openapi::api::{apps::v1 as apps, authorization::v1 as authorization, coordination::v1 as coordination};
    use k8s_openapi::api::{core::v1 as core, discovery::v1 as discovery, events::v1 as events};
    use k8s_openapi::api::{policy::v1 as policy, rbac::v1 as rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    // Every kind but the autoscaler is served at one version.
    Some(match (group, kind) {
        ("autoscaling", "HorizontalPodAutoscaler") if version == "v1" => {
            job.with::<autoscaling_v1::HorizontalPodAutoscaler>()
        }
        ("autoscaling", "HorizontalPodAutoscaler") => job.with::<autoscaling_v2::HorizontalPodAutoscaler>(),
        ("", "Namespace") => job.with::<core::Namespace>(),
        ("", "Service") => job.with::<core::Service>(),
        ("", "Pod") => job.with::<core::Pod>(),
        ("", "Node") => job.with::<core::Node>(),
        ("", "Event") => job.with::<core::Event>(),
        ("", "ConfigMap") => job.with::<core::ConfigMap>(),
        ("", "Secret") => job.with::<core::Secret>(),
        ("", "ServiceAccount") => job.with::<core::ServiceAccount>(),
        ("", "Endpoints") => job.with::<core::Endpoints>(),
        ("apps", "Deployment") => job.with::<apps::Deployment>(),
        ("apps", "ReplicaSet") => job.with::<apps::ReplicaSet>(),
        ("discovery.k8s.io", "EndpointSlice") => job.with::<discovery::EndpointSlice>(),
        ("coordination.k8s.io", "Lease") => job.with::<coordination::Lease>(),
        ("events.k8s.io", "Event") => job.with::<events::Event>(),
        ("policy", "PodDisruptionBudget") => job.with::<policy::PodDisruptionBudget>(),
        ("authorization.k8s.io", "SelfSubjectAccessReview") => job.with::<authorization::SelfSubjectAccessReview>(),
        ("rbac.authorization.k8s.io", "ClusterRole") => job.with::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => job.with::<rbac::ClusterRoleBinding>(),
        ("rbac.authorization.k8s.io", "Role") => job.with::<rbac::Role>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => job.with::<rbac::RoleBinding>(),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            job.with::<admissionregistration::MutatingWebhookConfiguration>()
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            job.with::<admissionregistration::ValidatingWebhookConfiguration>()
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => job.with::<apiextensions::CustomResourceDefinition>(),
        _ => return None,
    })
}

/// Decoding into the typed form and encoding again: the canonical JSON.
struct RoundTrip<'a>(&'a Value);

impl WithKind for RoundTrip<'_> {
    type Output = Result<Value, String>;

    fn with<T>(self) -> Result<Value, String>
    where
        T: serde::de::DeserializeOwned + serde::Serialize + schemars::JsonSchema,
    {
        let typed: T = super::decode::typed(self.0)?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
}

/// The canonical form of a built-in object at `version`, or why it does not decode (in
/// kube's words). `None` for kinds without a typed form here (stored as written).
pub fn decode(group: &str, version: &str, kind: &str, object: &Value) -> Option<Result<Value, String>> {
    with_kind(group, version, kind, RoundTrip(object))
}

/// The validation kube-apiserver applies to workloads (a selector that matches the
/// template's labels, replicas not negative) and autoscalers (`autoscaling.rs`).
/// `(field, message)` per problem.
pub fn validate(group: &str, kind: &str, object: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if super::autoscaling::is_autoscaler(group, kind) {
        return super::autoscaling::validate(object);
    }
    if group != "apps" || !matches!(kind, "Deployment" | "ReplicaSet") {
        return problems;
    }
    if let Some(replicas) = object.pointer("/spec/replicas").and_then(Value::as_i64).filter(|r| *r < 0) {
        problems
            .push(("spec.replicas".into(), format!("Invalid value: {replicas}: must be greater than or equal to 0")));
    }
    let Some(selector) = object.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        problems.push(("spec.selector".into(), "Required value".into()));
        return problems;
    };
    let labels = super::selector::labels(&serde_json::json!({"metadata": object.pointer("/spec/template/metadata")}));
    if !super::selector::LabelSelector::from_object(selector).matches(&labels) {
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
        problems.push((
            "spec.template.metadata.labels".into(),
            format!(
                "Invalid value: map[string]string{{{}}}: `selector` does not match template `labels`",
                shown.join(", ")
            ),
        ));
    }
    problems
}

/// Fields of `input` that its canonical form dropped: the unknown ones.
pub fn unknown_fields(input: &Value, canonical: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, canonical, "", &mut out);
    out
}

fn walk(input: &Value, canonical: &Value, path: &str, out: &mut Vec<String>) {
    match (input, canonical) {
        (Value::Object(i), Value::Object(c)) => fields(i, c, path, out),
        (Value::Array(i), Value::Array(c)) => {
            for (n, (a, b)) in i.iter().zip(c).enumerate() {
                walk(a, b, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

fn fields(input: &Map<String, Value>, canonical: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    for (key, value) in input {
        let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match canonical.get(key) {
            Some(c) => walk(value, c, &at, out),
            // Nulls and empty values are dropped by the encoder, not unknown.
            None if value.is_null() => {}
            None if value.as_object().is_some_and(Map::is_empty) || value.as_array().is_some_and(Vec::is_empty) => {}
            None => out.push(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_and_finds_unknown_fields() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"replicaz": 4, "selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i", "colour": 1}]}}}});
        let canonical = decode("apps", "v1", "Deployment", &d).unwrap().unwrap();
        assert!(canonical["spec"].get("replicaz").is_none());
        assert_eq!(unknown_fields(&d, &canonical), ["spec.replicaz", "spec.template.spec.containers[0].colour"]);
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"template": {"metadata": "x"}}});
        assert!(decode("apps", "v1", "Deployment", &bad).unwrap().is_err());
        assert!(decode("example.com", "v1", "Widget", &d).is_none());
    }

    #[test]
    fn rbac_and_disruption_budgets_decode_typed() {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"], "verb": "x"}]});
        let canonical = decode("rbac.authorization.k8s.io", "v1", "ClusterRole", &role).unwrap().unwrap();
        assert_eq!(unknown_fields(&role, &canonical), ["rules[0].verb"]);
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns"}, "subjects": "sa"});
        assert!(
            decode("rbac.authorization.k8s.io", "v1", "RoleBinding", &binding).unwrap().is_err(),
            "subjects is a list"
        );
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}});
        let canonical = decode("policy", "v1", "PodDisruptionBudget", &pdb).unwrap().unwrap();
        assert_eq!(canonical["spec"]["minAvailable"], 1);
    }

    #[test]
    fn workloads_need_a_matching_selector() {
        let d = |selector: Value, labels: Value| {
            json!({"spec": {"replicas": 1, "selector": selector,
            "template": {"metadata": {"labels": labels}}}})
        };
        assert!(
            validate("apps", "Deployment", &d(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}))).is_empty()
        );
        assert_eq!(
            validate("apps", "Deployment", &d(json!({"matchLabels": {"app": "zzz"}}), json!({"app": "x"}))),
            [(
                "spec.template.metadata.labels".to_owned(),
                "Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
                    .to_owned()
            )]
        );
        assert_eq!(validate("apps", "Deployment", &json!({"spec": {}}))[0].0, "spec.selector");
    }
}
