//! The API semantics over the store: create, update, patch and delete with metadata,
//! generation, status and scale subresources, finalizers, garbage collection, CRD
//! registration, conversion and the admission chain. The HTTP layer and the simulated
//! controllers both go through here. Writes are in `cluster/write.rs`, deletion and
//! garbage collection in `cluster/delete.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

mod delete;
mod write;

pub use delete::{DeleteOptions, pod_grace_period};

use super::admission::{Call, Registered, Webhooks};
use super::defaults;
use super::resources::{Resource, Resources, Target};
use super::selector::{FieldSelector, LabelSelector, labels};
use super::status::ApiError;
use super::store::{ObjectKey, Store, StoreError};

/// Where webhook configurations live.
const ADMISSION_GROUP: &str = "admissionregistration.k8s.io";
const MUTATING: &str = "mutatingwebhookconfigurations";
const VALIDATING: &str = "validatingwebhookconfigurations";

/// Who writes, and how.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub dry_run: bool,
    /// Run the admission webhooks (user requests) or not (the simulated controllers).
    pub admission: bool,
    pub user: String,
    /// The `managedFields` manager of this write.
    pub field_manager: String,
    /// What to do with unknown fields of built-in kinds (`?fieldValidation=`).
    pub field_validation: super::builtin::FieldValidation,
    /// `?force=true`: a server-side apply takes conflicting fields from their managers.
    pub force: bool,
    /// Fields the request body gives twice, judged by `field_validation` as unknown ones.
    pub duplicates: Vec<String>,
    /// A PATCH: kube-apiserver's patch handler words strict decoding errors without
    /// naming the kind (its create and update handlers name it).
    pub patching: bool,
}

impl Ctx {
    /// The admission call of this write.
    fn call<'a>(
        &'a self,
        operation: &'a str,
        target: &'a Target<'a>,
        sub: Option<&'a str>,
        name: &'a str,
        old: Option<&'a Value>,
    ) -> Call<'a> {
        Call { operation, target, sub, name, old, dry_run: self.dry_run, user: &self.user }
    }

    /// A request from a client of the API.
    pub fn user(name: &str) -> Self {
        Self {
            dry_run: false,
            admission: true,
            user: name.to_owned(),
            field_manager: "unknown".to_owned(),
            field_validation: Default::default(),
            force: false,
            duplicates: Vec::new(),
            patching: false,
        }
    }

    /// A simulated controller: no webhooks, like kube-controller-manager's own kinds.
    pub fn internal() -> Self {
        Self {
            dry_run: false,
            admission: false,
            user: "system:kube-controller-manager".to_owned(),
            field_manager: "kube-controller-manager".to_owned(),
            field_validation: super::builtin::FieldValidation::Ignore,
            force: false,
            duplicates: Vec::new(),
            patching: false,
        }
    }
}

/// The result of a write: the object at the requested version, and webhook warnings.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

/// A patch body by content type.
#[derive(Debug, Clone)]
pub enum Patch {
    Merge(Value),
    Json(json_patch::Patch),
    /// Strategic merge patch (built-in kinds only).
    Strategic(Value),
    /// Server-side apply: create or merge the applied configuration.
    Apply(Value),
}

