//! Fault injection: rules that make the API server misbehave for chosen requests, as
//! real ones do under load, during upgrades or behind flaky networks. Switched per test
//! (`PUT /sim/faults` on the sim's API server, [`crate::Sim::set_faults`]); none by default.
//!
//! ```json
//! {"rules": [
//!   {"verbs": ["patch", "update"], "resources": ["canaries/status"], "userAgent": "apisix-canary",
//!    "probability": 0.2, "fault": {"error": {"code": 409}}},
//!   {"verbs": ["get"], "probability": 0.1, "fault": {"error": {"code": 429, "retryAfterSeconds": 1}}},
//!   {"verbs": ["list"], "count": 3, "fault": {"delayMs": 3000}},
//!   {"verbs": ["patch"], "probability": 0.1, "fault": "loseResponse"}
//! ]}
//! ```
//!
//! The rules that match a request roll their probability in turn, and the first that
//! hits decides; a request no rule hits is served as always. `GET /sim/faults` shows the rules with how often each hit.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::httpd::{Body, error_response, json_response};
use crate::status::ApiError;

/// Where tests set the rules.
pub const PATH: &str = "/sim/faults";

/// What a hit request gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fault {
    /// Answered with this error instead of being served: 409 (a conflict, as when
    /// another writer won), 429 (with `Retry-After`), 500, 503, 504.
    Error {
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u64>,
    },
    /// Served this much later (past a client's timeout when long enough).
    DelayMs(u64),
    /// Served (a write takes effect), then the connection breaks before the answer
    /// arrives: the client cannot know whether it happened.
    LoseResponse,
}

/// Which requests a rule hits, and what they get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// get, list, watch, create, update, patch, delete, deletecollection; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    /// `plural` (any subresource) or `plural/subresource`; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Only requests whose User-Agent contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The share of matching requests hit, 0 to 1.
    #[serde(default = "always")]
    pub probability: f64,
    /// At most this many hits; then the rule is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    pub fault: Fault,
    /// How many requests it hit so far (read-only).
    #[serde(default)]
    pub hits: u64,
}

fn always() -> f64 {
    1.0
}

/// The rules of one API server.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    pub rules: Vec<Rule>,
}

/// A request as the rules see it.
pub struct Request<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub user_agent: &'a str,
}

impl Faults {
    /// Refuses rules that could never be carried out as written.
    pub fn check(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            if !(0.0..=1.0).contains(&rule.probability) {
                return Err(format!("rules[{i}].probability: {} is not between 0 and 1", rule.probability));
            }
            if let Fault::Error { code, .. } = rule.fault
                && !matches!(code, 409 | 429 | 500 | 503 | 504)
            {
                return Err(format!("rules[{i}].fault.error.code: {code} is not one of 409, 429, 500, 503, 504"));
            }
        }
        Ok(())
    }
}

impl Rule {
    fn matches(&self, r: &Request<'_>) -> bool {
        let resource = |wanted: &String| match wanted.split_once('/') {
            Some((plural, sub)) => plural == r.resource && r.subresource == Some(sub),
            None => wanted == r.resource,
        };
        (self.verbs.is_empty() || self.verbs.iter().any(|v| v == r.verb))
            && (self.resources.is_empty() || self.resources.iter().any(resource))
            && self.user_agent.as_deref().is_none_or(|a| r.user_agent.contains(a))
            && self.count.is_none_or(|c| self.hits < c)
    }
}

/// The rules in force, shared by every request.
#[derive(Debug, Default)]
pub struct Injector {
    faults: Mutex<Faults>,
    /// Whether any rule is set: without, requests are not even looked at.
    armed: AtomicBool,
}

