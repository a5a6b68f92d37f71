//! The AdmissionReview v1 protocol: body in, review out, kind logic elsewhere.
//!
//! The handler never fails: a body that is not an AdmissionReview still gets an
//! AdmissionReview back (`allowed: false` with a message), so the API server and
//! whoever reads its logs learn what was wrong.

pub mod canary;
pub mod deployment;
pub mod request;
pub mod templates;

use std::collections::HashMap;

/// An answer is kube's; [`Answer`] writes it on the wire.
pub use kube::core::admission::AdmissionResponse;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde::{Serialize, Serializer};

use self::deployment::{Object, Review};
pub use crate::api::field::Findings;
use crate::release::lock::Transition;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Which review a path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    MutateDeployments,
    ValidateDeployments,
    ValidateCanaries,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::MutateDeployments, Hook::ValidateDeployments, Hook::ValidateCanaries];

    pub fn path(self) -> &'static str {
        match self {
            Hook::MutateDeployments => "/mutate/deployments",
            Hook::ValidateDeployments => "/validate/deployments",
            Hook::ValidateCanaries => "/validate/canaries",
        }
    }

    /// The hook served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.path() == path)
    }
}

/// How a review ended, the `outcome` label of our metrics, in Kubernetes' words: an
/// object with field errors is `invalid` (kube-apiserver's 422 Invalid), a body that
/// is not an AdmissionReview is `malformed` (400 BadRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Patched,
    Invalid,
    Malformed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Invalid => "invalid",
            Outcome::Malformed => "malformed",
        }
    }

    /// How `response` ended.
    pub fn of(response: &AdmissionResponse) -> Self {
        match (response.allowed, &response.patch) {
            (true, Some(_)) => Outcome::Patched,
            (true, None) => Outcome::Allowed,
            (false, _) if response.result.code == 400 => Outcome::Malformed,
            (false, _) => Outcome::Invalid,
        }
    }
}

/// The AdmissionReview v1 that carries an answer, as written on the wire.
///
/// Ours, not kube's `AdmissionResponse::into_review`: kube serializes the patch
/// (`Option<Vec<u8>>`) as a JSON array of numbers, where Kubernetes' API has a base64
/// string (a Go `[]byte` in JSON; the sim's API server reads nothing else), and writes
/// a `status` into every allowed answer. This writes the patch in base64 and the status
/// only in a denial, the bytes kube-apiserver has always had from us.
pub struct Answer<'a>(pub &'a AdmissionResponse);

impl Serialize for Answer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Review<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: Response<'a>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Response<'a> {
            uid: &'a str,
            allowed: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a Status>,
            #[serde(skip_serializing_if = "Option::is_none", serialize_with = "base64")]
            patch: Option<&'a [u8]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch_type: Option<&'static str>,
            #[serde(skip_serializing_if = "HashMap::is_empty")]
            audit_annotations: &'a HashMap<String, String>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            warnings: &'a [String],
        }
        fn base64<S: Serializer>(bytes: &Option<&[u8]>, serializer: S) -> Result<S::Ok, S::Error> {
            use base64::Engine;
            let bytes = bytes.unwrap_or_default();
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        let r = self.0;
        let response = Response {
            uid: &r.uid,
            allowed: r.allowed,
            status: (!r.allowed).then_some(&r.result),
            patch: r.patch.as_deref(),
            // kube keeps the patch type private; `with_patch` sets it with the patch, always JSONPatch.
            patch_type: r.patch.as_ref().map(|_| "JSONPatch"),
            audit_annotations: &r.audit_annotations,
            warnings: r.warnings.as_deref().unwrap_or_default(),
        };
        Review { api_version: API_VERSION, kind: KIND, response }.serialize(serializer)
    }
}

/// An allowed answer to the request `uid`. kube builds one from a whole
/// `AdmissionRequest` (`From`), which the Deployment hooks' parse does not build, or
/// without a uid (`invalid`): the same one is built here for both parses, so they answer
/// alike.
fn allow(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_owned();
    response.allowed = true;
    response.result = Status::default();
    response
}

/// A denial; kube's `deny` sets the message only, kube-apiserver also reads the code and
/// reason (400 BadRequest for a body that is no review, 403 Forbidden for field errors).
fn deny(uid: &str, code: u16, reason: &str, message: String) -> AdmissionResponse {
    let mut response = allow(uid).deny(&message);
    response.result = Status::failure(&message, reason).with_code(code);
    response
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    response.warnings = (!warnings.is_empty()).then_some(warnings);
    response
}