impl Patch {
    /// What the patch says the client wrote, for `managedFields`.
    fn written(&self) -> Option<&Value> {
        match self {
            Patch::Merge(v) | Patch::Strategic(v) | Patch::Apply(v) => Some(v),
            Patch::Json(_) => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Cluster {
    pub store: Store,
    pub resources: Resources,
    pub webhooks: Webhooks,
    /// What each pod's container wrote, for `kubectl logs`.
    pub logs: super::logs::PodLogs,
    next_service_ip: AtomicU32,
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

fn meta(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    v["metadata"].as_object_mut().expect("just made an object")
}

/// The part of an object whose change bumps `metadata.generation`.
fn spec_part(r: &Resource, v: &Value) -> Value {
    match v.get("spec") {
        Some(spec) => spec.clone(),
        None if r.status => Value::Null,
        None => {
            let mut rest = v.clone();
            if let Some(m) = rest.as_object_mut() {
                for k in ["metadata", "status", "apiVersion", "kind"] {
                    m.remove(k);
                }
            }
            rest
        }
    }
}

impl Cluster {
    /// A ClusterIP from 10.96.0.0/12, never reused.
    pub fn service_ip(&self) -> String {
        let n = self.next_service_ip.fetch_add(1, Ordering::Relaxed) + 10;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    pub fn get_raw(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.store.get(&ObjectKey::new(group, plural, namespace, name))
    }

    /// Converts a stored object to `version` (CRD conversion webhook when needed).
    pub async fn to_version(&self, r: &Resource, object: Value, version: &str) -> Result<Value, ApiError> {
        let want = r.api_version(version);
        if r.group == super::events::GROUP && object.get("apiVersion").and_then(Value::as_str) == Some("v1") {
            return Ok(super::events::from_core(&object));
        }
        if object.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
            return Ok(object);
        }
        if super::autoscaling::is_autoscaler(&r.group, &r.kind)
            && let Some(converted) = super::autoscaling::convert(&object, &want)
        {
            return Ok(converted);
        }
        let webhook = r.crd.as_ref().and_then(|crd| {
            let conversion = crd.pointer("/spec/conversion")?;
            (conversion.get("strategy").and_then(Value::as_str) == Some("Webhook"))
                .then(|| conversion.pointer("/webhook/clientConfig").cloned())?
        });
        match webhook {
            Some(client) => {
                let mut converted = self.webhooks.convert(&client, vec![object], &want).await?;
                converted.pop().ok_or_else(|| ApiError::Internal("conversion webhook returned no object".into()))
            }
            None => {
                let mut object = object;
                object["apiVersion"] = json!(want);
                Ok(object)
            }
        }
    }

    pub async fn get(&self, t: &Target<'_>, name: &str) -> Result<Value, ApiError> {
        let stored = self.store.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        self.to_version(t.resource, (*stored).clone(), t.version).await
    }

    pub async fn list(
        &self,
        t: &Target<'_>,
        all_namespaces: bool,
        label: &LabelSelector,
        field: &FieldSelector,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let ns = (!all_namespaces).then_some(t.namespace);
        let (group, plural) = super::events::storage(&t.resource.group, &t.resource.plural);
        let (items, rv) = self.store.list(&group, &plural, ns);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if label.matches_object(&item) && field.matches(&item) {
                out.push(self.to_version(t.resource, (*item).clone(), t.version).await?);
            }
        }
        Ok((out, rv))
    }

    /// POST: a new object.
    pub async fn create(&self, ctx: &Ctx, t: &Target<'_>, object: Value) -> Result<Written, ApiError> {
        self.create_as(ctx, t, object, "Update").await
    }

    async fn create_as(
        &self,
        ctx: &Ctx,
        t: &Target<'_>,
        mut object: Value,
        operation: &str,
    ) -> Result<Written, ApiError> {
        let r = t.resource;
        // NamespaceLifecycle: nothing new in a namespace being deleted.
        delete::creatable_in(r, self.get_raw("", "namespaces", "", t.namespace).as_deref(), &object)?;
        // kube-apiserver's create strategies reset the status of kinds with a status
        // subresource: only a write to `/status` sets it.
        if r.status
            && let Some(fields) = object.as_object_mut()
        {
            fields.remove("status");
        }
        let written = object.clone();
        let m = meta(&mut object);
        if m.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            let prefix = m.get("generateName").and_then(Value::as_str).unwrap_or_default().to_owned();
            if prefix.is_empty() {
                return Err(ApiError::Invalid(format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    r.kind
                )));
            }
            m.insert("name".into(), json!(format!("{prefix}{}", defaults::suffix(5))));
        }
        if r.namespaced {
            m.insert("namespace".into(), json!(t.namespace));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(defaults::uid()));
        m.insert("creationTimestamp".into(), json!(defaults::now()));
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        if tracks_generation(r) {
            meta(&mut object).insert("generation".into(), json!(1));
        }
        object["apiVersion"] = json!(r.api_version(t.version));
        object["kind"] = json!(r.kind);
        if r.namespaced && self.get_raw("", "namespaces", "", t.namespace).is_none() {
            return Err(ApiError::NotFound { kind: "namespaces".into(), name: t.namespace.to_owned() });
        }
        defaults::apply(&r.group, &r.kind, &mut object, || self.service_ip());
        let mut decode_warnings = Vec::new();
        self.decode(ctx, t, &mut object, Some(&mut decode_warnings))?;
        let name = name_of(&object).to_owned();
        let call = ctx.call("CREATE", t, None, &name, None);
        let mut warnings = self.admit(ctx, &call, &mut object).await?;
        self.decode(ctx, t, &mut object, None)?;
        self.check_schema(t, &name, &mut object)?;
        warnings.splice(0..0, decode_warnings);
        super::managed::record(&mut object, &ctx.field_manager, operation, None, &written);
        let stored = storage_form(r, self.to_version(r, object, &r.storage_version).await?);
        let stored = self.after_admission(r, stored, None);
        if ctx.dry_run {
            let object = self.to_version(r, stored, t.version).await?;
            return Ok(Written { object, warnings, created: true });
        }
        let saved = self.store.create(t.key(&name), stored).map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::AlreadyExists {
                kind: t.qualified(),
                name: name.clone(),
                being_deleted: self
                    .store
                    .get(&t.key(&name))
                    .is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_some()),
            },
            other => ApiError::Internal(other.to_string()),
        })?;
        self.on_written(r, &saved);
        let object = self.to_version(r, (*saved).clone(), t.version).await?;
        Ok(Written { object, warnings, created: true })
    }

    /// PUT: a whole object (or its status or scale).
    /// A built-in object in its canonical, typed form; unknown fields reported per
    /// `fieldValidation` when `report` collects warnings, dropped silently otherwise.
    fn decode(
        &self,
        ctx: &Ctx,
        t: &Target<'_>,
        object: &mut Value,
        report: Option<&mut Vec<String>>,
    ) -> Result<(), ApiError> {
        if !object.is_object() || object.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::BadRequest(
                "the body of the request was in an unknown format: expected an object".into(),
            ));
        }
        let r = t.resource;
        let problems = super::builtin::validate(&r.group, &r.kind, object);
        if !problems.is_empty() {
            return Err(ApiError::InvalidObject {
                kind: r.kind.clone(),
                group: r.group.clone(),
                name: object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                causes: problems,
            });
        }
        let cannot_handle = |why: String| {
            ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: {why}",
                r.kind, t.version, r.kind
            ))
        };
        let schema = r.crd.as_ref().and_then(|crd| super::schema::of_version(crd, t.version));
        let (canonical, unknown) = match super::builtin::decode(&r.group, t.version, &r.kind, object) {
            Some(decoded) => {
                let canonical = decoded.map_err(cannot_handle)?;
                let unknown = super::builtin::unknown_fields(object, &canonical);
                (Some(canonical), unknown)
            }
            // A custom resource's unknown fields are those its schema prunes (later).
            None => match (schema, &report) {
                (Some(schema), Some(_)) => (None, super::schema::unknown_fields(schema, object)),
                _ => (None, Vec::new()),
            },
        };
        if let Some(warnings) = report {
            // kube-apiserver's order: a built-in's decoder reports unknown fields, then
            // duplicates; a custom resource's decoder the duplicates, then pruning the
            // unknown fields.
            let unknown = unknown.iter().map(|f| format!("unknown field \"{f}\""));
            let duplicates = ctx.duplicates.iter().map(|f| format!("duplicate field \"{f}\""));
            let problems: Vec<String> =
                if r.crd.is_some() { duplicates.chain(unknown).collect() } else { unknown.chain(duplicates).collect() };
            match ctx.field_validation {
                super::builtin::FieldValidation::Strict if !problems.is_empty() => {
                    let error = format!("strict decoding error: {}", problems.join(", "));
                    return Err(if ctx.patching { ApiError::BadRequest(error) } else { cannot_handle(error) });
                }
                super::builtin::FieldValidation::Warn => warnings.extend(problems),
                _ => {}
            }
        }
        if let Some(canonical) = canonical {
            *object = canonical;
        }
        Ok(())
    }

    /// A custom resource against its CRD's schema at the request version: pruned, and
    /// refused with every violation when it does not fit.
    fn check_schema(&self, t: &Target<'_>, name: &str, object: &mut Value) -> Result<(), ApiError> {
        let Some(schema) = t.resource.crd.as_ref().and_then(|crd| super::schema::of_version(crd, t.version)) else {
            return Ok(());
        };
        let errors = super::schema::check(schema, object);
        if errors.is_empty() {
            return Ok(());
        }
        let causes = errors
            .into_iter()
            .map(|e| match e.split_once(": ") {
                Some((field, message)) => (field.to_owned(), message.to_owned()),
                None => (String::new(), e),
            })
            .collect();
        Err(ApiError::InvalidObject {
            kind: t.resource.kind.clone(),
            group: t.resource.group.clone(),
            name: name.to_owned(),
            causes,
        })
    }

    /// Mutating then validating webhooks, for user requests only.
    async fn admit(&self, ctx: &Ctx, call: &Call<'_>, object: &mut Value) -> Result<Vec<String>, ApiError> {
        if !ctx.admission {
            return Ok(Vec::new());
        }
        let mut warnings = self.webhooks.mutate(&self.registered(MUTATING, call), call, object).await?;
        if call.operation != "DELETE" {
            // Mutation may have dropped defaults; the API server defaults again.
            let r = call.target.resource;
            defaults::apply(&r.group, &r.kind, object, || self.service_ip());
        }
        warnings.extend(self.webhooks.validate(&self.registered(VALIDATING, call), call, object).await?);
        Ok(warnings)
    }

    /// The webhook configurations of one kind and the labels of the call's namespace.
    fn registered(&self, configurations: &str, call: &Call<'_>) -> Registered {
        let target = call.target;
        let namespace_labels = if target.resource.namespaced {
            self.get_raw("", "namespaces", "", target.namespace).map(|ns| labels(&ns)).unwrap_or_default()
        } else {
            Default::default()
        };
        let (configurations, _) = self.store.list(ADMISSION_GROUP, configurations, None);
        Registered { configurations, namespace_labels }
    }

    /// What the API server sets on objects of some kinds at write time.
    fn after_admission(&self, r: &Resource, mut object: Value, old: Option<&Arc<Value>>) -> Value {
        if (r.group.as_str(), r.kind.as_str()) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
            let names = object.pointer("/spec/names").cloned().unwrap_or_default();
            let now = old
                .and_then(|o| o.pointer("/status/conditions/0/lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(defaults::now()));
            let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now});
            object["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
                "storedVersions": [object.pointer("/spec/versions").and_then(Value::as_array)
                    .and_then(|v| v.iter().find(|v| v["storage"] == true)).and_then(|v| v.get("name")).cloned()
                    .unwrap_or_default()],
            });
        }
        object
    }

    fn on_written(&self, r: &Resource, object: &Value) {
        if (r.group.as_str(), r.kind.as_str()) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
            self.resources.upsert_crd(object);
        }
    }
}

