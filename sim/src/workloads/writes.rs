//! The controllers' writes: through [`Cluster`](crate::cluster::Cluster) as
//! kube-controller-manager (no admission webhooks), each followed by taking the store
//! events it caused; a failure as a [`WriteError`] naming what was written.

use serde_json::Value;

use super::{Controllers, str_at};
use crate::cluster::{Ctx, DeleteOptions, Patch};
use crate::resources::{Resource, Target};
use crate::status::ApiError;

/// A write of one controller that did not go through.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind} {namespace}/{name}: {source}")]
pub struct WriteError {
    verb: &'static str,
    kind: String,
    namespace: String,
    name: String,
    pub(super) source: ApiError,
}

impl WriteError {
    pub(super) fn is_not_found(&self) -> bool {
        matches!(self.source, ApiError::NotFound { .. })
    }

    /// The API refused a create because the namespace is being deleted.
    pub(super) fn is_namespace_terminating(&self) -> bool {
        matches!(&self.source, ApiError::Forbidden(m) if m.ends_with("because it is being terminated"))
    }

    /// Logs it: conflicts and vanished objects are the normal life of a controller.
    pub(super) fn log(&self) {
        match self.source {
            ApiError::Conflict { .. } | ApiError::NotFound { .. } | ApiError::AlreadyExists { .. } => {
                tracing::debug!(error = %self, "sim workloads: retrying at the next pass");
            }
            _ if self.is_namespace_terminating() => {
                tracing::debug!(error = %self, "sim workloads: the namespace is being deleted");
            }
            _ => tracing::warn!(error = %self, "sim workloads: write failed"),
        }
    }
}

impl Controllers {
    pub(super) async fn create(&mut self, r: &Resource, object: Value) -> Result<Value, WriteError> {
        let namespace = str_at(&object, "/metadata/namespace").to_owned();
        let t = Target { resource: r, version: &r.storage_version, namespace: &namespace };
        let written = self.cluster.create(&Ctx::internal(), &t, object.clone()).await;
        self.drain_events();
        written.map(|w| w.object).map_err(|source| {
            let name = match str_at(&object, "/metadata/name") {
                "" => format!("{}*", str_at(&object, "/metadata/generateName")),
                name => name.to_owned(),
            };
            WriteError { verb: "creating", kind: r.kind.clone(), namespace, name, source }
        })
    }

    /// PUT with the object's resourceVersion: fails with a conflict if it moved since.
    pub(super) async fn replace(
        &mut self,
        r: &Resource,
        sub: Option<&str>,
        object: Value,
    ) -> Result<Value, WriteError> {
        let (namespace, name) = (str_at(&object, "/metadata/namespace"), str_at(&object, "/metadata/name"));
        let t = Target { resource: r, version: &r.storage_version, namespace };
        let verb = if sub == Some("status") { "updating the status of" } else { "updating" };
        let written = self.cluster.replace(&Ctx::internal(), &t, name, sub, object.clone()).await;
        self.drain_events();
        written.map(|w| w.object).map_err(|source| WriteError {
            verb,
            kind: r.kind.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
    }

    pub(super) async fn merge_patch(
        &mut self,
        r: &Resource,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, WriteError> {
        let t = Target { resource: r, version: &r.storage_version, namespace };
        let written = self.cluster.patch(&Ctx::internal(), &t, name, None, &Patch::Merge(patch)).await;
        self.drain_events();
        written.map(|w| w.object).map_err(|source| WriteError {
            verb: "patching",
            kind: r.kind.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
    }

    /// DELETE in the background, with the object's own grace period.
    pub(super) async fn delete(&mut self, r: &Resource, namespace: &str, name: &str) -> Result<(), WriteError> {
        self.delete_with(r, namespace, name, &DeleteOptions::default()).await
    }

    pub(super) async fn delete_with(
        &mut self,
        r: &Resource,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(), WriteError> {
        let t = Target { resource: r, version: &r.storage_version, namespace };
        let written = self.cluster.delete(&Ctx::internal(), &t, name, options).await;
        self.drain_events();
        written.map(|_| ()).map_err(|source| WriteError {
            verb: "deleting",
            kind: r.kind.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
    }
}
