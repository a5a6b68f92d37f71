//! [`Plan`] from a `Canary`, in either served version. v1alpha1 is parsed through its
//! v1beta1 expansion, with paths rewritten to the flat fields the user wrote, so a bad
//! value gets the same words whichever way it came.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Alert, HookKind, Parsed, Plan, Severity, StepSettings, Webhook, defaults, finish};
use crate::api::canary::{flat, v1alpha1, v1beta1};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::{apisix_route, rules};
use crate::conversion;

mod metrics;

use self::metrics::metrics;

/// The only mesh provider: Flagger users may leave `provider: apisix` in place.
pub const PROVIDER: &str = "apisix";

impl Plan {
    /// Parses a v1beta1 spec: every field checked, every problem reported at once.
    pub fn from_canary(spec: &v1beta1::CanarySpec) -> Parsed<Plan> {
        let mut f = Findings::default();
        let plan = parse_v1beta1(spec, &mut f);
        finish(f, plan)
    }

    /// Parses a v1alpha1 Canary (its flat spec and the spill annotation), with errors
    /// at the flat fields, or at the spill annotation for what came from there.
    pub fn from_v1alpha1(c: &v1alpha1::Canary) -> Parsed<Plan> {
        let mut f = Findings::default();
        let p = Path::new("spec");
        if let Some(rate) = c.spec.min_success_rate {
            f.push(rules::success_rate(&p.child("minSuccessRate"), &Shown::bare(rate), Some(rate)));
        }
        // Expand as written; a duration that does not parse is reported and left out.
        let mut expandable = c.spec.clone();
        if let Some(raw) = &c.spec.max_request_duration {
            let checked = rules::request_duration(&p.child("maxRequestDuration"), raw);
            if crate::api::duration::parse(raw).is_err() {
                expandable.max_request_duration = None;
            }
            f.push(checked);
        }
        let spill_path = || Path::new("metadata").child("annotations").key(v1alpha1::SPILL_ANNOTATION);
        let spill = c.metadata.annotations.as_ref().and_then(|a| a.get(v1alpha1::SPILL_ANNOTATION));
        let beta = match conversion::canary::spec_to_v1beta1(&expandable, spill.map(String::as_str)) {
            Ok((beta, _)) => beta,
            Err(e) => {
                f.errors.push(FieldError::invalid(&spill_path(), "(json)", e.to_string()));
                return Err(f.errors);
            }
        };
        // The bounds of the built-in metrics written flat were checked at the flat fields.
        let checked_flat = flat::flat_bound_paths(&c.spec, &beta.analysis.metrics);
        let mut inner = Findings::default();
        let plan = parse_v1beta1(&beta, &mut inner);
        for e in inner.errors.iter().filter(|e| !checked_flat.iter().any(|p| p == e.path.as_str())) {
            f.errors.push(match flat::v1alpha1_path(e.path.as_str()) {
                Some(alpha) => FieldError { path: Path::new(&alpha), kind: e.kind.clone() },
                None => FieldError::invalid(&spill_path(), "(json)", e.to_string()),
            });
        }
        for (path, w) in inner.warnings {
            let path = flat::v1alpha1_path(path.as_str()).map_or(path, |alpha| Path::new(&alpha));
            f.warnings.push((path, w));
        }
        finish(f, plan)
    }
}