/// The facts about a review worth a log line.
#[derive(Debug, Default)]
pub struct Summary {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub dry_run: bool,
    pub transition: Option<Transition>,
}

/// Answers one review body. Pure: no I/O, no API calls.
pub fn review(hook: Hook, body: &[u8]) -> (AdmissionResponse, Summary) {
    // The Deployment hooks read a few fields: parse only those, skipping the rest.
    if matches!(hook, Hook::MutateDeployments | Hook::ValidateDeployments)
        && let Some(request) = request::parse(body)
    {
        let mut summary = Summary::of(&request.uid, &request.kind.group, &request.kind.kind, &request.name);
        summary.namespace = request.namespace.as_deref().unwrap_or_default().to_owned();
        summary.operation = operation(&request.operation).to_owned();
        summary.dry_run = request.dry_run;
        let is_deployment = request.kind.group == "apps" && request.kind.kind == "Deployment";
        let review =
            Review { operation: &request.operation, old: request.old_object.as_ref(), new: request.object.as_ref() };
        let asked = Asked { hook, uid: &request.uid, is_deployment, sub_resource: request.sub_resource.is_some() };
        return (deployment_review(&asked, &review, &mut summary), summary);
    }
    full_review(hook, body)
}

/// [`review`] over the whole `AdmissionRequest`: the Canary hook, and any body the
/// Deployment hooks' parse refuses (it says why). Public as the reference the fuzz
/// targets hold [`review`]'s fast path to: both answer alike whenever this one parses.
pub fn full_review(hook: Hook, body: &[u8]) -> (AdmissionResponse, Summary) {
    let request = match parse(body) {
        Ok(r) => r,
        Err((uid, message)) => {
            let summary = Summary { uid: uid.clone(), ..Summary::default() };
            return (deny(&uid, 400, "BadRequest", message), summary);
        }
    };
    let mut summary = Summary::of(&request.uid, &request.kind.group, &request.kind.kind, &request.name);
    summary.namespace = request.namespace.clone().unwrap_or_default();
    summary.operation = operation(&request.operation).to_owned();
    summary.dry_run = request.dry_run;

    let response = match hook {
        Hook::MutateDeployments | Hook::ValidateDeployments => {
            let is_deployment = request.kind.group == "apps" && request.kind.kind == "Deployment";
            let review = Review {
                operation: &request.operation,
                old: request.old_object.as_ref(),
                new: request.object.as_ref(),
            };
            let asked = Asked { hook, uid: &request.uid, is_deployment, sub_resource: request.sub_resource.is_some() };
            deployment_review(&asked, &review, &mut summary)
        }
        Hook::ValidateCanaries => answer(&request.uid, canary::validate(&request)),
    };
    (response, summary)
}

impl Summary {
    fn of(uid: &str, group: &str, kind: &str, name: &str) -> Self {
        let mut k = String::with_capacity(group.len() + 1 + kind.len());
        k.push_str(group);
        k.push('/');
        k.push_str(kind);
        Self { uid: uid.to_owned(), kind: k, name: name.to_owned(), ..Self::default() }
    }
}

/// An operation as kube-apiserver spells it.
fn operation(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Who asked what, besides the objects.
struct Asked<'a> {
    hook: Hook,
    uid: &'a str,
    is_deployment: bool,
    sub_resource: bool,
}

/// The two Deployment hooks. `/scale` and `/status` writes arrive as other kinds or
/// with a subresource: never a release, never checked.
fn deployment_review<O: Object>(asked: &Asked<'_>, review: &Review<'_, O>, summary: &mut Summary) -> AdmissionResponse {
    if !asked.is_deployment || asked.sub_resource {
        return allow(asked.uid);
    }
    if asked.hook == Hook::ValidateDeployments {
        return answer(asked.uid, deployment::validate(review));
    }
    let mutation = deployment::mutate(review);
    summary.transition = Some(mutation.transition);
    let response = if mutation.patch.0.is_empty() {
        allow(asked.uid)
    } else {
        match allow(asked.uid).with_patch(mutation.patch) {
            Ok(patched) => patched,
            Err(e) => {
                // Cannot happen for our own operations; fail open like failurePolicy Ignore.
                tracing::error!(error = %e, "could not serialize patch");
                allow(asked.uid)
            }
        }
    };
    with_warnings(response, mutation.warnings)
}

/// Allowed with warnings, or denied with every field error in one message.
fn answer(uid: &str, findings: Findings) -> AdmissionResponse {
    if findings.errors.is_empty() {
        with_warnings(allow(uid), findings.warnings())
    } else {
        deny(uid, 403, "Forbidden", findings.errors.to_string())
    }
}

