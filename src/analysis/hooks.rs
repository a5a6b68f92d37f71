//! The webhooks of a release, called as Flagger calls them: a JSON `POST` of
//! `{name, namespace, phase, checksum, metadata}`, a status up to 202 is a pass, and
//! anything else fails with the response body as its message.
//!
//! ```text
//!  Plan.webhooks ─▶ Caller::call / event / call_all ─POST─▶ hook ─▶ Ok(()) | HookError
//!                   retries on transport errors, timeouts, 429 and 5xx (not 501)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::http::{self, Resolver, error_chain};
use crate::api::canary::Phase;
use crate::api::duration::Display;
use crate::release::plan::{HookKind, Plan, Webhook};

#[cfg(test)]
mod tests;

/// The wait before the first retry; each next one doubles, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A failure message quotes at most this much of a response body: it ends up in an
/// Event, and an error page of a proxy can be long.
pub const MAX_MESSAGE: usize = 512;
/// The `metadata` keys of an event hook, which the hook's own metadata cannot override.
pub const EVENT_MESSAGE: &str = "eventMessage";
pub const EVENT_TYPE: &str = "eventType";
pub const EVENT_TIMESTAMP: &str = "timestamp";

/// Which release a call is about.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The Canary.
    pub name: &'a str,
    pub namespace: &'a str,
    pub phase: Phase,
    /// What identifies the revision released (the canary revision).
    pub checksum: &'a str,
}

/// What an `event` hook is told about, besides the [`Payload`].
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub message: &'a str,
    pub warning: bool,
    pub timestamp: Timestamp,
}

/// Why a hook did not pass; the `Display` is the message Flagger's events carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// A status above 202: the trimmed body, or `<code> <reason>` when it is empty.
    #[error("{message}")]
    Status { status: u16, message: String },
    #[error("POST {url}: {cause}")]
    Transport { url: String, cause: String },
    #[error("POST {url}: timed out after {}", Display(*.timeout))]
    Timeout { url: String, timeout: Duration },
    /// Every retry failed; `last` is the last attempt's failure.
    #[error("giving up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: Box<HookError> },
}

impl HookError {
    /// Whether another attempt may pass: the hook was not reached, was too slow, or
    /// said it is busy or broken (429, 5xx). 501 says it never will; other statuses are
    /// the hook's answer.
    pub fn retryable(&self) -> bool {
        match self {
            HookError::Transport { .. } | HookError::Timeout { .. } => true,
            HookError::Status { status, .. } => *status == 429 || ((500..600).contains(status) && *status != 501),
            HookError::GaveUp { .. } => false,
        }
    }
}

/// The wait before retry `n` (1-based): 200 ms, doubling, at most 2 s.
pub fn backoff(n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    FIRST_BACKOFF.checked_mul(factor).map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// The JSON body of a call to `hook`; with `event`, the event's keys in `metadata`
/// first, the hook's own metadata merged in without overriding them.
pub fn body(hook: &Webhook, payload: &Payload<'_>, event: Option<&Event<'_>>) -> Value {
    let mut metadata: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(e) = event {
        metadata.insert(EVENT_MESSAGE, e.message.to_owned());
        metadata.insert(EVENT_TYPE, (if e.warning { "Warning" } else { "Normal" }).to_owned());
        metadata.insert(EVENT_TIMESTAMP, e.timestamp.as_millisecond().to_string());
    }
    for (key, value) in &hook.metadata {
        metadata.entry(key.as_str()).or_insert_with(|| value.clone());
    }
    let mut body = json!({
        "name": payload.name,
        "namespace": payload.namespace,
        "phase": payload.phase,
        "checksum": payload.checksum,
    });
    if !metadata.is_empty() {
        body["metadata"] = json!(metadata);
    }
    body
}

/// Calls webhooks; one client for every hook (and one that skips TLS verification, for
/// the hooks with `disableTLS`), the timeout set per call.
#[derive(Debug, Clone)]
pub struct Caller {
    client: reqwest::Client,
    insecure: reqwest::Client,
}

impl Caller {
    /// A caller that looks host names up in `resolver` first (`serve --resolve`).
    pub fn new(resolver: &Resolver) -> Result<Self, String> {
        let options = http::Options { resolver: Some(resolver), ..http::Options::default() };
        let client = http::client(&options)?;
        let insecure = http::client(&http::Options { insecure_skip_verify: true, ..options })?;
        Ok(Self { client, insecure })
    }

    /// One call of a (non-event) hook.
    pub async fn call(&self, hook: &Webhook, payload: &Payload<'_>) -> Result<(), HookError> {
        self.post(hook, &body(hook, payload, None)).await
    }

    /// One call of an `event` hook about `event`.
    pub async fn event(&self, hook: &Webhook, payload: &Payload<'_>, event: &Event<'_>) -> Result<(), HookError> {
        self.post(hook, &body(hook, payload, Some(event))).await
    }

    /// Every hook of `kind` in `plan`, in order, one after the other: (hook name, result).
    pub async fn call_all(
        &self,
        plan: &Plan,
        kind: HookKind,
        payload: &Payload<'_>,
    ) -> Vec<(String, Result<(), HookError>)> {
        let mut results = Vec::new();
        for hook in plan.hooks(kind) {
            results.push((hook.name.clone(), self.call(hook, payload).await));
        }
        results
    }

    /// Posts `body`, retrying as [`HookError::retryable`] says, up to `hook.retries` times.
    async fn post(&self, hook: &Webhook, body: &Value) -> Result<(), HookError> {
        let url = hook.url.to_string();
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(hook, &url, &body).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempts <= hook.retries => tokio::time::sleep(backoff(attempts)).await,
                Err(e) if e.retryable() && attempts > 1 => {
                    return Err(HookError::GaveUp { attempts, last: Box::new(e) });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, hook: &Webhook, url: &str, body: &[u8]) -> Result<(), HookError> {
        let timeout = hook.timeout;
        let client = if hook.disable_tls { &self.insecure } else { &self.client };
        let request = client
            .post(url)
            .header(::http::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .timeout(timeout);
        // The deadline covers the body too: a hook that sends headers and then stalls.
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        };
        let timed_out = || HookError::Timeout { url: url.to_owned(), timeout };
        let (status, text) = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) if e.is_timeout() => return Err(timed_out()),
            Ok(Err(e)) => return Err(HookError::Transport { url: url.to_owned(), cause: error_chain(&e) }),
            Ok(Ok(answer)) => answer,
        };
        if status.as_u16() <= 202 {
            return Ok(());
        }
        Err(HookError::Status { status: status.as_u16(), message: message(status, &text) })
    }
}

/// Flagger's `%v` of a failed call: the body, trimmed (and cut at [`MAX_MESSAGE`]), or
/// the status line when there is no body.
fn message(status: ::http::StatusCode, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
    }
    if body.len() <= MAX_MESSAGE {
        return body.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}
