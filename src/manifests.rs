//! The cluster objects generated from the code: our CRDs (with the conversion webhook)
//! and the webhook configurations. `manifests/` holds their YAML; a test fails when it
//! drifts from what this module generates.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, WebhookClientConfig as CrdClientConfig, WebhookConversion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;
use serde::Serialize;

use crate::admission::Hook;
use crate::api::{alert_provider, canary, metric_template};

/// Where our Service lives and how the API server trusts it.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    /// PEM of the CA that signed our serving certificate; `None` leaves `caBundle`
    /// unset (cert-manager's CA injector or a patch fills it in).
    pub ca_bundle: Option<Vec<u8>>,
}

pub const CRDS_FILE: &str = "crds.yaml";
pub const WEBHOOKS_FILE: &str = "webhooks.yaml";
pub const DEFAULT_NAMESPACE: &str = "apisix-canary";
pub const DEFAULT_SERVICE: &str = "apisix-canary";
/// The name of both webhook configurations.
pub const NAME: &str = "apisix-canary";
/// Kubernetes' budget for one call is 10s; ours is short so a slow webhook never
/// holds a release of an unrelated Deployment for long.
pub const DEPLOYMENT_TIMEOUT_SECONDS: i32 = 3;
pub const CRD_TIMEOUT_SECONDS: i32 = 10;

impl Default for Target {
    fn default() -> Self {
        Self { namespace: DEFAULT_NAMESPACE.into(), service: DEFAULT_SERVICE.into(), ca_bundle: None }
    }
}

impl Target {
    fn service(&self, path: &str) -> ServiceReference {
        ServiceReference {
            name: self.service.clone(),
            namespace: self.namespace.clone(),
            path: Some(path.to_owned()),
            port: Some(443),
        }
    }

    fn client_config(&self, path: &str) -> WebhookClientConfig {
        WebhookClientConfig {
            ca_bundle: self.ca_bundle.clone().map(ByteString),
            service: Some(self.service(path)),
            url: None,
        }
    }
}

/// Our CRDs: Canary (v1beta1 storage, v1alpha1 served, converted by our webhook),
/// MetricTemplate and AlertProvider.
pub fn crds(target: &Target) -> Vec<CustomResourceDefinition> {
    let mut canary = merge_crds(vec![canary::v1beta1::Canary::crd(), canary::v1alpha1::Canary::crd()], "v1beta1")
        .expect("both Canary versions describe the same kind");
    canary.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".to_owned(),
        webhook: Some(WebhookConversion {
            conversion_review_versions: vec!["v1".to_owned()],
            client_config: Some(CrdClientConfig {
                ca_bundle: target.ca_bundle.clone().map(ByteString),
                service: Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ServiceReference {
                    name: target.service.clone(),
                    namespace: target.namespace.clone(),
                    path: Some(crate::conversion::PATH.to_owned()),
                    port: Some(443),
                }),
                url: None,
            }),
        }),
    });
    vec![canary, metric_template::MetricTemplate::crd(), alert_provider::AlertProvider::crd()]
}

fn outside_system_namespaces(target: &Target) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(vec!["kube-system".to_owned(), target.namespace.clone()]),
        }]),
        match_labels: None,
    }
}

fn rule(group: &str, versions: &[&str], resources: &[&str], operations: &[&str]) -> RuleWithOperations {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect());
    RuleWithOperations {
        api_groups: strings(&[group]),
        api_versions: strings(versions),
        operations: strings(operations),
        resources: strings(resources),
        scope: Some("Namespaced".to_owned()),
    }
}

fn meta() -> ObjectMeta {
    ObjectMeta { name: Some(NAME.to_owned()), ..ObjectMeta::default() }
}

/// Deployments: only UPDATE can be a release; Ignore so an outage of ours never blocks
/// a rollout; kube-system and our own namespace excluded.
pub fn mutating(target: &Target) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![MutatingWebhook {
            name: "deployments.apisix-canary.dev".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: target.client_config(Hook::MutateDeployments.path()),
            failure_policy: Some("Ignore".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            namespace_selector: Some(outside_system_namespaces(target)),
            // Another mutating webhook may change the template after us: look again.
            reinvocation_policy: Some("IfNeeded".to_owned()),
            rules: Some(vec![rule("apps", &["v1"], &["deployments"], &["UPDATE"])]),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(DEPLOYMENT_TIMEOUT_SECONDS),
            ..MutatingWebhook::default()
        }]),
    }
}

/// Deployment annotations (Ignore, like the mutation) and our own kinds (Fail: an
/// invalid Canary must never be stored).
pub fn validating(target: &Target) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![
            ValidatingWebhook {
                name: "deployments.validate.apisix-canary.dev".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: target.client_config(Hook::ValidateDeployments.path()),
                failure_policy: Some("Ignore".to_owned()),
                match_policy: Some("Equivalent".to_owned()),
                namespace_selector: Some(outside_system_namespaces(target)),
                rules: Some(vec![rule("apps", &["v1"], &["deployments"], &["CREATE", "UPDATE"])]),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(DEPLOYMENT_TIMEOUT_SECONDS),
                ..ValidatingWebhook::default()
            },
            ValidatingWebhook {
                name: "canaries.validate.apisix-canary.dev".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: target.client_config(Hook::ValidateCanaries.path()),
                failure_policy: Some("Fail".to_owned()),
                // Exact: each version is validated as written, with its own field paths.
                match_policy: Some("Exact".to_owned()),
                rules: Some(vec![rule(
                    canary::GROUP,
                    &["v1beta1", "v1alpha1"],
                    &["canaries", "metrictemplates", "alertproviders"],
                    &["CREATE", "UPDATE"],
                )]),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(CRD_TIMEOUT_SECONDS),
                ..ValidatingWebhook::default()
            },
        ]),
    }
}

/// Objects as one multi-document YAML stream.
pub fn to_yaml<T: Serialize>(objects: &[T]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}

/// `manifests/crds.yaml`.
pub fn crds_yaml(target: &Target) -> Result<String, serde_saphyr::SerializeError> {
    to_yaml(&crds(target))
}

/// `manifests/webhooks.yaml`.
pub fn webhooks_yaml(target: &Target) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = to_yaml(&[mutating(target)])?;
    out.push_str(&to_yaml(&[validating(target)])?);
    Ok(out)
}
