//! The API semantics over the store: create, update, patch and delete with metadata,
//! generation, status and scale subresources, finalizers, garbage collection, CRD
//! registration, conversion and the admission chain. The HTTP layer and the simulated
//! controllers both go through here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use super::admission::{Call, Webhooks};
use super::defaults;
use super::resources::{Resource, Resources};
use super::selector::{FieldSelector, LabelSelector, labels};
use super::status::ApiError;
use super::store::{ObjectKey, Store, StoreError, rv_of};

/// Who writes, and how.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub dry_run: bool,
    /// Run the admission webhooks (user requests) or not (the simulated controllers).
    pub admission: bool,
    pub user: String,
    /// The `managedFields` manager of this write.
    pub field_manager: String,
}

impl Ctx {
    /// A request from a client of the API.
    pub fn user(name: &str) -> Self {
        Self { dry_run: false, admission: true, user: name.to_owned(), field_manager: "unknown".to_owned() }
    }

    /// A simulated controller: no webhooks, like kube-controller-manager's own kinds.
    pub fn internal() -> Self {
        Self {
            dry_run: false,
            admission: false,
            user: "system:kube-controller-manager".to_owned(),
            field_manager: "kube-controller-manager".to_owned(),
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

/// The target of a request: which resource, at which version, where.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub resource: &'a Resource,
    pub version: &'a str,
    pub namespace: &'a str,
}

impl Target<'_> {
    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(&self.resource.group, &self.resource.plural, self.namespace, name)
    }

    /// `deployments.apps`, as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound { kind: self.qualified(), name: name.to_owned() }
    }
}

