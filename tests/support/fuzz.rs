//! The fuzz targets: each takes bytes, hands them to one of the parsers that meet
//! untrusted input, and checks the answer as its reader would. Shared by the stable
//! driver (`tests/fuzz.rs` in CI, `benches/fuzz.rs` for long runs) and by cargo-fuzz
//! (`fuzz/fuzz_targets/`), so a crash found by one replays in the other.
//!
//! A target fails when the code panics (the caller catches it), or when the answer
//! breaks what the API server, kubectl or the controller rely on: an AdmissionReview or
//! ConversionReview that is not well formed, a uid not echoed, a patch that does not
//! apply to the object it was computed from, the fast Deployment parse answering
//! otherwise than the full one, a converted Canary that does not convert back, a plan
//! the controller could not run, a duration that does not round-trip.

#![allow(dead_code)]

use std::collections::BTreeMap;

use apisix_canary::admission::{self, AdmissionResponse, Answer, Hook};
use apisix_canary::api::{annotations, duration, metric_template};
use apisix_canary::conversion;
use apisix_canary::release::lock::Lock;
use apisix_canary::release::plan::{Judge, OptIn, Plan};
use base64::Engine;
use serde_json::Value;

/// Where untrusted bytes come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `/mutate/deployments`: an AdmissionReview body.
    MutateDeployments,
    /// `/validate/deployments`: an AdmissionReview body.
    ValidateDeployments,
    /// `/validate/canaries`: an AdmissionReview body.
    ValidateCanaries,
    /// `/convert`: a ConversionReview body.
    Convert,
    /// A Deployment's annotations, one `key=value` per line (`apisix-canary.dev/` is
    /// added to keys without a `/`).
    Annotations,
    /// A duration setting (`interval`, `maxRequestDuration`, ...).
    Duration,
    /// A MetricTemplate query with `{{ variables }}`.
    Template,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::MutateDeployments,
        Target::ValidateDeployments,
        Target::ValidateCanaries,
        Target::Convert,
        Target::Annotations,
        Target::Duration,
        Target::Template,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::MutateDeployments => "mutate-deployments",
            Target::ValidateDeployments => "validate-deployments",
            Target::ValidateCanaries => "validate-canaries",
            Target::Convert => "convert",
            Target::Annotations => "annotations",
            Target::Duration => "duration",
            Target::Template => "template",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the target reads JSON (its inputs are mutated as JSON trees).
    pub fn is_json(self) -> bool {
        matches!(
            self,
            Target::MutateDeployments | Target::ValidateDeployments | Target::ValidateCanaries | Target::Convert
        )
    }
}

/// [`check`], with a panic caught and reported as a failure.
pub fn run(target: Target, input: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(|| check(target, input)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("panicked: {message}"))
    })
}

/// The inputs that once failed (`tests/fixtures/fuzz/<target>/`), replayed every run.
pub fn regressions(target: Target) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target.name());
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    found.sort();
    found
}

/// An input is slow past this much of its thread's CPU time: CPU, not wall time, so that
/// other work on the machine (a build, another worker) never makes an input look slow.
pub const SLOW: std::time::Duration = std::time::Duration::from_millis(100);

/// The CPU time the calling thread has used.
pub fn thread_cpu() -> std::time::Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is handed.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// [`check`], and slower than [`SLOW`] is a failure too: for drivers that do not time
/// inputs themselves (libFuzzer's timeout counts whole seconds).
pub fn check_timed(target: Target, input: &[u8]) -> Result<(), String> {
    let cpu = thread_cpu();
    check(target, input)?;
    let took = thread_cpu() - cpu;
    ensure(took <= SLOW, || format!("took {took:?} of CPU, over {SLOW:?}"))
}

/// Runs one input through `target`; `Err` says which promise the answer broke.
pub fn check(target: Target, input: &[u8]) -> Result<(), String> {
    match target {
        Target::MutateDeployments => admission_review(Hook::MutateDeployments, input),
        Target::ValidateDeployments => admission_review(Hook::ValidateDeployments, input),
        Target::ValidateCanaries => admission_review(Hook::ValidateCanaries, input),
        Target::Convert => conversion_review(input),
        Target::Annotations => annotations(input),
        Target::Duration => duration(input),
        Target::Template => template(input),
    }
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why()) }
}

/// The uid a reader of `input` would echo: `request.uid` when the body is JSON.
fn sent_uid(sent: Option<&Value>) -> Option<&str> {
    sent?.pointer("/request/uid")?.as_str()
}