fn parse_v1beta1(spec: &v1beta1::CanarySpec, f: &mut Findings) -> Plan {
    let p = Path::new("spec");
    if let Some(provider) = spec.provider.as_deref().filter(|v| *v != PROVIDER) {
        f.errors.push(FieldError::not_supported(&p.child("provider"), provider, &[PROVIDER]));
    }
    let t = p.child("targetRef");
    if spec.target_ref.api_version != "apps/v1" {
        f.errors.push(FieldError::not_supported(&t.child("apiVersion"), &spec.target_ref.api_version, &["apps/v1"]));
    }
    if spec.target_ref.kind != "Deployment" {
        f.errors.push(FieldError::not_supported(&t.child("kind"), &spec.target_ref.kind, &["Deployment"]));
    }
    f.push(rules::object_name(&t.child("name"), &spec.target_ref.name));
    let route = match &spec.route_ref {
        None => {
            f.errors.push(FieldError::required(&p.child("routeRef"), "the ApisixRoute that serves the target"));
            String::new()
        }
        Some(r) => {
            let rp = p.child("routeRef");
            if r.api_version != apisix_route::API_VERSION {
                let supported = [apisix_route::API_VERSION];
                f.errors.push(FieldError::not_supported(&rp.child("apiVersion"), &r.api_version, &supported));
            }
            if r.kind != apisix_route::KIND {
                f.errors.push(FieldError::not_supported(&rp.child("kind"), &r.kind, &[apisix_route::KIND]));
            }
            f.push(rules::object_name(&rp.child("name"), &r.name));
            r.name.clone()
        }
    };
    let service = spec.service.as_ref().and_then(|s| s.name.clone());
    if let Some(name) = &service {
        f.push(rules::object_name(&p.child("service").child("name"), name));
    }
    let port = spec.service.as_ref().and_then(|s| s.port).and_then(|port| {
        rules::port(&p.child("service").child("port"), port.into()).map_err(|e| f.errors.push(e)).ok()
    });
    let progress_deadline = match spec.progress_deadline_seconds {
        Some(v) => {
            let path = p.child("progressDeadlineSeconds");
            rules::progress_deadline_seconds(&path, &Shown::bare(v), Some(v.into())).map_err(|e| f.errors.push(e)).ok()
        }
        None => None,
    }
    .unwrap_or(defaults::PROGRESS_DEADLINE_SECONDS);
    let a = &spec.analysis;
    let ap = p.child("analysis");
    let interval = a.interval.as_ref().and_then(|raw| {
        let path = ap.child("interval");
        match rules::interval(&path, raw) {
            Ok(d) => {
                f.warnings.extend(rules::interval_warning(d).map(|w| (path, w)));
                Some(d)
            }
            Err(e) => {
                f.errors.push(e);
                None
            }
        }
    });
    let threshold = a.threshold.and_then(|t| {
        let path = ap.child("threshold");
        match rules::threshold(&path, &Shown::bare(t), Some(t.into())) {
            Ok(t) => {
                f.warnings.extend(rules::threshold_warning(t).map(|w| (path, w)));
                Some(t)
            }
            Err(e) => {
                f.errors.push(e);
                None
            }
        }
    });
    let mut weight = |key: &str, v: Option<i32>| -> Option<u32> {
        let v = v?;
        rules::weight(&ap.child(key), &Shown::bare(v), Some(v.into())).map_err(|e| f.errors.push(e)).ok()
    };
    let max_weight = weight("maxWeight", a.max_weight);
    let step_weight = weight("stepWeight", a.step_weight);
    let step_weight_promotion = weight("stepWeightPromotion", a.step_weight_promotion);
    let step_weights = a.step_weights.as_ref().and_then(|list| {
        let shown = Shown::bare(format!("{list:?}"));
        let values: Vec<Option<i64>> = list.iter().map(|w| Some(i64::from(*w))).collect();
        rules::step_weights(&ap.child("stepWeights"), &shown, &values).map_err(|e| f.errors.push(e)).ok()
    });
    let (steps, max_weight) = StepSettings {
        step_weight: step_weight.map(|s| (s, Shown::bare(s))),
        step_weights: step_weights.as_deref().map(|w| (w, Shown::bare(format!("{w:?}")))),
        max_weight,
        max_invalid: a.max_weight.is_some() && max_weight.is_none(),
        step_weight_path: ap.child("stepWeight"),
        step_weights_path: ap.child("stepWeights"),
        names: ("stepWeights", "maxWeight"),
    }
    .resolve(f);
    unsupported(a, &ap, f);
    Plan {
        target: spec.target_ref.name.clone(),
        route,
        service,
        port,
        interval: interval.unwrap_or(defaults::INTERVAL),
        threshold: threshold.unwrap_or(defaults::THRESHOLD),
        steps,
        max_weight,
        step_weight_promotion,
        progress_deadline: Duration::from_secs(progress_deadline.into()),
        skip_analysis: spec.skip_analysis.unwrap_or(false),
        suspend: spec.suspend.unwrap_or(false),
        metrics: metrics(&a.metrics, &ap.child("metrics"), f),
        webhooks: webhooks(&a.webhooks, &ap.child("webhooks"), f),
        alerts: alerts(&a.alerts, &ap.child("alerts"), f),
    }
}

