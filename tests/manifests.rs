//! The generated cluster objects: manifests/ matches the code, every CRD schema is
//! structural and describes every field, and the webhook configurations say what
//! DESIGN.md section 6 says.

use apisix_canary::manifests::{self, Target, WebhookUrl};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn committed(file: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests").join(file)).unwrap()
}

#[test]
fn manifests_dir_matches_the_code() {
    let target = Target::default();
    for (file, generated) in [
        (manifests::CRDS_FILE, manifests::crds_yaml(&target).unwrap()),
        (manifests::WEBHOOKS_FILE, manifests::webhooks_yaml(&target).unwrap()),
    ] {
        assert!(
            committed(file) == generated,
            "manifests/{file} drifted from the code: run `cargo run -- manifests` and commit the result"
        );
    }
}

#[test]
fn crd_yaml_reads_back_as_crds() {
    let docs: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&committed(manifests::CRDS_FILE)).unwrap();
    let names: Vec<_> = docs.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(
        names,
        ["canaries.apisix-canary.dev", "metrictemplates.apisix-canary.dev", "alertproviders.apisix-canary.dev"]
    );
    let canary = &docs[0];
    let versions: Vec<_> = canary.spec.versions.iter().map(|v| (v.name.as_str(), v.served, v.storage)).collect();
    assert_eq!(versions, [("v1beta1", true, true), ("v1alpha1", true, false)]);
    let conversion = canary.spec.conversion.as_ref().unwrap();
    assert_eq!(conversion.strategy, "Webhook");
    let webhook = conversion.webhook.as_ref().unwrap();
    assert_eq!(webhook.conversion_review_versions, ["v1"]);
    let service = webhook.client_config.as_ref().unwrap().service.as_ref().unwrap();
    assert_eq!((service.namespace.as_str(), service.name.as_str()), ("apisix-canary", "apisix-canary"));
    assert_eq!(service.path.as_deref(), Some("/convert"));
    for version in &canary.spec.versions {
        assert!(version.subresources.as_ref().unwrap().status.is_some(), "status subresource on");
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Status", "Weight", "FailedChecks", "LastTransitionTime"], "{}", version.name);
        let wide: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority == Some(1))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(wide, ["StepWeight", "MaxWeight", "Interval"]);
    }
}

