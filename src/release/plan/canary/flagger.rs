//! Flagger's Canary fields beyond the release's steps: those we implement in Flagger's
//! meaning (`metricsServer`, `ingressRef`, `canaryReadyThreshold`), those accepted and
//! ignored with a warning that says why (`autoscalerRef`, `primaryReadyThreshold`, the
//! other meshes' `spec.service` settings), and those refused with the reason, never
//! approximated (`canaryAnalysis`, `upstreamRef`, A/B, blue/green, mirroring, ...).

use super::super::{AbTest, Sticky, defaults};
use super::matches;
use crate::api::canary::{NamespacedRef, V1BETA1, v1beta1};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::rules;

/// Flagger's group and version: its objects port by their apiVersion alone, so a
/// reference that still names Flagger's kinds means ours.
pub const FLAGGER_V1BETA1: &str = "flagger.app/v1beta1";
/// The kinds `autoscalerRef` may name (Flagger's).
const AUTOSCALERS: &[&str] = &["HorizontalPodAutoscaler", "ScaledObject"];
/// The kind `ingressRef` names (Flagger's).
const INGRESS: &str = "Ingress";

/// What these fields give the plan.
pub(super) struct Settings {
    pub metrics_server: Option<String>,
    pub ingress: Option<String>,
    pub canary_ready_threshold: u32,
}

/// Checks every field of this module's kind; the settings of those we implement.
pub(super) fn settings(spec: &v1beta1::CanarySpec, p: &Path, f: &mut Findings) -> Settings {
    let metrics_server = spec.metrics_server.as_ref().and_then(|url| {
        rules::http_url(&p.child("metricsServer"), url).map_err(|e| f.errors.push(e)).ok().map(|_| url.clone())
    });
    if spec.canary_analysis.is_some() {
        let why = "Flagger's deprecated name of analysis: rename it to analysis";
        f.errors.push(FieldError::forbidden(&p.child("canaryAnalysis"), why));
    }
    if spec.upstream_ref.is_some() {
        let why = "a Gloo Upstream: APISIX routes to the Service of the routeRef's rule, there is no upstream to name";
        f.errors.push(FieldError::forbidden(&p.child("upstreamRef"), why));
    }
    if let Some(a) = &spec.autoscaler_ref {
        autoscaler(a, &p.child("autoscalerRef"), f);
    }
    let ingress = spec.ingress_ref.as_ref().map(|r| {
        let ip = p.child("ingressRef");
        if r.kind != INGRESS {
            f.errors.push(FieldError::not_supported(&ip.child("kind"), &r.kind, &[INGRESS]));
        }
        f.push(rules::object_name(&ip.child("name"), &r.name));
        r.name.clone()
    });
    if let Some(s) = &spec.service {
        service(s, &p.child("service"), f);
    }
    let ap = p.child("analysis");
    let mut percent = |key: &str, v: Option<i32>| {
        let v = v?;
        let path = ap.child(key);
        match u32::try_from(v).ok().filter(|v| *v <= 100) {
            Some(v) => Some((v, path)),
            None => {
                f.errors.push(FieldError::invalid(&path, Shown::bare(v), "must be between 0 and 100, inclusive"));
                None
            }
        }
    };
    let canary_ready_threshold = percent("canaryReadyThreshold", spec.analysis.canary_ready_threshold);
    if let Some((_, path)) = percent("primaryReadyThreshold", spec.analysis.primary_ready_threshold) {
        let why = "ignored: there is no primary Deployment; the promotion waits until the Deployment's rolling \
                   update has every replica updated and available";
        f.warnings.push((path, why.to_owned()));
    }
    unsupported(&spec.analysis, &ap, f);
    Settings {
        metrics_server,
        ingress,
        canary_ready_threshold: canary_ready_threshold.map_or(defaults::CANARY_READY_THRESHOLD, |(v, _)| v),
    }
}