/// The body as a JSON tree, when serde_json can read one. Past its nesting limit (128),
/// or with a number past f64's range (`6e3300`: JSON, which sets no range), it cannot,
/// while the fast parse, which skips what it does not read, can: such a body is `Err`,
/// and what the tree would check is not.
fn sent(input: &[u8]) -> Result<Option<Value>, ()> {
    match serde_json::from_slice(input) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Err(()),
        Err(e) if e.to_string().starts_with("number out of range") => Err(()),
        Err(_) => Ok(None),
    }
}

fn admission_review(hook: Hook, input: &[u8]) -> Result<(), String> {
    let (response, _) = admission::review(hook, input);
    // The Deployment hooks read a few fields with a fast parse; the full parse is the
    // reference it must agree with.
    let full = matches!(hook, Hook::MutateDeployments | Hook::ValidateDeployments)
        .then(|| admission::full_review(hook, input).0);
    judge_review(input, &response, full.as_ref())
}

/// Whether `response` is a right answer to the review `input`, as kube-apiserver reads
/// it; `full`, the full parse's answer, must be the same whenever that parse read the body.
pub fn judge_review(
    input: &[u8],
    response: &AdmissionResponse,
    full: Option<&AdmissionResponse>,
) -> Result<(), String> {
    let body = serde_json::to_vec(&Answer(response)).map_err(|e| format!("answer: {e}"))?;
    // What kube-apiserver reads back.
    let answer: Value = serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))?;
    ensure(answer["apiVersion"] == "admission.k8s.io/v1" && answer["kind"] == "AdmissionReview", || {
        format!("answer is not an AdmissionReview v1: {answer}")
    })?;
    let r = &answer["response"];
    let (readable, sent) = match sent(input) {
        Ok(sent) => (true, sent),
        Err(()) => (false, None),
    };
    if let Some(uid) = sent_uid(sent.as_ref()) {
        ensure(r["uid"] == uid, || format!("uid {uid:?} answered as {}", r["uid"]))?;
    }
    let allowed = r["allowed"].as_bool().ok_or_else(|| format!("allowed is not a boolean: {r}"))?;
    if readable && sent.is_none() {
        let malformed = !allowed && r.pointer("/status/code").and_then(Value::as_u64) == Some(400);
        ensure(malformed, || format!("a body that is not JSON was answered as a review: {r}"))?;
    }
    if !allowed {
        let message = r.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
        let code = r.pointer("/status/code").and_then(Value::as_u64).unwrap_or_default();
        ensure(!message.is_empty() && (400..600).contains(&code), || format!("a denial without a reason: {r}"))?;
        ensure(r.get("patch").is_none(), || format!("a denial with a patch: {r}"))?;
    }
    if let Some(patch) = r.get("patch").filter(|_| readable) {
        ensure(r["patchType"] == "JSONPatch", || format!("patch without patchType JSONPatch: {r}"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch.as_str().unwrap_or_default())
            .map_err(|e| format!("patch is not base64: {e}"))?;
        let ops: json_patch::Patch =
            serde_json::from_slice(&bytes).map_err(|e| format!("patch is not a JSON patch: {e}"))?;
        // The API server applies it to the object it sent: it must apply.
        let mut object = sent.as_ref().and_then(|s| s.pointer("/request/object")).cloned().unwrap_or(Value::Null);
        json_patch::patch(&mut object, &ops)
            .map_err(|e| format!("patch {} does not apply to the object sent: {e}", String::from_utf8_lossy(&bytes)))?;
    }
    if let Some(full) = full {
        let unparsed = !full.allowed && full.result.code == 400;
        ensure(unparsed || full == response, || format!("fast parse answered {response:?}, full parse {full:?}"))?;
    }
    Ok(())
}

