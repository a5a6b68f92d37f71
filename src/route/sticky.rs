//! A sticky release (`sessionAffinity`) on APISIX, from its documented plugins: a client
//! stays on the version that first answered it while the weight moves.
//!
//! ```text
//!  rule R-sticky-canary  priority p+2  Cookie C == <canary Service addr>   -> canary (stable once w = 0)
//!  rule R-sticky-stable  priority p+2  Cookie C present, != canary addr    -> stable
//!  rule R                priority p+1  weighted 100-w / w, response-rewrite:
//!                                      Set-Cookie: C=$balancer_ip:$balancer_port; Max-Age=...
//! ```
//!
//! The backends resolve by Service (`resolveGranularity: service`), so the address that
//! answered, and the cookie, is the Service's ClusterIP and port: the same for every pod
//! of a version, for the whole release. A client without the cookie takes the weighted
//! rule and is told which version answered; with it, it takes its version's rule. A
//! rollback (weight 0) sends the canary's rule to the stable; a promotion, and a
//! rollback, delete the generated route: the cookie then names nothing any more.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::api::apisix_route::{HttpRule, Plugin};
use crate::release::plan::Sticky;

/// The names of the sticky rules: `<rule>` followed by these.
pub const TO_CANARY: &str = "-sticky-canary";
pub const TO_STABLE: &str = "-sticky-stable";

/// The cookie's value: the one node the balancer chose, never a list of retried ones.
const SET_TO: &str = "$balancer_ip:$balancer_port";

/// Where the canary Service answers: its ClusterIP and its ports (name, number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryAddress {
    pub cluster_ip: String,
    pub ports: Vec<(Option<String>, i32)>,
}

impl CanaryAddress {
    /// `ip:port` for the backend port a rule names (a number or a port's name).
    fn of(&self, port: Option<&IntOrString>) -> String {
        let number = match port {
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::String(name)) => {
                self.ports.iter().find(|(n, _)| n.as_deref() == Some(name)).map_or(0, |(_, p)| *p)
            }
            None => self.ports.first().map_or(0, |(_, p)| *p),
        };
        format!("{}:{number}", self.cluster_ip)
    }
}

/// The rules a sticky release makes of one weighted copy `weighted` (its backends
/// stable then canary): the two cookie rules, then the weighted one, which now tells the
/// client who answered.
pub fn rules(weighted: HttpRule, sticky: &Sticky, canary: &CanaryAddress) -> Vec<HttpRule> {
    let mut weighted = weighted;
    for b in weighted.backends.iter_mut().flatten() {
        b.resolve_granularity = Some("service".to_owned());
    }
    let addr = canary.of(weighted.backends.iter().flatten().next().and_then(|b| b.service_port.as_ref()));
    let cookie = |op: &str, value: &str| json!({"subject": {"scope": "Cookie", "name": sticky.cookie}, "op": op, "value": value});
    let above = |suffix: &str, exprs: Vec<serde_json::Value>| {
        let mut rule = weighted.clone();
        rule.name = format!("{}{suffix}", weighted.name);
        rule.priority = Some(rule.priority.unwrap_or(0).saturating_add(1));
        let mut m = rule.match_.take().unwrap_or_default();
        m.exprs.get_or_insert_with(Vec::new).extend(exprs);
        rule.match_ = Some(m);
        rule
    };
    let to_canary = above(TO_CANARY, vec![cookie("Equal", &addr)]);
    let to_stable = above(TO_STABLE, vec![cookie("RegexMatch", "."), cookie("NotEqual", &addr)]);
    // Nothing set on APISIX's own error pages (no node chosen): that would wipe the
    // client's cookie.
    let set_cookie = format!("{}={SET_TO}; {}", sticky.cookie, sticky.attributes);
    let rewrite = Plugin {
        name: "response-rewrite".to_owned(),
        enable: Some(true),
        config: Some(json!({"headers": {"set": {"Set-Cookie": set_cookie}}, "vars": [["balancer_ip", "~~", "."]]})),
        other: Default::default(),
    };
    weighted.plugins.get_or_insert_with(Vec::new).push(rewrite);
    vec![to_canary, to_stable, weighted]
}

/// The canary's weight on a rule of the generated route at release weight `weight`: a
/// sticky rule sends all or nothing, the canary's only while the release holds traffic.
pub fn canary_weight(rule: &HttpRule, weight: u32) -> Option<u32> {
    if rule.name.ends_with(TO_STABLE) {
        Some(0)
    } else if rule.name.ends_with(TO_CANARY) {
        Some(if weight == 0 { 0 } else { 100 })
    } else {
        None
    }
}

/// Whether this is the weighted rule's cookie: ours, set to the answering Service.
fn ours(p: &Plugin) -> bool {
    p.name == "response-rewrite"
        && p.config
            .as_ref()
            .and_then(|c| c.pointer("/headers/set/Set-Cookie"))
            .and_then(|v| v.as_str())
            .is_some_and(|v| v.contains(SET_TO))
}

/// The weighted rule tells a client who answered only while the release holds traffic:
/// a client answered at weight 0 was never part of the split, and keeps no version.
pub fn set_telling(rule: &mut HttpRule, weight: u32) {
    for p in rule.plugins.iter_mut().flatten().filter(|p| ours(p)) {
        p.enable = Some(weight > 0);
    }
}

/// Why a sticky release cannot run on the user's `route` rules `rules`, if so: a rule
/// with its own enabled `response-rewrite`, which ours would replace (APISIX keeps the
/// last plugin of a name).
pub fn conflict(route: &crate::api::apisix_route::ApisixRoute, rules: &[usize]) -> Option<String> {
    let written = route.spec.http.as_deref().unwrap_or_default();
    let rule = rules
        .iter()
        .filter_map(|&i| written.get(i))
        .find(|r| r.plugins.iter().flatten().any(|p| p.name == "response-rewrite" && p.enable != Some(false)))?;
    Some(format!(
        "apisix route {}: rule {} has its own response-rewrite plugin; a sticky release (sessionAffinity) sets the \
         session cookie with one, and APISIX keeps only the last of a name: disable it on that rule, or drop \
         sessionAffinity",
        route.metadata.name.as_deref().unwrap_or_default(),
        rule.name
    ))
}

/// Whether `rule` is one of the cookie rules, which carry no release weight.
pub fn is_sticky(rule: &HttpRule) -> bool {
    rule.name.ends_with(TO_CANARY) || rule.name.ends_with(TO_STABLE)
}