/// The kinds whose registry keeps `metadata.generation`: the apps workloads, CRDs and
/// every custom resource (not Pods, Services or Namespaces).
fn tracks_generation(r: &Resource) -> bool {
    r.group == "apps" || r.crd.is_some() || (r.group == "apiextensions.k8s.io" && r.kind == "CustomResourceDefinition")
}

/// An object as it is kept in the store (events.k8s.io Events as core Events).
fn storage_form(r: &Resource, object: Value) -> Value {
    if r.group == super::events::GROUP { super::events::to_core(&object) } else { object }
}

/// The `autoscaling/v1 Scale` view of an object with a scale subresource.
pub fn scale_of(r: &Resource, object: &Value) -> Value {
    let (spec_path, status_path, selector_path) = r.scale.clone().unwrap_or_default();
    let at = |path: &str| object.pointer(&path.replace('.', "/")).cloned().unwrap_or(json!(0));
    let selector = match selector_path.as_deref() {
        Some(".status.selector") | None => {
            let match_labels =
                object.pointer("/spec/selector/matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
            json!(
                match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Some(path) => at(path),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object.pointer("/metadata/name"),
            "namespace": object.pointer("/metadata/namespace"),
            "uid": object.pointer("/metadata/uid"),
            "resourceVersion": object.pointer("/metadata/resourceVersion"),
            "creationTimestamp": object.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": at(&spec_path)},
        "status": {"replicas": at(&status_path), "selector": selector},
    })
}