fn autoscaler(a: &v1beta1::AutoscalerRef, p: &Path, f: &mut Findings) {
    if !AUTOSCALERS.contains(&a.kind.as_str()) {
        f.errors.push(FieldError::not_supported(&p.child("kind"), &a.kind, AUTOSCALERS));
    }
    f.push(rules::object_name(&p.child("name"), &a.name));
    let why = "not needed: the Deployment's own autoscaler keeps scaling it during a release (no primary copy is \
               made), and the canary copy is sized from the Deployment's current replicas";
    f.warnings.push((p.clone(), why.to_owned()));
    for (key, written) in [
        ("primaryScalerQueries", a.primary_scaler_queries.is_some()),
        ("primaryScalerReplicas", a.primary_scaler_replicas.is_some()),
    ] {
        if written {
            f.warnings.push((p.child(key), "ignored: there is no primary copy to scale".to_owned()));
        }
    }
}

/// `spec.service`'s Flagger fields outside the Service it describes.
fn service(s: &v1beta1::CanaryService, p: &Path, f: &mut Findings) {
    if s.primary.is_some() {
        let why = "there is no <service>-primary Service: the Deployment's own pods serve as the stable version \
                   through the Service; label the Service itself (or set apex when the Canary generates it)";
        f.errors.push(FieldError::forbidden(&p.child("primary"), why));
    }
    if s.canary.is_some() {
        let why = "the <service>-canary Service is a copy of the Service, with its labels and annotations; label \
                   the Service itself";
        f.errors.push(FieldError::forbidden(&p.child("canary"), why));
    }
    for (key, mesh) in s.mesh.written() {
        let why = format!(
            "ignored: a setting of {mesh}, which Flagger's APISIX provider ignores too: the routeRef's ApisixRoute \
             routes the traffic"
        );
        f.warnings.push((p.child(key), why));
    }
}

/// Flagger features APISIX cannot do as Flagger means them: refused, never approximated.
/// `match` with `iterations` is an A/B release ([`ab`]).
fn unsupported(a: &v1beta1::Analysis, p: &Path, f: &mut Findings) {
    let mirror = "traffic mirroring is not supported: APISIX's proxy-mirror requests are not counted in its \
                  metrics, so the built-in analysis could not judge the canary on them";
    let refusals = [("mirror", a.mirror.is_some(), mirror), ("mirrorWeight", a.mirror_weight.is_some(), mirror)];
    for (key, present, why) in refusals {
        if present {
            f.errors.push(FieldError::forbidden(&p.child(key), why));
        }
    }
}

/// `sessionAffinity`: a sticky release. The cookie's value is the address of the Service
/// that answered (APISIX's `$upstream_addr`), so one cookie keeps either version.
pub(super) fn sticky(a: &v1beta1::Analysis, p: &Path, f: &mut Findings) -> Option<Sticky> {
    let s = a.session_affinity.as_ref()?;
    let p = p.child("sessionAffinity");
    if a.match_.as_deref().is_some_and(|m| !m.is_empty()) {
        let why = "an A/B release sends the matching requests to the canary alone: there is nothing to keep sticky";
        f.errors.push(FieldError::forbidden(&p, why));
        return None;
    }
    let token =
        |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let Some(cookie) = s.cookie_name.as_deref().filter(|c| token(c)) else {
        let shown = s.cookie_name.clone().unwrap_or_default();
        let why = "must be a cookie name: letters, digits and !#$%&'*+-.^_`|~";
        f.errors.push(match &s.cookie_name {
            None => FieldError::required(&p.child("cookieName"), why),
            Some(_) => FieldError::invalid(&p.child("cookieName"), shown, why),
        });
        return None;
    };
    let max_age = match s.max_age {
        None => 86_400,
        Some(n) if n > 0 => n,
        Some(n) => {
            f.errors.push(FieldError::invalid(
                &p.child("maxAge"),
                Shown::bare(n),
                "must be a positive number of seconds",
            ));
            return None;
        }
    };
    let mut attributes = format!("Max-Age={max_age}; Path={}", s.path.as_deref().unwrap_or("/"));
    for (key, value) in [("Domain", s.domain.as_deref())] {
        if let Some(v) = value {
            attributes.push_str(&format!("; {key}={v}"));
        }
    }
    if let Some(same_site) = s.same_site.as_deref() {
        if !["Strict", "Lax", "None"].contains(&same_site) {
            f.errors.push(FieldError::not_supported(&p.child("sameSite"), same_site, &["Strict", "Lax", "None"]));
        }
        attributes.push_str(&format!("; SameSite={same_site}"));
    }
    for (flag, on) in [("HttpOnly", s.http_only), ("Secure", s.secure), ("Partitioned", s.partitioned)] {
        if on == Some(true) {
            attributes.push_str(&format!("; {flag}"));
        }
    }
    if s.primary_cookie_name.is_some() {
        let why = format!(
            "ignored: one cookie, {cookie}, keeps a client on either version (its value names the one that answered)"
        );
        f.warnings.push((p.child("primaryCookieName"), why));
    }
    Some(Sticky { cookie: cookie.to_owned(), attributes })
}

