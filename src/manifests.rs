//! The cluster objects generated from the code: our CRDs (with the conversion webhook)
//! and the webhook configurations. `manifests/` holds their YAML; a test fails when it
//! drifts from what this module generates. The API server reaches our webhooks through
//! our Service, or at a URL for a server that runs outside the cluster (`--url`).

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    ServiceReference as CrdServiceReference, WebhookClientConfig as CrdClientConfig, WebhookConversion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;
use serde::Serialize;

use crate::admission::Hook;
use crate::api::{alert_provider, canary, metric_template};

/// Where the API server reaches our webhooks and how it trusts them.
#[derive(Debug, Clone)]
pub struct Target {
    /// Our namespace: where our Service lives, and excluded from the Deployment webhooks.
    pub namespace: String,
    pub service: String,
    /// Set: the webhooks are called at this URL instead of through the Service.
    pub url: Option<WebhookUrl>,
    /// PEM of the CA that signed our serving certificate; `None` leaves `caBundle`
    /// unset (cert-manager's CA injector or a patch fills it in).
    pub ca_bundle: Option<Vec<u8>>,
}

/// `https://HOST[:PORT][/PREFIX]`: the base URL of a webhook server outside the cluster,
/// checked as kube-apiserver checks `clientConfig.url`. Each webhook's path is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid webhook URL {url:?}: {reason}")]
pub struct UrlError {
    url: String,
    reason: String,
}

impl std::str::FromStr for WebhookUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| UrlError { url: s.to_owned(), reason: reason.to_owned() };
        // kube-apiserver's ValidateWebhookURL, in its words.
        if s.contains('#') {
            return Err(refuse("fragments are not permitted in the URL"));
        }
        let uri: http::Uri = s.parse().map_err(|e: http::uri::InvalidUri| refuse(&e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(refuse("'https' is the only allowed URL scheme"));
        }
        let authority = uri.authority().map(http::uri::Authority::as_str).unwrap_or_default();
        if authority.contains('@') {
            return Err(refuse("user information is not permitted in the URL"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(refuse("host must be specified"));
        }
        if uri.query().is_some() {
            return Err(refuse("query parameters are not permitted in the URL"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self(format!("https://{authority}{prefix}")))
    }
}

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of the webhook served at `path` (which starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub const CRDS_FILE: &str = "crds.yaml";
pub const WEBHOOKS_FILE: &str = "webhooks.yaml";
pub const DEFAULT_NAMESPACE: &str = "apisix-canary";
pub const DEFAULT_SERVICE: &str = "apisix-canary";
/// Never sent to our Deployment webhooks, beside our own namespace.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// The name of both webhook configurations.
pub const NAME: &str = "apisix-canary";
/// Kubernetes' budget for one call is 10s; ours is short so a slow webhook never
/// holds a release of an unrelated Deployment for long.
pub const DEPLOYMENT_TIMEOUT_SECONDS: i32 = 3;
pub const CRD_TIMEOUT_SECONDS: i32 = 10;

impl Default for Target {
    fn default() -> Self {
        Self { namespace: DEFAULT_NAMESPACE.into(), service: DEFAULT_SERVICE.into(), url: None, ca_bundle: None }
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
            service: self.url.is_none().then(|| self.service(path)),
            url: self.url.as_ref().map(|u| u.join(path)),
        }
    }

    /// The same for the CRD conversion, whose client config is its own type.
    fn conversion_client_config(&self) -> CrdClientConfig {
        let path = crate::conversion::PATH;
        CrdClientConfig {
            ca_bundle: self.ca_bundle.clone().map(ByteString),
            service: self.url.is_none().then(|| CrdServiceReference {
                name: self.service.clone(),
                namespace: self.namespace.clone(),
                path: Some(path.to_owned()),
                port: Some(443),
            }),
            url: self.url.as_ref().map(|u| u.join(path)),
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
            client_config: Some(target.conversion_client_config()),
        }),
    });
    let mut crds = vec![canary, metric_template::MetricTemplate::crd(), alert_provider::AlertProvider::crd()];
    for version in crds.iter_mut().flat_map(|c| c.spec.versions.iter_mut()) {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            unwrap_descriptions(schema);
        }
    }
    crds
}

/// Descriptions come from doc comments, wrapped at the source's width; `kubectl explain`
/// wraps them itself, and a line break inside a paragraph shows as a ragged line. Each
/// paragraph becomes one line, as in Kubernetes' own schemas; blank lines stay.
fn unwrap_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(text) = &mut schema.description {
        *text = text
            .split("\n\n")
            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        unwrap_descriptions(child);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => unwrap_descriptions(items),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter_mut().for_each(unwrap_descriptions),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(additional)) = &mut schema.additional_properties {
        unwrap_descriptions(additional);
    }
}

fn outside_system_namespaces(target: &Target) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(vec![SYSTEM_NAMESPACE.to_owned(), target.namespace.clone()]),
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
