//! DELETE: finalizers, then the object, its dependents (garbage collection) and the
//! cascades of namespaces and CRDs.

use serde_json::{Value, json};

use super::{Cluster, Ctx, Written, meta, name_of};
use crate::defaults;
use crate::resources::{Resource, Target};
use crate::status::ApiError;
use crate::store::ObjectKey;

impl Cluster {
    /// DELETE: finalizers first, then the object and its dependents.
    pub async fn delete(&self, ctx: &Ctx, t: &Target<'_>, name: &str, propagation: &str) -> Result<Written, ApiError> {
        let r = t.resource;
        let stored = self.store.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        let current = self.to_version(r, (*stored).clone(), t.version).await?;
        let mut scratch = current.clone();
        let call = ctx.call("DELETE", t, None, name, Some(&current));
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

    /// Garbage collection and the cascades of namespaces and CRDs.
    pub(super) fn on_deleted(&self, r: &Resource, object: &Value, propagation: &str) {
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut work = vec![uid];
        while let Some(owner) = work.pop() {
            for key in self.store.dependents(&owner) {
                let Some(item) = self.store.get(&key) else { continue };
                if propagation == "Orphan" {
                    let mut orphan = (*item).clone();
                    if let Some(refs) = orphan.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                        refs.retain(|o| o["uid"] != owner.as_str());
                    }
                    let _ = self.store.update(key, orphan, None);
                } else if self.store.delete(&key).is_ok() {
                    work.push(item.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned());
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