impl Injector {
    pub fn set(&self, faults: Faults) -> Result<(), String> {
        faults.check()?;
        self.armed.store(!faults.rules.is_empty(), Ordering::Relaxed);
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    pub fn get(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// The fault `request` gets, if any (counted as a hit).
    pub fn hit(&self, request: &Request<'_>) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let rule = faults
            .rules
            .iter_mut()
            .filter(|rule| rule.matches(request))
            .find(|rule| rule.probability >= 1.0 || fastrand::f64() < rule.probability)?;
        rule.hits += 1;
        Some(rule.fault.clone())
    }
}

impl Fault {
    /// The error this fault answers with, as kube-apiserver words it.
    pub fn error(code: u16, retry_after: Option<u64>, what: &str) -> ApiError {
        match code {
            409 => ApiError::Conflict {
                resource: what.to_owned(),
                name: String::new(),
                message: "the object has been modified; please apply your changes to the latest version and try again"
                    .into(),
            },
            429 => ApiError::TooManyRequests { retry_after: retry_after.unwrap_or(1) },
            503 => ApiError::ServiceUnavailable("the server is currently unable to handle the request".into()),
            504 => ApiError::Timeout("the server was unable to return a response in the time allotted".into()),
            _ => ApiError::Internal("injected fault".into()),
        }
    }

    pub fn delay(&self) -> Option<Duration> {
        match self {
            Fault::DelayMs(ms) => Some(Duration::from_millis(*ms)),
            _ => None,
        }
    }
}

/// `GET` the rules in force with their hits, `PUT` new ones, `DELETE` them all.
pub async fn endpoint(injector: &Injector, req: http::Request<Incoming>) -> Response<Body> {
    let result = match req.method().clone() {
        Method::GET => Ok(()),
        Method::DELETE => injector.set(Faults::default()).map_err(ApiError::BadRequest),
        Method::PUT | Method::POST => match req.into_body().collect().await {
            Ok(body) => serde_json::from_slice(&body.to_bytes())
                .map_err(|e| format!("not a fault set: {e}"))
                .and_then(|faults| injector.set(faults))
                .map_err(ApiError::BadRequest),
            Err(e) => Err(ApiError::BadRequest(e.to_string())),
        },
        _ => Err(ApiError::MethodNotAllowed(format!("{PATH} takes GET, PUT and DELETE"))),
    };
    match result {
        Ok(()) => json_response(StatusCode::OK, &serde_json::to_value(injector.get()).unwrap_or_default()),
        Err(e) => error_response(&e),
    }
}

/// The body of an answer that is lost: it fails at once, so the connection breaks
/// after the status line and headers.
pub fn lost() -> Body {
    Lost.boxed()
}

struct Lost;

impl hyper::body::Body for Lost {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other("injected fault: response lost"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(verb: &'a str, resource: &'a str, sub: Option<&'a str>) -> Request<'a> {
        Request { verb, resource, subresource: sub, user_agent: "apisix-canary/0.1.0 (serve)" }
    }

    #[test]
    fn rules_hit_what_they_name_as_often_as_they_say() {
        let faults: Faults = serde_json::from_value(serde_json::json!({"rules": [
            {"verbs": ["patch"], "resources": ["canaries/status"], "userAgent": "apisix-canary", "count": 2,
             "fault": {"error": {"code": 409}}},
            {"verbs": ["get"], "userAgent": "kubectl", "fault": {"delayMs": 10}},
        ]}))
        .unwrap();
        let injector = Injector::default();
        injector.set(faults).unwrap();
        let status = request("patch", "canaries", Some("status"));
        assert_eq!(injector.hit(&status), Some(Fault::Error { code: 409, retry_after_seconds: None }));
        assert_eq!(injector.hit(&request("patch", "canaries", None)), None, "the main resource is not named");
        assert_eq!(injector.hit(&request("get", "canaries", None)), None, "another client's rule");
        assert!(injector.hit(&status).is_some());
        assert_eq!(injector.hit(&status), None, "spent after 2 hits");
        assert_eq!(injector.get().rules[0].hits, 2);
    }

    #[test]
    fn rules_that_cannot_be_carried_out_are_refused() {
        let bad = Faults {
            rules: vec![Rule {
                verbs: vec![],
                resources: vec![],
                user_agent: None,
                probability: 1.5,
                count: None,
                fault: Fault::LoseResponse,
                hits: 0,
            }],
        };
        assert_eq!(Injector::default().set(bad).unwrap_err(), "rules[0].probability: 1.5 is not between 0 and 1");
        let teapot: Faults =
            serde_json::from_value(serde_json::json!({"rules": [{"fault": {"error": {"code": 418}}}]})).unwrap();
        assert!(Injector::default().set(teapot).unwrap_err().contains("418 is not one of"));
    }
}