/// `match` and `iterations`: an A/B release, as Flagger's. Each `match` entry becomes a
/// rule of the generated route that sends what it matches to the canary alone, for
/// `iterations` intervals of checks; what does not match never reaches the canary.
pub(super) fn ab(a: &v1beta1::Analysis, p: &Path, f: &mut Findings) -> Option<AbTest> {
    let entries = a.match_.as_deref().filter(|m| !m.is_empty());
    let iterations = a.iterations.and_then(|n| {
        let path = p.child("iterations");
        match u32::try_from(n).ok().filter(|n| (1..=1000).contains(n)) {
            Some(n) => Some(n),
            None => {
                f.errors.push(FieldError::invalid(&path, Shown::bare(n), "must be an integer from 1 to 1000"));
                None
            }
        }
    });
    match (entries, a.iterations) {
        (None, None) => return None,
        (Some(_), None) => {
            let why = "an A/B release needs iterations: the number of intervals the canary is analysed on the \
                       matching requests before promotion";
            f.errors.push(FieldError::required(&p.child("iterations"), why));
        }
        (None, Some(_)) => {
            let why = "blue/green (iterations without match) is not supported: through APISIX the canary would get \
                       no traffic to be analysed on; add match for an A/B release, or use stepWeight";
            f.errors.push(FieldError::forbidden(&p.child("iterations"), why));
        }
        (Some(_), Some(_)) => {}
    }
    let rules = matches::translate(entries.unwrap_or_default(), &p.child("match"), f);
    for (key, present) in [("stepWeight", a.step_weight.is_some()), ("stepWeights", a.step_weights.is_some())] {
        if present && entries.is_some() {
            let why = "ignored in an A/B release: the matching requests all go to the canary, for iterations intervals";
            f.warnings.push((p.child(key), why.to_owned()));
        }
    }
    Some(AbTest { rules, iterations: iterations? })
}

/// A templateRef or providerRef's `apiVersion` and `kind`: ours, Flagger's (which
/// port as ours), or unset; anything else names an object we cannot read.
pub(super) fn reference(r: &NamespacedRef, kind: &str, p: &Path, f: &mut Findings) {
    if let Some(v) = r.api_version.as_deref().filter(|v| ![V1BETA1, FLAGGER_V1BETA1].contains(v)) {
        f.errors.push(FieldError::not_supported(&p.child("apiVersion"), v, &[V1BETA1, FLAGGER_V1BETA1]));
    }
    if let Some(k) = r.kind.as_deref().filter(|k| *k != kind) {
        f.errors.push(FieldError::not_supported(&p.child("kind"), k, &[kind]));
    }
    f.push(rules::object_name(&p.child("name"), &r.name));
}