/// Flagger features APISIX's weighted backends cannot do: refused, never approximated.
fn unsupported(a: &v1beta1::Analysis, p: &Path, f: &mut Findings) {
    let refusals = [
        (
            "match",
            a.match_.is_some(),
            "A/B testing by request match is not supported with APISIX: the generated route splits traffic \
             by weight only; use stepWeight or stepWeights",
        ),
        (
            "iterations",
            a.iterations.is_some(),
            "blue/green analysis (iterations) is not supported: use stepWeight or stepWeights",
        ),
        ("mirror", a.mirror.is_some(), "traffic mirroring is not supported with APISIX weighted backends"),
        ("mirrorWeight", a.mirror_weight.is_some(), "traffic mirroring is not supported with APISIX weighted backends"),
        (
            "sessionAffinity",
            a.session_affinity.is_some(),
            "session affinity is not supported with APISIX weighted backends: requests are split by weight",
        ),
    ];
    for (key, present, why) in refusals {
        if present {
            f.errors.push(FieldError::forbidden(&p.child(key), why));
        }
    }
}

/// A name that must be present and unique in its list.
fn unique_name<'a>(name: &'a str, what: &str, path: &Path, seen: &mut BTreeSet<&'a str>, f: &mut Findings) {
    if name.is_empty() {
        f.errors.push(FieldError::required(&path.child("name"), format!("{what} needs a name")));
    } else if !seen.insert(name) {
        f.errors.push(FieldError::duplicate(&path.child("name"), name));
    }
}

fn webhooks(list: &[v1beta1::Webhook], p: &Path, f: &mut Findings) -> Vec<Webhook> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        let wp = p.index(i);
        unique_name(&w.name, "a webhook", &wp, &mut seen, f);
        let kind = match w.type_.as_deref() {
            None => Some(HookKind::Rollout),
            Some(t) => HookKind::parse(t).or_else(|| {
                f.errors.push(FieldError::not_supported(&wp.child("type"), t, HookKind::NAMES));
                None
            }),
        };
        let url = rules::http_url(&wp.child("url"), &w.url).map_err(|e| f.errors.push(e)).ok();
        let timeout = match &w.timeout {
            Some(raw) => rules::webhook_timeout(&wp.child("timeout"), raw).map_err(|e| f.errors.push(e)).ok(),
            None => Some(defaults::WEBHOOK_TIMEOUT),
        };
        let retries = match w.retries {
            Some(n) => rules::webhook_retries(&wp.child("retries"), n.into()).map_err(|e| f.errors.push(e)).ok(),
            None => Some(0),
        };
        if let (Some(kind), Some(url), Some(timeout), Some(retries)) = (kind, url, timeout, retries) {
            let metadata = w.metadata.clone().unwrap_or_default();
            out.push(Webhook { name: w.name.clone(), kind, url, timeout, metadata, retries });
        }
    }
    out
}

fn alerts(list: &[v1beta1::Alert], p: &Path, f: &mut Findings) -> Vec<Alert> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let ap = p.index(i);
        unique_name(&a.name, "an alert", &ap, &mut seen, f);
        let severity = match a.severity.as_deref() {
            None => Some(Severity::Info),
            Some(s) => Severity::parse(s).or_else(|| {
                f.errors.push(FieldError::not_supported(&ap.child("severity"), s, Severity::NAMES));
                None
            }),
        };
        f.push(rules::object_name(&ap.child("providerRef").child("name"), &a.provider_ref.name));
        if let Some(severity) = severity {
            out.push(Alert {
                name: a.name.clone(),
                severity,
                provider: a.provider_ref.name.clone(),
                provider_namespace: a.provider_ref.namespace.clone(),
            });
        }
    }
    out
}
