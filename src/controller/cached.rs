//! What the controller's caches keep of an object: its metadata, without the fields no
//! loop reads. The opt-in loop caches every Deployment of the cluster and the release
//! loop every Canary; kept whole, with their `managedFields` (a JSON tree per field
//! manager) and kubectl's last-applied copy, they were most of `serve`'s memory (274 MiB
//! at 5,000 opted-in Deployments). A reconcile reads what it decides on afresh from the
//! API, so the caches only need to say which object changed and whom it concerns: names,
//! labels, annotations and owners.
//!
//! The lists and watches ask for metadata only (`PartialObjectMetadata`, as kube's
//! metadata watcher does); a server that answers with whole objects is read the same way.

use std::borrow::Cow;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

/// The annotation `kubectl apply` keeps its last applied configuration in: the whole
/// object again, as a string.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The cached metadata of a `K`, addressed as a `K` (same kind, group, version, plural).
pub struct Meta<K> {
    pub metadata: ObjectMeta,
    kind: PhantomData<fn() -> K>,
}

impl<K> Meta<K> {
    pub fn new(mut metadata: ObjectMeta) -> Self {
        metadata.managed_fields = None;
        if let Some(annotations) = &mut metadata.annotations {
            annotations.remove(LAST_APPLIED);
        }
        Self { metadata, kind: PhantomData }
    }
}

impl<K> Clone for Meta<K> {
    fn clone(&self) -> Self {
        Self { metadata: self.metadata.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Meta<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta").field("metadata", &self.metadata).finish()
    }
}

impl<'de, K> Deserialize<'de> for Meta<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Everything but `metadata` (spec, status, kind) is skipped unread.
        #[derive(Deserialize)]
        struct Object {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        Object::deserialize(deserializer).map(|o| Self::new(o.metadata))
    }
}

impl<K: Resource> Resource for Meta<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn metadata_api() -> bool {
        true
    }

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::ResourceExt;

    use super::*;

    /// The Deployment of a real set-image review, as a watch would bring it.
    fn deployment() -> serde_json::Value {
        let review: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/admission/set-image.json")).unwrap();
        let mut object = review["request"]["object"].clone();
        object["metadata"]["annotations"][LAST_APPLIED] = serde_json::json!("{\"apiVersion\":\"apps/v1\"}");
        object
    }

    #[test]
    fn keeps_what_the_loops_read_and_drops_managed_fields_and_the_last_applied_copy() {
        let object = deployment();
        assert!(object["metadata"]["managedFields"].as_array().is_some_and(|f| !f.is_empty()));
        let full: Deployment = serde_json::from_value(object.clone()).unwrap();
        let meta: Meta<Deployment> = serde_json::from_value(object).unwrap();
        assert_eq!(meta.name_any(), full.name_any());
        assert_eq!(meta.namespace(), full.namespace());
        assert_eq!(meta.uid(), full.uid());
        assert_eq!(meta.resource_version(), full.resource_version());
        assert_eq!(meta.labels(), full.labels());
        assert_eq!(meta.owner_references(), full.owner_references());
        assert!(meta.metadata.managed_fields.is_none());
        assert!(!meta.annotations().contains_key(LAST_APPLIED));
        let mut kept = full.annotations().clone();
        kept.remove(LAST_APPLIED);
        assert_eq!(meta.annotations(), &kept);
        assert!(kept.keys().any(|k| k.starts_with(crate::api::annotations::PREFIX)), "the fixture is opted in");
        // Much smaller than the object it stands for.
        let (kept, whole) = (serde_json::to_vec(&meta.metadata).unwrap(), serde_json::to_vec(&full).unwrap());
        assert!(kept.len() * 3 < whole.len(), "{} bytes kept of {}", kept.len(), whole.len());
    }

    #[test]
    fn is_addressed_as_the_kind_it_stands_for() {
        assert_eq!(Meta::<Deployment>::kind(&()), "Deployment");
        assert_eq!(Meta::<Deployment>::api_version(&()), "apps/v1");
        assert_eq!(Meta::<Deployment>::url_path(&(), Some("test")), Deployment::url_path(&(), Some("test")));
        let canary = Meta::<crate::api::canary::v1beta1::Canary>::url_path(&(), None);
        assert_eq!(canary, crate::api::canary::v1beta1::Canary::url_path(&(), None));
        // An owner reference to it names the Deployment, so the Canary it owns is found.
        let meta: Meta<Deployment> = serde_json::from_value(deployment()).unwrap();
        let owner = meta.controller_owner_ref(&()).unwrap();
        assert_eq!((owner.kind.as_str(), owner.api_version.as_str()), ("Deployment", "apps/v1"));
        assert_eq!(Some(owner.uid), meta.uid());
    }

    #[test]
    fn a_metadata_only_answer_reads_the_same() {
        let object = deployment();
        let partial = serde_json::json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        });
        let from_partial: Meta<Deployment> = serde_json::from_value(partial).unwrap();
        let from_whole: Meta<Deployment> = serde_json::from_value(object).unwrap();
        assert_eq!(from_partial.metadata, from_whole.metadata);
    }
}
