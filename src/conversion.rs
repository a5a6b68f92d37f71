//! CRD conversion: the ConversionReview v1 handler. Request in, converted objects out;
//! the conversion itself is the API types' ([`crate::api::canary::convert`]).
//!
//! Every answer is HTTP 200 with a ConversionReview echoing the uid: `Success` with the
//! objects in the same number and order, each at the desired apiVersion, or `Failure`
//! with a message naming the object that could not be converted.

use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use kube::core::{Status, TypeMeta};
use serde_json::Value;

use crate::api::canary::{KIND, convert as canary};

pub const PATH: &str = "/convert";
pub const API_VERSION: &str = "apiextensions.k8s.io/v1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported kind {0:?}: only {KIND} has several versions")]
    UnknownKind(String),
    #[error(transparent)]
    Canary(#[from] canary::Error),
}

/// Converts one object to `desired`; an object already there is returned unchanged.
pub fn convert(object: Value, desired: &str) -> Result<Value, Error> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != KIND {
        return Err(Error::UnknownKind(kind.to_owned()));
    }
    Ok(canary::object_to(object, desired)?)
}

/// Answers one ConversionReview body. Pure: no I/O.
pub fn review(body: &[u8]) -> ConversionReview {
    let mut review = answer(body);
    review.types = TypeMeta { api_version: API_VERSION.to_owned(), kind: KIND_REVIEW.to_owned() };
    review
}

const KIND_REVIEW: &str = "ConversionReview";

fn answer(body: &[u8]) -> ConversionReview {
    // As for admission: a byte that is not UTF-8 in a field serde_json skips is still not JSON.
    if let Err(e) = std::str::from_utf8(body) {
        return invalid(body, format!("malformed ConversionReview: invalid UTF-8 at byte {}", e.valid_up_to()));
    }
    let review: ConversionReview = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid(body, format!("malformed ConversionReview: {e}")),
    };
    if review.types.kind != KIND_REVIEW || review.types.api_version != API_VERSION {
        let (kind, version) = (&review.types.kind, &review.types.api_version);
        return invalid(body, format!("expected a ConversionReview of {API_VERSION}, got {kind:?} of {version:?}"));
    }
    let request = match ConversionRequest::from_review(review) {
        Ok(r) => r,
        Err(_) => return invalid(body, "ConversionReview has no request".to_owned()),
    };
    let desired = request.desired_api_version.clone();
    let objects = request.objects.clone();
    let response = ConversionResponse::for_request(request);
    let mut converted = Vec::with_capacity(objects.len());
    for (i, object) in objects.into_iter().enumerate() {
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
        match convert(object, &desired) {
            Ok(o) => converted.push(o),
            Err(e) => {
                let message = format!("objects[{i}] ({name}): {e}");
                return response.failure(Status::failure(&message, "ConversionFailed")).into_review();
            }
        }
    }
    response.success(converted).into_review()
}

/// A failure for a body that is not a usable review; the uid is echoed when readable.
fn invalid(body: &[u8], message: String) -> ConversionReview {
    let mut response = ConversionResponse::invalid(Status::failure(&message, "BadRequest"));
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        response.uid = v.pointer("/request/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    }
    response.into_review()
}
