//! The kinds the simulated API server serves: the built-in ones we need and every
//! CRD created in it. Discovery documents are generated from this table.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::status::ApiError;
use super::store::ObjectKey;

/// One resource (plural) of one group, as discovery describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    pub storage_version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status: bool,
    /// `specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`.
    pub scale: Option<(String, String, Option<String>)>,
    /// Set for CRDs: the CRD object itself (printer columns, conversion, schema).
    pub crd: Option<Value>,
}

/// The target of a request: which resource, at which version, where.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub resource: &'a Resource,
    pub version: &'a str,
    pub namespace: &'a str,
}

impl Target<'_> {
    pub fn key(&self, name: &str) -> ObjectKey {
        let (group, plural) = super::events::storage(&self.resource.group, &self.resource.plural);
        ObjectKey::new(&group, &plural, self.namespace, name)
    }

    /// `deployments.apps`, as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound { kind: self.qualified(), name: name.to_owned() }
    }
}

impl Resource {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            versions: vec![version.into()],
            storage_version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced,
            status: false,
            scale: None,
            crd: None,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status = true;
        self
    }

    fn with_scale(mut self) -> Self {
        self.scale = Some((".spec.replicas".into(), ".status.replicas".into(), Some(".status.selector".into())));
        self
    }

    fn all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    /// Served at several versions: the first preferred and stored.
    fn versions(mut self, versions: &[&str]) -> Self {
        self.versions = versions.iter().map(|v| (*v).to_owned()).collect();
        self.storage_version = self.versions[0].clone();
        self
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_owned() } else { format!("{}/{version}", self.group) }
    }

    /// The resource a CRD defines.
    pub fn from_crd(crd: &Value) -> Option<Self> {
        let spec = crd.get("spec")?;
        let names = spec.get("names")?;
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let versions = spec.get("versions")?.as_array()?;
        let served: Vec<&Value> = versions.iter().filter(|v| v["served"] == true).collect();
        let storage = versions.iter().find(|v| v["storage"] == true)?.get("name")?.as_str()?.to_owned();
        let status = versions.iter().any(|v| v.pointer("/subresources/status").is_some());
        let scale = versions.iter().find_map(|v| v.pointer("/subresources/scale")).map(|s| {
            let get = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
            (
                get("specReplicasPath").unwrap_or_default(),
                get("statusReplicasPath").unwrap_or_default(),
                get("labelSelectorPath"),
            )
        });
        let kind = names.get("kind")?.as_str()?.to_owned();
        Some(Self {
            group: spec.get("group")?.as_str()?.to_owned(),
            versions: served.iter().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect(),
            storage_version: storage,
            singular: names.get("singular").and_then(Value::as_str).map_or_else(|| kind.to_lowercase(), str::to_owned),
            kind,
            plural: names.get("plural")?.as_str()?.to_owned(),
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            status,
            scale,
            crd: Some(crd.clone()),
        })
    }
}

fn builtins() -> Vec<Resource> {
    use Resource as R;
    vec![
        R::builtin("", "v1", "Namespace", "namespaces", false).short(&["ns"]).with_status(),
        R::builtin("", "v1", "Service", "services", true).short(&["svc"]).with_status().all(),
        R::builtin("", "v1", "Pod", "pods", true).short(&["po"]).with_status().all(),
        R::builtin("", "v1", "Node", "nodes", false).short(&["no"]).with_status(),
        R::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        R::builtin("", "v1", "Secret", "secrets", true),
        R::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        R::builtin("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
        R::builtin("apps", "v1", "Deployment", "deployments", true).short(&["deploy"]).with_status().with_scale().all(),
        R::builtin("apps", "v1", "ReplicaSet", "replicasets", true).short(&["rs"]).with_status().with_scale().all(),
        // Stored as v2, served as v1 too by conversion (`autoscaling.rs`).
        R::builtin("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true)
            .versions(&["v2", "v1"])
            .short(&["hpa"])
            .with_status()
            .all(),
        R::builtin("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
        R::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        R::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        // Stored and served only (no disruption controller, no authorization): what an
        // install such as a Helm chart's creates next to its workload.
        R::builtin("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true).short(&["pdb"]).with_status(),
        // Answered, never stored: everything is allowed, as for an admin kubeconfig.
        R::builtin("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false),
        R::builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
        R::builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
        R::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        R::builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
        R::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
        R::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        ),
        R::builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false)
            .short(&["crd", "crds"])
            .with_status(),
    ]
}

/// The table of served resources; CRDs come and go.
#[derive(Debug)]
pub struct Resources {
    /// Shared: a request takes its resource without copying a CRD's schema.
    all: RwLock<Vec<Arc<Resource>>>,
}

impl Default for Resources {
    fn default() -> Self {
        Self { all: RwLock::new(builtins().into_iter().map(Arc::new).collect()) }
    }
}

impl Resources {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Resource>>> {
        self.all.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The resource served at `group/version` under `plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.read()
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.versions.iter().any(|v| v == version))
            .cloned()
    }

    /// The resource of `group`'s `kind` (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<Resource>> {
        self.read().iter().find(|r| r.group == group && r.kind == kind).cloned()
    }

    pub fn snapshot(&self) -> Vec<Arc<Resource>> {
        self.read().clone()
    }

    /// Adds or replaces the resource a CRD defines.
    pub fn upsert_crd(&self, crd: &Value) {
        let Some(resource) = Resource::from_crd(crd) else { return };
        let mut all = self.all.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|r| !(r.group == resource.group && r.plural == resource.plural));
        all.push(Arc::new(resource));
    }

    pub fn remove_crd(&self, group: &str, plural: &str) {
        let mut all = self.all.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|r| !(r.crd.is_some() && r.group == group && r.plural == plural));
    }

    /// `/api` (core) or `/apis` (groups), in the legacy discovery shape.
    pub fn group_list(&self) -> Value {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.read().iter().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    for v in &r.versions {
                        if !versions.contains(v) {
                            versions.push(v.clone());
                        }
                    }
                }
                None => groups.push((r.group.clone(), r.versions.clone())),
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(name, versions)| {
                let versions: Vec<Value> =
                    versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
                json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let all = self.read();
        let here: Vec<&Resource> =
            all.iter().filter(|r| r.group == group && r.versions.iter().any(|v| v == version)).map(|r| &**r).collect();
        if here.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for r in here {
            let verbs = json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
            let mut entry = json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            resources.push(entry);
            if r.status {
                resources.push(
                    json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": ["get", "patch", "update"]}),
                );
            }
            if r.scale.is_some() {
                resources.push(
                    json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
                    "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}),
                );
            }
        }
        let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }
}