const ALLOWED_EXTENSIONS: &[&str] = &[
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// apiextensions' structural rules that matter here: every node has a type (or is
/// int-or-string or preserves unknown fields), no unknown `x-` keys, no references.
fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    for key in obj.keys() {
        if key.starts_with("x-") && !ALLOWED_EXTENSIONS.contains(&key.as_str()) {
            problems.push(format!("{path}: unknown extension {key}"));
        }
        if ["$ref", "$schema", "definitions", "$defs", "oneOf", "anyOf", "allOf", "not"].contains(&key.as_str()) {
            problems.push(format!("{path}: {key} is not allowed in a structural schema"));
        }
    }
    let typed = obj.contains_key("type")
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed {
        problems.push(format!("{path}: no type"));
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, child) in props {
            check_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(additional @ Value::Object(_)) = obj.get("additionalProperties") {
        check_structural(additional, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn every_crd_schema_is_structural() {
    for crd in manifests::crds(&Target::default()) {
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            let mut problems = Vec::new();
            check_structural(&schema, &format!("{}/{}", crd.spec.names.kind, version.name), &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }
}

/// How k8s-openapi documents its `Time` type: a property that shows it says nothing of
/// what the field holds.
const GENERIC_DESCRIPTIONS: &[&str] = &["Time is a wrapper around time.Time"];

/// Calls `f` with the path and the schema of every property under `node` (its own
/// `properties`, those of its `items` and of its `additionalProperties`), at any depth.
fn each_property(node: &Value, path: &str, f: &mut impl FnMut(&str, &Value)) {
    if let Some(Value::Object(props)) = node.get("properties") {
        for (name, child) in props {
            let child_path = format!("{path}.{name}");
            f(&child_path, child);
            each_property(child, &child_path, f);
        }
    }
    if let Some(items) = node.get("items") {
        each_property(items, &format!("{path}[]"), f);
    }
    if let Some(additional @ Value::Object(_)) = node.get("additionalProperties") {
        each_property(additional, &format!("{path}{{}}"), f);
    }
}

/// What is wrong with a schema's description as `kubectl explain` shows it, if anything.
fn description_problem(schema: &Value) -> Option<&'static str> {
    let description = schema.get("description").and_then(Value::as_str).unwrap_or_default().trim();
    if description.is_empty() {
        Some("no description")
    } else if GENERIC_DESCRIPTIONS.iter().any(|g| description.starts_with(g)) {
        Some("its type's generic description, not the field's")
    } else if description.split("\n\n").any(|paragraph| paragraph.contains('\n')) {
        // kubectl wraps descriptions itself: a line break of ours shows as a ragged line.
        Some("a line break inside a paragraph")
    } else {
        None
    }
}

/// Every described node under `root`, root included, with what is wrong with it.
fn description_problems(root: &Value, at: &str) -> Vec<String> {
    let mut problems: Vec<String> = description_problem(root).map(|p| format!("{at}: {p}")).into_iter().collect();
    each_property(root, at, &mut |path, schema| {
        problems.extend(description_problem(schema).map(|p| format!("{path}: {p}")));
    });
    problems
}

/// `kubectl explain` shows each field's description: every field of every served
/// version says what it does, in paragraphs that kubectl can wrap.
#[test]
fn every_crd_field_has_a_description() {
    let mut problems = Vec::new();
    let mut versions = 0;
    for crd in manifests::crds(&Target::default()) {
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            versions += 1;
            let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            problems.extend(description_problems(&schema, &format!("{}/{}", crd.spec.names.kind, version.name)));
        }
    }
    assert_eq!(versions, 4, "Canary v1beta1 and v1alpha1, MetricTemplate, AlertProvider");
    assert!(problems.is_empty(), "CRD fields to describe (with a doc comment): {problems:#?}");
}

#[test]
fn description_problems_are_found_at_every_depth() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "described": {"type": "string", "description": "Says what it is.\n\nAnd more."},
            "blank": {"type": "string", "description": "  "},
            "time": {"type": "string", "description": "Time is a wrapper around time.Time which ..."},
            "ragged": {"type": "string", "description": "Wrapped at the\nsource's width."},
            "list": {
                "type": "array",
                "description": "A list.",
                "items": {"type": "object", "properties": {"inner": {"type": "integer"}}}
            },
            "map": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"value": {"type": "string"}}}
            }
        }
    });
    let mut problems = description_problems(&schema, "X");
    problems.sort();
    assert_eq!(
        problems,
        [
            "X.blank: no description",
            "X.list[].inner: no description",
            "X.map: no description",
            "X.map{}.value: no description",
            "X.ragged: a line break inside a paragraph",
            "X.time: its type's generic description, not the field's",
            "X: no description",
        ]
    );
}

#[test]
fn webhook_configurations_limit_the_blast_radius() {
    let target = Target::default();
    let mutating = manifests::mutating(&target);
    let [deployments] = mutating.webhooks.as_deref().unwrap() else { panic!("one mutating webhook") };
    assert_eq!(deployments.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(deployments.timeout_seconds, Some(3));
    assert_eq!(deployments.side_effects, "None");
    assert_eq!(deployments.admission_review_versions, ["v1"]);
    let excluded = deployments.namespace_selector.as_ref().unwrap().match_expressions.as_ref().unwrap();
    assert_eq!(excluded[0].operator, "NotIn");
    assert_eq!(excluded[0].values.as_deref().unwrap(), ["kube-system", "apisix-canary"]);
    assert_eq!(deployments.client_config.service.as_ref().unwrap().path.as_deref(), Some("/mutate/deployments"));

    let validating = manifests::validating(&target);
    let hooks = validating.webhooks.as_deref().unwrap();
    let policies: Vec<_> =
        hooks.iter().map(|w| (w.name.as_str(), w.failure_policy.as_deref().unwrap(), w.timeout_seconds)).collect();
    assert_eq!(
        policies,
        [
            ("deployments.validate.apisix-canary.dev", "Ignore", Some(3)),
            ("canaries.validate.apisix-canary.dev", "Fail", Some(10))
        ]
    );
    assert_eq!(hooks[1].client_config.service.as_ref().unwrap().path.as_deref(), Some("/validate/canaries"));
    assert!(hooks[1].namespace_selector.is_none(), "our own kinds are validated everywhere");

    let with_ca = Target { ca_bundle: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()), ..Target::default() };
    let yaml = manifests::webhooks_yaml(&with_ca).unwrap();
    assert!(yaml.contains("caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="), "{yaml}");
}