fn conversion_review(input: &[u8]) -> Result<(), String> {
    let review = conversion::review(input);
    let answer = serde_json::to_value(&review).map_err(|e| format!("answer: {e}"))?;
    ensure(answer["apiVersion"] == conversion::API_VERSION && answer["kind"] == "ConversionReview", || {
        format!("answer is not a ConversionReview v1: {answer}")
    })?;
    let r = &answer["response"];
    let Ok(sent) = sent(input) else { return Ok(()) };
    if let Some(uid) = sent_uid(sent.as_ref()) {
        ensure(r["uid"] == uid, || format!("uid {uid:?} answered as {}", r["uid"]))?;
    }
    let converted = r["convertedObjects"].as_array().map(Vec::as_slice).unwrap_or_default();
    match r.pointer("/result/status").and_then(Value::as_str) {
        Some("Success") => {}
        Some("Failure") => {
            let message = r.pointer("/result/message").and_then(Value::as_str).unwrap_or_default();
            ensure(!message.is_empty(), || format!("a failure without a message: {r}"))?;
            return ensure(converted.is_empty(), || format!("a failure with objects: {r}"));
        }
        _ => return Err(format!("result is neither Success nor Failure: {r}")),
    }
    let request = sent.as_ref().map(|s| &s["request"]).ok_or("Success for a body that is not JSON")?;
    let objects = request["objects"].as_array().map(Vec::as_slice).unwrap_or_default();
    let desired = request["desiredAPIVersion"].as_str().unwrap_or_default();
    ensure(converted.len() == objects.len(), || {
        format!("{} objects sent, {} converted", objects.len(), converted.len())
    })?;
    for (object, out) in objects.iter().zip(converted) {
        ensure(out["apiVersion"] == desired, || format!("converted to {} instead of {desired}", out["apiVersion"]))?;
        for field in ["name", "namespace", "uid", "resourceVersion"] {
            ensure(object["metadata"][field] == out["metadata"][field], || format!("metadata.{field} changed"))?;
        }
        // Nothing is lost: back to where it came from and forth again gives the same.
        let from = object["apiVersion"].as_str().unwrap_or_default();
        let back = conversion::convert(out.clone(), from).map_err(|e| format!("does not convert back: {e}"))?;
        let again = conversion::convert(back, desired).map_err(|e| format!("does not convert forth again: {e}"))?;
        ensure(&again == out, || format!("round trip changed the object:\n{out}\n{again}"))?;
    }
    Ok(())
}

/// `key=value` lines as a Deployment's annotations.
pub fn annotation_map(input: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(input)
        .lines()
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            let key = if key.contains('/') { key.to_owned() } else { format!("{}{key}", annotations::PREFIX) };
            (key, value.to_owned())
        })
        .collect()
}

fn annotations(input: &[u8]) -> Result<(), String> {
    let map = annotation_map(input);
    let _ = Lock::from_annotations(&map);
    match Plan::from_annotations("podinfo", &map) {
        Ok((OptIn::Inline(plan), _)) => runnable(&plan),
        Ok(_) => Ok(()),
        Err(errors) => ensure(!errors.to_string().is_empty(), || "errors that say nothing".to_owned()),
    }
}

/// What the controller assumes of every plan it is handed.
fn runnable(plan: &Plan) -> Result<(), String> {
    let steps = &plan.steps;
    ensure(!steps.is_empty(), || "a plan without steps".to_owned())?;
    ensure(steps.windows(2).all(|w| w[0] < w[1]), || format!("steps do not increase: {steps:?}"))?;
    ensure((1..=100).contains(&plan.max_weight), || format!("maxWeight {}", plan.max_weight))?;
    ensure(steps.iter().all(|s| (1..=plan.max_weight).contains(s)), || {
        format!("steps {steps:?} outside 1..={}", plan.max_weight)
    })?;
    ensure(plan.step_weight_promotion.is_none_or(|p| (1..=100).contains(&p)), || {
        format!("stepWeightPromotion {:?}", plan.step_weight_promotion)
    })?;
    if let Judge::Sequential { confidence } = plan.judge {
        ensure(confidence > 50.0 && confidence < 100.0, || format!("confidence {confidence}"))?;
    }
    ensure(!plan.interval.is_zero() && plan.threshold >= 1, || {
        format!("interval {:?}, threshold {}", plan.interval, plan.threshold)
    })
}

fn duration(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let Ok(d) = duration::parse(&text) else { return Ok(()) };
    let shown = duration::Display(d).to_string();
    ensure(duration::parse(&shown) == Ok(d), || format!("{text:?} parsed as {d:?}, shown as {shown:?}, which does not"))
}

/// The variables the template target knows.
const KNOWN: &[&str] = &["namespace", "name", "target", "route", "interval", "variables.x"];

fn template(input: &[u8]) -> Result<(), String> {
    let query = String::from_utf8_lossy(input);
    let known = |name: &str| KNOWN.contains(&name);
    let rendered = metric_template::render(&query, |name| known(name).then(|| format!("<{name}>")));
    match (metric_template::variables(&query), rendered) {
        (Ok(names), Ok(_)) => ensure(names.iter().all(|n| known(n)), || format!("{names:?} rendered with unknowns")),
        (Ok(names), Err(e)) => ensure(!names.iter().all(|n| known(n)), || format!("known {names:?}, yet: {e}")),
        (Err(e), Ok(out)) => Err(format!("variables() refused ({e}) what render() rendered: {out:?}")),
        (Err(_), Err(_)) => Ok(()),
    }
}
