//! PUT and PATCH: the common write path with status and scale subresources, server
//! owned metadata, generation, admission and optimistic concurrency.

use serde_json::{Value, json};

use super::{Cluster, Ctx, Patch, Written, meta, name_of, scale_of, spec_part};
use crate::defaults;
use crate::resources::Target;
use crate::status::ApiError;
use crate::store::{StoreError, rv_of};

impl Cluster {
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
        let ctx = &Ctx { patching: true, ..ctx.clone() };
        if let Patch::Apply(applied) = patch
            && let Some(field) = self.undeclared_field(t, applied)
        {
            // Server-side apply types the applied configuration by the schema first;
            // kube-apiserver answers a field it lacks as a plain error, whatever the
            // fieldValidation.
            return Err(ApiError::Unclassified(format!(
                "failed to create typed patch object ({}/{name}; {}, Kind={}): .{field}: field not declared in schema",
                t.namespace,
                if t.resource.group.is_empty() {
                    format!("/{}", t.version)
                } else {
                    format!("{}/{}", t.resource.group, t.version)
                },
                t.resource.kind
            )));
        }
        for _ in 0..5 {
            if let Patch::Apply(applied) = patch
                && self.store.get(&t.key(name)).is_none()
            {
                let mut object = applied.clone();
                match object.get_mut("metadata").and_then(Value::as_object_mut) {
                    Some(meta) => {
                        meta.insert("name".into(), json!(name));
                    }
                    None => return Err(ApiError::BadRequest("an applied configuration needs metadata".into())),
                }
                return self.create_as(ctx, t, object, "Apply").await;
            }
            let operation = if matches!(patch, Patch::Apply(_)) { "Apply" } else { "Update" };
            // A patch naming a resourceVersion is a precondition: a conflict is final.
            let precondition = patch.written().and_then(rv_of);
            let result = self
                .write(ctx, t, name, sub, precondition, patch.written(), operation, |current| {
                    let mut doc = current.clone();
                    if let Patch::Apply(applied) = patch
                        && !ctx.force
                    {
                        let found = crate::managed::conflicts(current, applied, &ctx.field_manager);
                        if !found.is_empty() {
                            let (message, causes) = crate::managed::conflict_error(&found);
                            return Err(ApiError::ApplyConflict { message, causes });
                        }
                    }
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
                            doc = crate::strategic::apply(&doc, p).map_err(|e| {
                                ApiError::Invalid(format!(
                                    "the server rejected our request due to an error in our request: {e}"
                                ))
                            })?;
                        }
                        Patch::Json(p) => json_patch_as_apiserver(&mut doc, &p.0).map_err(|e| {
                            ApiError::Invalid(format!(
                                "the server rejected our request due to an error in our request: {e}"
                            ))
                        })?,
                    }
                    if let Patch::Apply(applied) = patch {
                        crate::managed::remove_unapplied(current, &mut doc, applied, &ctx.field_manager);
                    }
                    Ok(doc)
                })
                .await;
            match result {
                Err(ApiError::Conflict { .. }) if precondition.is_none() => continue,
                other => return other,
            }
        }
        Err(ApiError::Conflict {
            resource: t.qualified(),
            name: name.into(),
            message: "too many concurrent writes".into(),
        })
    }

    /// The first field of an applied configuration that its kind's schema does not
    /// declare (`spec.analysiz`).
    fn undeclared_field(&self, t: &Target<'_>, applied: &Value) -> Option<String> {
        let r = t.resource;
        let unknown = match crate::builtin::decode(&r.group, t.version, &r.kind, applied) {
            Some(Ok(canonical)) => crate::builtin::unknown_fields(applied, &canonical),
            // A wrong type is the write's own error to report.
            Some(Err(_)) => return None,
            None => {
                let schema = r.crd.as_ref().and_then(|crd| crate::schema::of_version(crd, t.version))?;
                crate::schema::unknown_fields(schema, applied)
            }
        };
        unknown.into_iter().next()
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
        if !changed.is_object() || changed.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::BadRequest("the patched object is not an object with metadata".into()));
        }
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
        let mut decode_warnings = Vec::new();
        self.decode(ctx, t, &mut object, Some(&mut decode_warnings))?;
        let call = ctx.call("UPDATE", t, sub, name, Some(&current));
        let mut warnings = self.admit(ctx, &call, &mut object).await?;
        self.decode(ctx, t, &mut object, None)?;
        self.check_schema(t, name, &mut object)?;
        warnings.splice(0..0, decode_warnings);
        let claimed = written.cloned().unwrap_or_else(|| object.clone());
        let entry_sub = sub.filter(|s| *s == "status");
        let changed = crate::managed::changed(&current, &object);
        if operation == "Apply" {
            crate::managed::record(&mut object, &ctx.field_manager, operation, entry_sub, &claimed);
        } else {
            crate::managed::record_update(&mut object, &current, &changed, &ctx.field_manager, entry_sub);
        }
        crate::managed::transfer(&mut object, &changed, &ctx.field_manager, operation, entry_sub);
        if super::tracks_generation(r) && spec_part(r, &object) != spec_part(r, &current) {
            let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta(&mut object).insert("generation".into(), json!(generation));
        }
        let mut stored_new = super::storage_form(r, self.to_version(r, object, &r.storage_version).await?);
        if r.status && r.crd.is_none() {
            // kube's update strategies keep the stored status of a write to the main
            // resource (or scale), and the stored spec of a status write, whatever a
            // request version that cannot say all of it (autoscaling/v1) brought back.
            let kept = if sub == Some("status") { "spec" } else { "status" };
            match stored.get(kept) {
                Some(v) => stored_new[kept] = v.clone(),
                None => _ = stored_new.as_object_mut().map(|m| m.remove(kept)),
            }
        }
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
        if super::delete::deleted_by_update(&saved) {
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
}

/// RFC 6902 as kube-apiserver applies it (evanphx/json-patch): a `test` for `null` at a
/// path that does not exist passes, which is how clients add the first finalizer or
/// label safely. All or nothing, like the rest of the patch.
fn json_patch_as_apiserver(
    doc: &mut serde_json::Value,
    ops: &[json_patch::PatchOperation],
) -> Result<(), json_patch::PatchError> {
    let mut work = doc.clone();
    for op in ops {
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
            && work.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut work, std::slice::from_ref(op))?;
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::json_patch_as_apiserver;

    fn ops(v: serde_json::Value) -> Vec<json_patch::PatchOperation> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_test_for_null_passes_on_a_missing_path_as_in_kube_apiserver() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let first_finalizer = ops(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}
        ]));
        json_patch_as_apiserver(&mut doc, &first_finalizer).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["x"]));
        // The same patch again: the path exists now, the test fails, nothing changes.
        assert!(json_patch_as_apiserver(&mut doc, &first_finalizer).is_err());
        assert_eq!(doc["metadata"]["finalizers"], json!(["x"]));
    }
}
