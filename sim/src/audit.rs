//! The audit log, as kube-apiserver writes it with `--audit-log-path` at level Metadata:
//! one `audit.k8s.io/v1` Event per resource request, as a JSON line, with the verb, the
//! object and the User-Agent. The tests read it to prove that our server's RBAC covers
//! every call it made.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use http::Method;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// Where the events go.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

/// What kube-apiserver's authorizer sees of a request: verb and object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: &'static str,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// The verb of a request as RBAC names it.
    pub fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
        match (method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        }
    }
}

impl AuditLog {
    /// Appends to `path` (created if absent).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Mutex::new(file) })
    }

    /// One event, written whole: the request received at `received` is answered now.
    pub fn record(&self, uri: &str, user_agent: &str, attributes: &Attributes, code: u16, received: Timestamp) {
        let micros = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": crate::defaults::uid(),
            "stage": "ResponseComplete",
            "requestReceivedTimestamp": micros(received),
            "stageTimestamp": micros(Timestamp::now()),
            "requestURI": uri,
            "verb": attributes.verb,
            "user": {"username": "kubernetes-admin"},
            "userAgent": user_agent,
            "objectRef": {
                "resource": attributes.resource,
                "subresource": attributes.subresource,
                "namespace": attributes.namespace,
                "name": attributes.name,
                "apiGroup": attributes.group,
                "apiVersion": attributes.version,
            },
            "responseStatus": {"code": code},
        });
        let mut line = serde_json::to_vec(&strip_nulls(event)).unwrap_or_default();
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, v| !v.is_null());
        for value in map.values_mut() {
            *value = strip_nulls(value.take());
        }
    }
    v
}