/// Parses a review body; on failure returns the uid if one could be read, and why.
fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, (String, String)> {
    if body.is_empty() {
        return Err((String::new(), "empty body: expected an AdmissionReview (admission.k8s.io/v1)".into()));
    }
    // serde_json checks UTF-8 only in the strings it keeps, not in those it skips: JSON
    // is UTF-8 throughout (found by fuzzing: a bad byte in an unknown field was allowed).
    if let Err(e) = std::str::from_utf8(body) {
        return Err((String::new(), format!("body is not JSON: invalid UTF-8 at byte {}", e.valid_up_to())));
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(e) => return Err(diagnose(body, e)),
    };
    let uid = review.request.as_ref().map(|r| r.uid.clone()).unwrap_or_default();
    let (api_version, kind) = (&review.types.api_version, &review.types.kind);
    if kind != KIND {
        return Err((uid, format!("expected kind {KIND}, got {kind:?}")));
    }
    if api_version != API_VERSION {
        return Err((uid, format!("unsupported apiVersion {api_version:?}: this webhook serves {API_VERSION}")));
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| (uid.clone(), "AdmissionReview has no request".to_owned()))?;
    if request.uid.is_empty() {
        return Err((uid, "AdmissionReview request has no uid".to_owned()));
    }
    if matches!(request.operation, Operation::Update) && request.old_object.is_none() {
        return Err((uid, "UPDATE review has no oldObject".to_owned()));
    }
    Ok(request)
}

/// The slow path for bodies that did not parse: say why, and echo the uid if any.
fn diagnose(body: &[u8], error: serde_json::Error) -> (String, String) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (String::new(), format!("body is not JSON: {error}"));
    };
    let uid = value.pointer("/request/uid").and_then(|u| u.as_str()).unwrap_or_default().to_owned();
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if kind != KIND {
        return (uid, format!("expected kind {KIND}, got {kind:?}"));
    }
    (uid, format!("malformed AdmissionReview: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parses must give the same answer and log the same facts for every fixture,
    /// or the fast one reads a field differently.
    #[test]
    fn the_deployment_parse_answers_as_the_full_one() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
        let mut fast = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            fast += usize::from(request::parse(&body).is_some());
            for hook in [Hook::MutateDeployments, Hook::ValidateDeployments] {
                let ((answer, summary), (full, full_summary)) = (review(hook, &body), full_review(hook, &body));
                assert_eq!(answer, full, "{} {hook:?}", path.display());
                let facts = |s: &Summary| {
                    (s.uid.clone(), s.kind.clone(), s.namespace.clone(), s.name.clone(), s.operation.clone(), s.dry_run)
                };
                assert_eq!(facts(&summary), facts(&full_summary), "{} {hook:?}", path.display());
                assert_eq!(summary.transition, full_summary.transition, "{} {hook:?}", path.display());
            }
        }
        assert!(fast >= 10, "the fast parse took only {fast} fixtures");
    }

    /// [`Answer`] is ours because kube writes the patch as an array of numbers: when
    /// kube writes base64, this fails, and `AdmissionResponse::into_review` can replace it.
    #[test]
    fn kube_writes_the_patch_as_numbers_the_answer_in_base64() {
        let response = allow("u1").with_patch(json_patch::Patch(Vec::new())).unwrap();
        let kube = serde_json::to_value(response.clone().into_review()).unwrap();
        assert!(kube["response"]["patch"].is_array(), "{kube}");
        let ours = serde_json::to_value(Answer(&response)).unwrap();
        let expected = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "u1", "allowed": true, "patch": "W10=", "patchType": "JSONPatch"}
        });
        assert_eq!(ours, expected, "base64 of `[]`, no status in an allowed answer");
        let denied = serde_json::to_value(Answer(&deny("u2", 403, "Forbidden", "no".into()))).unwrap();
        let status = serde_json::json!({"status": "Failure", "code": 403, "reason": "Forbidden", "message": "no"});
        assert_eq!(denied["response"]["status"], status, "{denied}");
        assert_eq!(denied["response"]["allowed"], false);
    }

    #[test]
    fn bodies_the_fast_parse_refuses_get_the_full_diagnosis() {
        let cases: [&[u8]; 4] = [
            b"",
            b"{not json",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"FLY"}}"#,
        ];
        for body in cases {
            assert!(request::parse(body).is_none());
            let (answer, _) = review(Hook::MutateDeployments, body);
            assert_eq!(answer, full_review(Hook::MutateDeployments, body).0);
            assert_eq!(Outcome::of(&answer), Outcome::Malformed, "{}", String::from_utf8_lossy(body));
        }
    }
}