#[derive(Debug, Default)]
pub struct Cluster {
    pub store: Store,
    pub resources: Resources,
    pub webhooks: Webhooks,
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
        if object.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
            return Ok(object);
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
        let (items, rv) = self.store.list(&t.resource.group, &t.resource.plural, ns);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if label.matches(&labels(&item)) && field.matches(&item) {
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
        if r.status || object.get("spec").is_some() || r.crd.is_some() {
            meta(&mut object).insert("generation".into(), json!(1));
        }
        object["apiVersion"] = json!(r.api_version(t.version));
        object["kind"] = json!(r.kind);
        if r.namespaced && self.get_raw("", "namespaces", "", t.namespace).is_none() {
            return Err(ApiError::NotFound { kind: "namespaces".into(), name: t.namespace.to_owned() });
        }
        defaults::apply(&r.group, &r.kind, &mut object, || self.service_ip());
        let name = name_of(&object).to_owned();
        let call = Call {
            operation: "CREATE",
            target: t,
            sub: None,
            name: &name,
            old: None,
            dry_run: ctx.dry_run,
            user: &ctx.user,
        };
        let warnings = self.admit(ctx, &call, &mut object).await?;
        super::managed::record(&mut object, &ctx.field_manager, operation, None, &written);
        let stored = self.to_version(r, object, &r.storage_version).await?;
        let stored = self.after_admission(r, stored, None);
        if ctx.dry_run {
            let object = self.to_version(r, stored, t.version).await?;
            return Ok(Written { object, warnings, created: true });
        }
        let saved = self.store.create(t.key(&name), stored).map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::AlreadyExists { kind: t.qualified(), name: name.clone() },
            other => ApiError::Internal(other.to_string()),
        })?;
        self.on_written(r, &saved);
        let object = self.to_version(r, (*saved).clone(), t.version).await?;
        Ok(Written { object, warnings, created: true })
    }

    /// PUT: a whole object (or its status or scale).
    pub async fn replace(
        &self,
        ctx: &Ctx,
        t: &Target<'_>,
        name: &str,
        sub: Option<&str>,
        body: Value,
    ) -> Result<Written, ApiError> {
        let expected = rv_of(&body);
        let written = body.clone();
        self.write(ctx, t, name, sub, expected, Some(&written), "Update", |_| Ok(body)).await
    }

    /// PATCH: merge, JSON or strategic patch on the current object; retried on races.
    pub async fn patch(
        &self,
        ctx: &Ctx,
        t: &Target<'_>,
        name: &str,
        sub: Option<&str>,
        patch: &Patch,
    ) -> Result<Written, ApiError> {
        for _ in 0..5 {
            if let Patch::Apply(applied) = patch
                && self.store.get(&t.key(name)).is_none()
            {
                let mut object = applied.clone();
                object["metadata"]["name"] = json!(name);
                return self.create_as(ctx, t, object, "Apply").await;
            }
            let operation = if matches!(patch, Patch::Apply(_)) { "Apply" } else { "Update" };
            let result = self
                .write(ctx, t, name, sub, None, patch.written(), operation, |current| {
                    let mut doc = current.clone();
                    match patch {
                        Patch::Merge(p) => json_patch::merge(&mut doc, p),
                        Patch::Strategic(_) if t.resource.crd.is_some() => {
                            return Err(ApiError::UnsupportedMediaType(
                                "strategic merge patch is not supported for custom resources: use a JSON merge patch"
                                    .into(),
                            ));
                        }
                        Patch::Apply(p) if t.resource.crd.is_some() => json_patch::merge(&mut doc, p),
                        Patch::Strategic(p) | Patch::Apply(p) => {
                            doc = super::strategic::apply(&doc, p).map_err(|e| {
                                ApiError::Invalid(format!(
                                    "the server rejected our request due to an error in our request: {e}"
                                ))
                            })?;
                        }
                        Patch::Json(p) => json_patch::patch(&mut doc, &p.0).map_err(|e| {
                            ApiError::Invalid(format!(
                                "the server rejected our request due to an error in our request: {e}"
                            ))
                        })?,
                    }
                    Ok(doc)
                })
                .await;
            match result {
                Err(ApiError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(ApiError::Conflict {
            resource: t.qualified(),
            name: name.into(),
            message: "too many concurrent writes".into(),
        })
    }

    /// The common path of PUT and PATCH.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        ctx: &Ctx,
        t: &Target<'_>,
        name: &str,
        sub: Option<&str>,
        expected: Option<u64>,
        written: Option<&Value>,
        operation: &str,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let r = t.resource;
        let stored = self.store.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        let stored_rv = rv_of(&stored);
        let current = self.to_version(r, (*stored).clone(), t.version).await?;
        let view = match sub {
            Some("scale") => scale_of(r, &current),
            _ => current.clone(),
        };
        let changed = change(&view)?;
        let mut object = match sub {
            Some("status") => {
                let mut o = current.clone();
                o["status"] = changed.get("status").cloned().unwrap_or(Value::Null);
                o
            }
            Some("scale") => {
                let replicas = changed.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
                let mut o = current.clone();
                o["spec"]["replicas"] = replicas;
                o
            }
            Some(other) => {
                return Err(ApiError::NotFound { kind: format!("{}/{other}", t.qualified()), name: name.into() });
            }
            None => {
                let mut o = changed;
                if r.status {
                    o["status"] = current.get("status").cloned().unwrap_or(Value::Null);
                }
                o
            }
        };
        if object.get("status").is_some_and(Value::is_null) {
            object.as_object_mut().map(|m| m.remove("status"));
        }
        if name_of(&object) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&object)
            )));
        }
        // What the API server owns stays as it was.
        let old_meta = current.get("metadata").cloned().unwrap_or_default();
        let m = meta(&mut object);
        for k in
            ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace"]
        {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        object["apiVersion"] = json!(r.api_version(t.version));
        object["kind"] = json!(r.kind);
        defaults::apply(&r.group, &r.kind, &mut object, || self.service_ip());
        let op_sub = sub.filter(|s| *s != "status");
        let call = Call {
            operation: "UPDATE",
            target: t,
            sub: op_sub,
            name,
            old: Some(&current),
            dry_run: ctx.dry_run,
            user: &ctx.user,
        };
        let warnings = self.admit(ctx, &call, &mut object).await?;
        let claimed = written.cloned().unwrap_or_else(|| object.clone());
        super::managed::record(&mut object, &ctx.field_manager, operation, sub.filter(|s| *s == "status"), &claimed);
        if spec_part(r, &object) != spec_part(r, &current) {
            let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta(&mut object).insert("generation".into(), json!(generation));
        }
        let stored_new = self.to_version(r, object, &r.storage_version).await?;
        let stored_new = self.after_admission(r, stored_new, Some(&stored));
        if ctx.dry_run {
            let object = self.to_version(r, stored_new, t.version).await?;
            return Ok(Written { object, warnings, created: false });
        }
        let expected = expected.or(stored_rv);
        let saved = self.store.update(t.key(name), stored_new, expected).map_err(|e| match e {
            StoreError::Conflict => ApiError::Conflict {
                resource: t.qualified(),
                name: name.into(),
                message: StoreError::Conflict.to_string(),
            },
            StoreError::NotFound => t.not_found(name),
            other => ApiError::Internal(other.to_string()),
        })?;
        // The last finalizer of an object being deleted is gone: it goes now.
        let finalizers_empty =
            saved.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if saved.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty {
            let _ = self.store.delete(&t.key(name));
            self.on_deleted(r, &saved, "Background");
        } else {
            self.on_written(r, &saved);
        }
        let object = match sub {
            Some("scale") => scale_of(r, &saved),
            _ => self.to_version(r, (*saved).clone(), t.version).await?,
        };
        Ok(Written { object, warnings, created: false })
    }

    /// DELETE: finalizers first, then the object and its dependents.
    pub async fn delete(&self, ctx: &Ctx, t: &Target<'_>, name: &str, propagation: &str) -> Result<Written, ApiError> {
        let r = t.resource;
        let stored = self.store.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        let current = self.to_version(r, (*stored).clone(), t.version).await?;
        let mut scratch = current.clone();
        let call = Call {
            operation: "DELETE",
            target: t,
            sub: None,
            name,
            old: Some(&current),
            dry_run: ctx.dry_run,
            user: &ctx.user,
        };
        let warnings = self.admit(ctx, &call, &mut scratch).await?;
        if ctx.dry_run {
            return Ok(Written { object: current, warnings, created: false });
        }
        let has_finalizers =
            stored.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if stored.pointer("/metadata/deletionTimestamp").is_none() {
                let mut marked = (*stored).clone();
                let m = meta(&mut marked);
                m.insert("deletionTimestamp".into(), json!(defaults::now()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                let saved =
                    self.store.update(t.key(name), marked, None).map_err(|e| ApiError::Internal(e.to_string()))?;
                let object = self.to_version(r, (*saved).clone(), t.version).await?;
                return Ok(Written { object, warnings, created: false });
            }
            return Ok(Written { object: current, warnings, created: false });
        }
        let gone = self.store.delete(&t.key(name)).map_err(|_| t.not_found(name))?;
        self.on_deleted(r, &gone, propagation);
        let object = self.to_version(r, (*gone).clone(), t.version).await?;
        Ok(Written { object, warnings, created: false })
    }

    /// Mutating then validating webhooks, for user requests only.
    async fn admit(&self, ctx: &Ctx, call: &Call<'_>, object: &mut Value) -> Result<Vec<String>, ApiError> {
        if !ctx.admission {
            return Ok(Vec::new());
        }
        let mut warnings = self.webhooks.mutate(self, call, object).await?;
        if call.operation != "DELETE" {
            // Mutation may have dropped defaults; the API server defaults again.
            let r = call.target.resource;
            defaults::apply(&r.group, &r.kind, object, || self.service_ip());
        }
        warnings.extend(self.webhooks.validate(self, call, object).await?);
        Ok(warnings)
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

    /// Garbage collection and the cascades of namespaces and CRDs.
    fn on_deleted(&self, r: &Resource, object: &Value, propagation: &str) {
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut work = vec![uid];
        while let Some(owner) = work.pop() {
            for resource in self.resources.snapshot() {
                let (items, _) = self.store.list(&resource.group, &resource.plural, None);
                for item in items {
                    let refs = item.pointer("/metadata/ownerReferences").and_then(Value::as_array);
                    if !refs.is_some_and(|refs| refs.iter().any(|o| o["uid"] == owner.as_str())) {
                        continue;
                    }
                    let key = ObjectKey::new(
                        &resource.group,
                        &resource.plural,
                        item.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
                        name_of(&item),
                    );
                    if propagation == "Orphan" {
                        let mut orphan = (*item).clone();
                        if let Some(refs) =
                            orphan.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut)
                        {
                            refs.retain(|o| o["uid"] != owner.as_str());
                        }
                        let _ = self.store.update(key, orphan, None);
                    } else if self.store.delete(&key).is_ok() {
                        work.push(item.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned());
                    }
                }
            }
        }
        match (r.group.as_str(), r.kind.as_str()) {
            ("", "Namespace") => {
                let ns = name_of(object);
                for resource in self.resources.snapshot().into_iter().filter(|r| r.namespaced) {
                    let (items, _) = self.store.list(&resource.group, &resource.plural, Some(ns));
                    for item in items {
                        let _ =
                            self.store.delete(&ObjectKey::new(&resource.group, &resource.plural, ns, name_of(&item)));
                    }
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let group = object.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
                let plural = object.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
                let (items, _) = self.store.list(group, plural, None);
                for item in items {
                    let ns = item.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
                    let _ = self.store.delete(&ObjectKey::new(group, plural, ns, name_of(&item)));
                }
                self.resources.remove_crd(group, plural);
            }
            _ => {}
        }
    }
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