#[test]
fn a_url_target_calls_every_webhook_and_the_conversion_at_that_url() {
    let ca = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    let url: WebhookUrl = "https://127.0.0.1:8443/".parse().unwrap();
    let target = Target { url: Some(url), ca_bundle: Some(ca.clone()), ..Target::default() };

    let mut configs = Vec::new();
    for hook in manifests::mutating(&target).webhooks.unwrap() {
        configs.push((hook.name, hook.client_config));
    }
    for hook in manifests::validating(&target).webhooks.unwrap() {
        configs.push((hook.name, hook.client_config));
    }
    let urls: Vec<_> = configs.iter().map(|(name, c)| (name.as_str(), c.url.as_deref().unwrap())).collect();
    assert_eq!(
        urls,
        [
            ("deployments.apisix-canary.dev", "https://127.0.0.1:8443/mutate/deployments"),
            ("deployments.validate.apisix-canary.dev", "https://127.0.0.1:8443/validate/deployments"),
            ("canaries.validate.apisix-canary.dev", "https://127.0.0.1:8443/validate/canaries"),
        ]
    );
    for (name, config) in &configs {
        assert!(config.service.is_none(), "{name}: a url excludes the service");
        assert_eq!(config.ca_bundle.as_ref().unwrap().0, ca, "{name}");
    }

    let crds = manifests::crds(&target);
    let conversion =
        crds[0].spec.conversion.as_ref().unwrap().webhook.as_ref().unwrap().client_config.as_ref().unwrap();
    assert_eq!(conversion.url.as_deref(), Some("https://127.0.0.1:8443/convert"));
    assert!(conversion.service.is_none());
    assert_eq!(conversion.ca_bundle.as_ref().unwrap().0, ca);
    // The YAML says it too, caBundle included, and names no Service anywhere.
    let yaml = format!("{}{}", manifests::crds_yaml(&target).unwrap(), manifests::webhooks_yaml(&target).unwrap());
    assert_eq!(yaml.matches("url: https://127.0.0.1:8443/").count(), 4, "{yaml}");
    assert_eq!(yaml.matches("caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==").count(), 4, "{yaml}");
    assert!(!yaml.contains("port: 443"), "no Service reference left: {yaml}");
    // Our namespace is still kept out of the Deployment webhooks.
    assert!(yaml.contains("- apisix-canary"), "{yaml}");
}

#[test]
fn webhook_urls_are_checked_as_kube_apiserver_checks_them() {
    let base: WebhookUrl = "https://webhooks.example.com/prefix/".parse().unwrap();
    assert_eq!(base.join("/convert"), "https://webhooks.example.com/prefix/convert");
    assert_eq!("https://[::1]:9443".parse::<WebhookUrl>().unwrap().join("/convert"), "https://[::1]:9443/convert");
    for (bad, reason) in [
        ("http://127.0.0.1:8443", "'https' is the only allowed URL scheme"),
        ("127.0.0.1:8443", "'https' is the only allowed URL scheme"),
        ("https://user:pw@127.0.0.1:8443", "user information is not permitted in the URL"),
        ("https://127.0.0.1:8443/?a=b", "query parameters are not permitted in the URL"),
        ("https://127.0.0.1:8443/#x", "fragments are not permitted in the URL"),
    ] {
        let err = bad.parse::<WebhookUrl>().unwrap_err().to_string();
        assert_eq!(err, format!("invalid webhook URL {bad:?}: {reason}"));
    }
}
