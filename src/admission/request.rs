//! The parts of an AdmissionReview the Deployment hooks read, parsed in one pass: the
//! rest of the objects (managedFields, status, the spec outside the template, the user)
//! is skipped, not built. A body this parse refuses goes through the full one
//! ([`super::parse`]), which says why in the answer.
//!
//! Kept for what it was measured to save (issue 27; BENCHMARKS.md, "The second admission
//! parse"): instructions counted by callgrind, paired builds, `serve --webhook-only` per
//! review over TLS: 346k with this parse against 503k with every body through the full
//! one for an opted-in set-image UPDATE (31 % less), 176k against 321k for a Deployment
//! not opted in (45 % less). Not kube's `AdmissionRequest<K>`: its `K` is a `Resource`,
//! with the whole `ObjectMeta` (managedFields and all) that this parse skips.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::core::admission::Operation;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::deployment::{Object, is_canary_owner};
use crate::release::revision::{Revision, Template};

// Strings are borrowed from the body when they have no escapes (`Cow`): most are only
// compared or copied once into the log line.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Request<'a>,
}

/// What kube-apiserver asks, with the fields `AdmissionRequest` requires required here too.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Kind<'a>,
    #[allow(dead_code)]
    resource: IgnoredAny,
    #[serde(default, borrow)]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[allow(dead_code)]
    user_info: IgnoredAny,
    #[serde(default, borrow)]
    pub object: Option<Deployment<'a>>,
    #[serde(default, borrow)]
    pub old_object: Option<Deployment<'a>>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct Kind<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[allow(dead_code)]
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// A Deployment as the hooks read it.
#[derive(Debug, Deserialize)]
pub struct Deployment<'a> {
    #[serde(borrow)]
    metadata: Metadata<'a>,
    #[serde(default, borrow)]
    spec: Option<Spec<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, borrow)]
    owner_references: Option<Vec<Owner<'a>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Owner<'a> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
struct Spec<'a> {
    #[serde(default)]
    paused: Option<Value>,
    /// An explicit null is kept (`Some(Null)`): it has a revision like any template.
    /// Read as a [`Template`], not a `Value`: only its revision is wanted.
    #[serde(default, borrow, deserialize_with = "present")]
    template: Option<Template<'a>>,
}

fn present<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Template<'a>>, D::Error> {
    Template::deserialize(d).map(Some)
}

/// The request of a review body, when it is an AdmissionReview v1 this parse reads whole;
/// `None` sends it to the full parse.
pub fn parse(body: &[u8]) -> Option<Request<'_>> {
    // serde_json checks UTF-8 only in the strings it reads, not in those it skips; JSON
    // is UTF-8 throughout, and a body that is not goes to the full parse, which says so.
    let body = std::str::from_utf8(body).ok()?;
    let envelope: Envelope<'_> = serde_json::from_str(body).ok()?;
    let request = envelope.request;
    let valid = envelope.kind == super::KIND
        && envelope.api_version == super::API_VERSION
        && !request.uid.is_empty()
        && (request.old_object.is_some() || !matches!(request.operation, Operation::Update));
    valid.then_some(request)
}

impl<'a> Object for Deployment<'a> {
    type Template = Template<'a>;

    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn annotations(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.metadata.annotations.as_ref().unwrap_or(&NONE)
    }

    fn template(&self) -> Option<&Template<'a>> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn revision(template: &Template<'a>) -> Revision {
        Revision::of_parsed(template)
    }

    fn paused(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.paused.as_ref()).and_then(Value::as_bool).unwrap_or(false)
    }

    fn owned_by_canary(&self) -> bool {
        self.metadata.owner_references.iter().flatten().any(|o| is_canary_owner(&o.kind, &o.api_version))
    }
}
