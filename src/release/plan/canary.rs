//! [`Plan`] from a `Canary`, in either served version. v1alpha1 is parsed through its
//! v1beta1 expansion, with paths rewritten to the flat fields the user wrote, so a bad
//! value gets the same words whichever way it came.

use std::collections::BTreeSet;
use std::time::Duration;

use super::judge::{self, JudgeSettings};
use super::{Parsed, Plan, StepSettings, defaults, finish};
use crate::api::canary::{convert, flat, v1alpha1, v1beta1};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::{apisix_route, rules};
use crate::release::apex::{ApexService, DEFAULT_PORT_NAME};

mod flagger;
mod hooks;
pub mod matches;
mod metrics;

use self::hooks::{alerts, webhooks};
use self::metrics::metrics;

/// The only mesh provider: Flagger users may leave `provider: apisix` in place.
pub const PROVIDER: &str = "apisix";
/// The `trafficDistribution` a Service takes (Kubernetes 1.31 and later).
const TRAFFIC_DISTRIBUTION: &str = "PreferClose";

impl Plan {
    /// Parses a v1beta1 spec: every field checked, every problem reported at once.
    pub fn from_canary(spec: &v1beta1::CanarySpec) -> Parsed<Plan> {
        let mut f = Findings::default();
        let plan = parse_v1beta1(spec, &mut f);
        defaults_apart(&spec.analysis, &mut f);
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
        let beta = match convert::spec_to_v1beta1(&expandable, spill.map(String::as_str)) {
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

/// Where a Flagger Canary that leaves a setting out would get Flagger's default and gets
/// ours: said at admission, so a ported object's meaning is never changed silently.
fn defaults_apart(a: &v1beta1::Analysis, f: &mut Findings) {
    let ap = Path::new("spec").child("analysis");
    if a.max_weight.is_none() && a.step_weights.is_none() {
        let why = format!(
            "not set: the canary goes up to {}% before its promotion here, where Flagger's default is 100%; set it \
             to say which",
            defaults::MAX_WEIGHT
        );
        f.warnings.push((ap.child("maxWeight"), why));
    }
    if a.threshold.is_none() {
        let why = format!(
            "not set: {} failed checks roll the release back here, where Flagger's default is 1; set it to say which",
            defaults::THRESHOLD
        );
        f.warnings.push((ap.child("threshold"), why));
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
    let apex = spec.service.as_ref().and_then(|s| apex(s, port, &p.child("service"), f));
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
    // Flagger advances by stepWeight up to the last stepWeights entry when both are set:
    // a mix of the two that no other reading gives.
    // Refused in v1alpha1 too: it is stored as v1beta1, which the controller reads.
    let step_weight = match (a.step_weight, &a.step_weights) {
        (Some(_), Some(_)) => {
            let why = "set stepWeight or stepWeights, not both: Flagger would advance by stepWeight up to the last \
                       stepWeights entry";
            f.errors.push(FieldError::forbidden(&ap.child("stepWeight"), why));
            None
        }
        _ => step_weight,
    };
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
    let flagger = flagger::settings(spec, &p, f);
    let ab = flagger::ab(a, &ap, f);
    let sticky = flagger::sticky(a, &ap, f);
    // An A/B release has one step: all of the matching requests.
    let (steps, max_weight) = if ab.is_some() { (vec![100], 100) } else { (steps, max_weight) };
    let judge = JudgeSettings {
        judge: a.judge.as_deref(),
        confidence: a.confidence.map(|c| (Some(c), Shown::bare(c))),
        judge_path: ap.child("judge"),
        confidence_path: ap.child("confidence"),
        judge_name: "judge",
    }
    .resolve(f);
    let plan = Plan {
        target: spec.target_ref.name.clone(),
        route,
        service,
        port,
        apex,
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
        metrics_server: flagger.metrics_server,
        ingress: flagger.ingress,
        canary_ready_threshold: flagger.canary_ready_threshold,
        judge,
        ab,
        sticky,
    };
    let max_of = |name: &str| {
        let i = a.metrics.iter().position(|m| m.name == name)?;
        Some(ap.child("metrics").index(i).child("thresholdRange").child("max"))
    };
    judge::bucket_warnings(&plan, max_of, f);
    plan
}

/// The apex Service `spec.service` describes; `None` without a valid port (nothing to
/// generate: the Service must exist).
fn apex(s: &v1beta1::CanaryService, port: Option<u16>, p: &Path, f: &mut Findings) -> Option<ApexService> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let target_port = match &s.target_port {
        None => port.map(|p| IntOrString::Int(p.into())),
        Some(serde_json::Value::Number(n)) => {
            let tp = p.child("targetPort");
            let number = n
                .as_i64()
                .ok_or_else(|| FieldError::invalid(&tp, Shown::bare(n), "must be between 1 and 65535, inclusive"));
            number
                .and_then(|n| rules::port(&tp, n))
                .map(|n| IntOrString::Int(n.into()))
                .map_err(|e| f.errors.push(e))
                .ok()
        }
        Some(serde_json::Value::String(name)) => {
            rules::container_port_name(&p.child("targetPort"), name).map_err(|e| f.errors.push(e)).ok()?;
            Some(IntOrString::String(name.clone()))
        }
        Some(other) => {
            f.errors.push(FieldError::invalid(
                &p.child("targetPort"),
                Shown::bare(other),
                "must be a port number or a port name",
            ));
            None
        }
    };
    let port_name = s.port_name.clone().unwrap_or_else(|| DEFAULT_PORT_NAME.to_owned());
    if let Err(e) = rules::port_name(&p.child("portName"), &port_name) {
        f.errors.push(e);
    }
    if let Some(td) = s.traffic_distribution.as_deref().filter(|td| *td != TRAFFIC_DISTRIBUTION) {
        f.errors.push(FieldError::not_supported(&p.child("trafficDistribution"), td, &[TRAFFIC_DISTRIBUTION]));
    }
    let metadata = s.apex.clone().unwrap_or_default();
    Some(ApexService {
        port: port?,
        target_port: target_port?,
        port_name,
        app_protocol: s.app_protocol.clone(),
        port_discovery: s.port_discovery.unwrap_or(false),
        headless: s.headless.unwrap_or(false),
        traffic_distribution: s.traffic_distribution.clone(),
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
    })
}

/// A name that must be present and unique in its list.
fn unique_name<'a>(name: &'a str, what: &str, path: &Path, seen: &mut BTreeSet<&'a str>, f: &mut Findings) {
    if name.is_empty() {
        f.errors.push(FieldError::required(&path.child("name"), format!("{what} needs a name")));
    } else if !seen.insert(name) {
        f.errors.push(FieldError::duplicate(&path.child("name"), name));
    }
}
