//! API errors as kube-apiserver reports them: a `Status` body with code and reason.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: String, name: String },
    /// `being_deleted`: the existing object is terminating (kube says so first).
    #[error("{}{kind} \"{name}\" already exists", if *being_deleted { "object is being deleted: " } else { "" })]
    AlreadyExists { kind: String, name: String, being_deleted: bool },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict { resource: String, name: String, message: String },
    /// A server-side apply that would change fields other managers own.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<(String, String)> },
    #[error("{0}")]
    Invalid(String),
    /// An object that failed validation, with one cause per field (kubectl prints
    /// `The <Kind> "<name>" is invalid: ...` from these details).
    #[error("{kind}.{group} \"{name}\" is invalid: {}", join(.causes))]
    InvalidObject { kind: String, group: String, name: String, causes: Vec<(String, String)> },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// What kube-apiserver answers as a plain Go error: 500 without a reason (a server-side
    /// apply naming a field the schema lacks is one).
    #[error("{0}")]
    Unclassified(String),
    /// Throttled: the client should come back after `retry_after` seconds.
    #[error("the server has received too many requests and has asked us to try again later")]
    TooManyRequests { retry_after: u64 },
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// A watch from a resourceVersion the store has not reached within the wait.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid(_) | ApiError::InvalidObject { .. } => 422,
            ApiError::Forbidden(_) => 403,
            ApiError::BadRequest(_) => 400,
            ApiError::Gone(_) => 410,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) | ApiError::Unclassified(_) => 500,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::Timeout(_) | ApiError::TooLargeResourceVersion { .. } => 504,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid(_) | ApiError::InvalidObject { .. } => "Invalid",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Gone(_) => "Expired",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unclassified(_) => "",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) | ApiError::TooLargeResourceVersion { .. } => "Timeout",
        }
    }

    /// The `Status` object of this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        match self {
            ApiError::NotFound { kind, name } | ApiError::AlreadyExists { kind, name, .. } => {
                status["details"] = json!({"name": name, "kind": kind});
            }
            ApiError::Conflict { resource, name, .. } => status["details"] = json!({"name": name, "kind": resource}),
            ApiError::TooManyRequests { retry_after } => status["details"] = json!({"retryAfterSeconds": retry_after}),
            ApiError::TooLargeResourceVersion { .. } => {
                status["details"] = json!({
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1,
                });
            }
            ApiError::ApplyConflict { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(field, message)| json!({"reason": "FieldManagerConflict", "message": message, "field": field}))
                    .collect();
                status["details"] = json!({"causes": causes});
            }
            ApiError::InvalidObject { kind, group, name, causes } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
                    .collect();
                status["details"] = json!({"name": name, "group": group, "kind": kind, "causes": causes});
            }
            ApiError::Unclassified(_) => {
                status.as_object_mut().map(|s| s.remove("reason"));
            }
            _ => {}
        }
        status
    }
}

/// `path: message` causes as one line, apimachinery's aggregate style.
fn join(causes: &[(String, String)]) -> String {
    let all: Vec<String> = causes.iter().map(|(field, message)| format!("{field}: {message}")).collect();
    if all.len() == 1 { all.concat() } else { format!("[{}]", all.join(", ")) }
}
