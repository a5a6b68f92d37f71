//! The parts of an AdmissionReview the Deployment hooks read, parsed in one pass: the
//! rest of the objects (managedFields, status, the spec outside the template, the user)
//! is skipped, not built. A body this parse refuses goes through the full one
//! ([`super::parse`]), which says why in the answer.

use std::collections::BTreeMap;

use kube::core::admission::Operation;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::deployment::{Object, is_canary_owner};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: String,
    kind: String,
    request: Request,
}

/// What kube-apiserver asks, with the fields `AdmissionRequest` requires required here too.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub uid: String,
    pub kind: Kind,
    #[allow(dead_code)]
    resource: IgnoredAny,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[allow(dead_code)]
    user_info: IgnoredAny,
    #[serde(default)]
    pub object: Option<Deployment>,
    #[serde(default)]
    pub old_object: Option<Deployment>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct Kind {
    pub group: String,
    #[allow(dead_code)]
    version: String,
    pub kind: String,
}

/// A Deployment as the hooks read it.
#[derive(Debug, Deserialize)]
pub struct Deployment {
    metadata: Metadata,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    owner_references: Option<Vec<Owner>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Owner {
    api_version: String,
    kind: String,
}

#[derive(Debug, Deserialize)]
struct Spec {
    #[serde(default)]
    paused: Option<Value>,
    /// An explicit null is kept (`Some(Null)`): it has a revision like any template.
    #[serde(default, deserialize_with = "present")]
    template: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The request of a review body, when it is an AdmissionReview v1 this parse reads whole;
/// `None` sends it to the full parse.
pub fn parse(body: &[u8]) -> Option<Request> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let request = envelope.request;
    let valid = envelope.kind == super::KIND
        && envelope.api_version == super::API_VERSION
        && !request.uid.is_empty()
        && (request.old_object.is_some() || !matches!(request.operation, Operation::Update));
    valid.then_some(request)
}

impl Object for Deployment {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn annotations(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.metadata.annotations.as_ref().unwrap_or(&NONE)
    }

    fn template(&self) -> Option<&Value> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn paused(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.paused.as_ref()).and_then(Value::as_bool).unwrap_or(false)
    }

    fn owned_by_canary(&self) -> bool {
        self.metadata.owner_references.iter().flatten().any(|o| is_canary_owner(&o.kind, &o.api_version))
    }
}
