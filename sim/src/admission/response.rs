//! What kube-apiserver reads of a webhook's answer (`AdmissionReview` v1), checked as
//! its `VerifyAdmissionResponse` checks it: the response present, the request's uid
//! echoed, the apiVersion and kind, a patch only with `patchType: JSONPatch` and only
//! from a mutating webhook. Read field by field from the JSON, never with the types of
//! the webhook under test, so the chain cannot agree with its bugs.

use base64::Engine as _;
use serde_json::Value;

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";
const JSON_PATCH: &str = "JSONPatch";

/// `response.status` (`metav1.Status`), as far as a denial reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub message: String,
    pub reason: String,
}

/// A checked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub allowed: bool,
    pub status: Status,
    /// The JSON patch of a mutating webhook (`response.patch`, base64).
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
}

/// Go's zero value for an absent or null field, a decoding error for a wrong type.
fn field<'a, T>(
    v: &'a Value,
    path: &str,
    key: &str,
    want: &str,
    read: impl Fn(&'a Value) -> Option<T>,
) -> Result<Option<T>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => read(x).map(Some).ok_or_else(|| format!("cannot unmarshal {path}{key}: expected {want}, got {x}")),
    }
}

fn string(v: &Value, path: &str, key: &str) -> Result<String, String> {
    Ok(field(v, path, key, "a string", Value::as_str)?.unwrap_or_default().to_owned())
}

impl Response {
    /// Checks `review`, the answer to the request `uid`.
    pub fn read(review: &Value, uid: &str, mutating: bool) -> Result<Self, String> {
        if !review.is_object() {
            return Err(format!("cannot unmarshal the body: expected an object, got {review}"));
        }
        let (api_version, kind) = (string(review, "", "apiVersion")?, string(review, "", "kind")?);
        let response = match review.get("response") {
            None | Some(Value::Null) => return Err("webhook response was absent".into()),
            Some(r) if r.is_object() => r,
            Some(r) => return Err(format!("cannot unmarshal response: expected an object, got {r}")),
        };
        let p = "response.";
        let allowed = field(response, p, "allowed", "a boolean", Value::as_bool)?.unwrap_or(false);
        let status = match field(response, p, "status", "an object", |s| s.as_object().map(|_| s))? {
            Some(s) => Status {
                code: field(s, "response.status.", "code", "an integer", |c| c.as_u64())?
                    .map(|c| u16::try_from(c).unwrap_or(u16::MAX))
                    .unwrap_or(0),
                message: string(s, "response.status.", "message")?,
                reason: string(s, "response.status.", "reason")?,
            },
            None => Status::default(),
        };
        let patch = field(response, p, "patch", "a base64 string", Value::as_str)?
            .map(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("cannot unmarshal response.patch: illegal base64 data: {e}"))
            })
            .transpose()?
            .filter(|bytes| !bytes.is_empty());
        let patch_type = string(response, p, "patchType")?;
        let warnings = field(response, p, "warnings", "a list of strings", |w| {
            w.as_array()?.iter().map(|s| s.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()
        })?
        .unwrap_or_default();

        let got_uid = string(response, p, "uid")?;
        if got_uid != uid {
            return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
        }
        if (api_version.as_str(), kind.as_str()) != (API_VERSION, KIND) {
            return Err(format!(
                "expected webhook response of {API_VERSION}, Kind={KIND}, got {api_version}, Kind={kind}"
            ));
        }
        if patch.is_some() && patch_type.is_empty() {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        if !patch_type.is_empty() && !mutating {
            return Err("validating webhook may not return response.patch or response.patchType".into());
        }
        if !patch_type.is_empty() && patch_type != JSON_PATCH {
            return Err(format!("webhook returned invalid response.patchType of {patch_type:?}"));
        }
        let patch = patch
            .map(|bytes| serde_json::from_slice::<json_patch::Patch>(&bytes))
            .transpose()
            .map_err(|e| format!("response.patch is not a JSON patch: {e}"))?;
        Ok(Self { allowed, status, patch, warnings })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn review(response: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn an_allowed_patch_with_warnings() {
        let patch = b64(r#"[{"op": "add", "path": "/spec/paused", "value": true}]"#);
        let r = Response::read(
            &review(json!({"uid": "u1", "allowed": true, "patch": patch, "patchType": "JSONPatch",
                "warnings": ["careful"]})),
            "u1",
            true,
        )
        .unwrap();
        assert!(r.allowed);
        assert_eq!(r.warnings, ["careful"]);
        let mut doc = json!({"spec": {}});
        json_patch::patch(&mut doc, &r.patch.unwrap().0).unwrap();
        assert_eq!(doc, json!({"spec": {"paused": true}}));
    }

    #[test]
    fn a_denial_reads_its_status() {
        let r = Response::read(
            &review(
                json!({"uid": "u", "allowed": false, "status": {"code": 422, "message": "no", "reason": "Invalid"}}),
            ),
            "u",
            false,
        )
        .unwrap();
        assert!(!r.allowed);
        assert_eq!(r.status, Status { code: 422, message: "no".into(), reason: "Invalid".into() });
        // Absent `allowed` is Go's zero value: a denial.
        assert!(!Response::read(&review(json!({"uid": "u"})), "u", false).unwrap().allowed);
    }

    #[test]
    fn answers_kube_apiserver_refuses() {
        let err = |v: Value, mutating: bool| Response::read(&v, "u", mutating).unwrap_err();
        assert_eq!(
            err(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), true),
            "webhook response was absent"
        );
        assert_eq!(
            err(review(json!({"uid": "other", "allowed": true})), true),
            "expected response.uid=\"u\", got \"other\""
        );
        assert_eq!(
            err(
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": {"uid": "u"}}),
                true
            ),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
        );
        let patch = b64("[]x");
        assert_eq!(
            err(review(json!({"uid": "u", "allowed": true, "patch": patch})), true),
            "webhook returned response.patch but not response.patchType"
        );
        assert_eq!(
            err(review(json!({"uid": "u", "allowed": true, "patch": b64("[]"), "patchType": "Merge"})), true),
            "webhook returned invalid response.patchType of \"Merge\""
        );
        assert!(
            err(review(json!({"uid": "u", "allowed": true, "patch": b64("[]"), "patchType": "JSONPatch"})), false)
                .starts_with("validating webhook may not return")
        );
        assert!(err(review(json!({"uid": "u", "allowed": "yes"})), true).contains("response.allowed"));
        assert!(
            err(review(json!({"uid": "u", "allowed": true, "patch": "%%%", "patchType": "JSONPatch"})), true)
                .contains("base64")
        );
    }
}
