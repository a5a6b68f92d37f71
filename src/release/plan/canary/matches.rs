//! Flagger's `analysis.match` (Istio's HTTPMatchRequest, as Flagger writes it) as APISIX
//! `match.exprs`, matcher by matcher. Each entry of the list is one rule of the generated
//! route (entries are alternatives); the matchers of an entry all hold (its exprs).
//!
//! | Flagger (Envoy semantics)        | APISIX expr (lua-resty-expr)                      |
//! |----------------------------------|---------------------------------------------------|
//! | `headers.H.exact: v`             | Header H `Equal` v                                |
//! | `headers.H.prefix: v`            | Header H `RegexMatch` `^<v escaped>`              |
//! | `headers.H.suffix: v`            | Header H `RegexMatch` `<v escaped>$`              |
//! | `headers.H.regex: r`             | Header H `RegexMatch` `^(?:r)$` (Envoy matches whole values) |
//! | `withoutHeaders.H.*`             | the same with `NotEqual` / `RegexNotMatch`        |
//! | `queryParams.Q.exact/prefix/regex` | Query Q, as headers                             |
//! | `uri.exact/prefix/regex`         | Path, as headers (`ignoreUriCase`: case-insensitive) |
//! | `method.exact/prefix/regex`      | Variable `request_method`, as headers             |
//!
//! A regex is Envoy's (RE2): it must compile as one, and APISIX's PCRE reads RE2's syntax
//! alike on header values (single lines). Anything else Istio can match on (scheme,
//! authority, port, sourceLabels, gateways, sourceNamespace) is not a request property
//! APISIX's route match sees the same way: refused with the reason.

use serde_json::{Value, json};

use crate::api::field::{FieldError, Findings, Path};

/// One APISIX `match.exprs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchExpr {
    /// `Header`, `Query`, `Cookie`, `Path` or `Variable`.
    pub scope: &'static str,
    /// The header, argument, cookie or variable; none for `Path`.
    pub name: Option<String>,
    pub op: &'static str,
    pub value: String,
}

impl MatchExpr {
    /// As an ApisixRoute v2 rule writes it.
    pub fn to_json(&self) -> Value {
        let mut subject = json!({"scope": self.scope});
        if let Some(name) = &self.name {
            subject["name"] = json!(name);
        }
        json!({"subject": subject, "op": self.op, "value": self.value})
    }
}

/// What Istio matches on that APISIX's route match does not see the same way.
const REFUSED: &[(&str, &str)] = &[
    ("scheme", "the scheme is TLS termination's in APISIX, not a route match: route by host or path instead"),
    ("authority", "use the route rule's hosts: the generated rule copies them"),
    ("port", "the listening port is APISIX's, not the route's"),
    ("sourceLabels", "APISIX does not know the calling pod's labels"),
    ("sourceNamespace", "APISIX does not know the calling pod's namespace"),
    ("gateways", "an Istio gateway: the routeRef's ApisixRoute routes the traffic"),
    ("statPrefix", "an Envoy statistics prefix, not a match"),
];

/// The exprs of each entry of `match`, every problem reported at its field.
pub fn translate(entries: &[Value], p: &Path, f: &mut Findings) -> Vec<Vec<MatchExpr>> {
    let mut rules = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let p = p.index(i);
        let Some(entry) = entry.as_object() else {
            f.errors.push(FieldError::invalid(&p, entry.to_string(), "must be an object of matchers"));
            continue;
        };
        let mut exprs = Vec::new();
        let ignore_case = entry.get("ignoreUriCase").and_then(Value::as_bool).unwrap_or(false);
        for (key, value) in entry {
            let at = p.child(key);
            match key.as_str() {
                "name" | "ignoreUriCase" => {}
                "headers" => named(value, "Header", false, &at, &mut exprs, f),
                "withoutHeaders" => named(value, "Header", true, &at, &mut exprs, f),
                "queryParams" => named(value, "Query", false, &at, &mut exprs, f),
                "uri" => exprs.extend(string_match(value, "Path", None, false, ignore_case, &at, f)),
                "method" => {
                    let name = Some("request_method".to_owned());
                    exprs.extend(string_match(value, "Variable", name, false, false, &at, f));
                }
                other => {
                    let why = REFUSED.iter().find(|(k, _)| *k == other).map_or(
                        "not a matcher of Flagger's match (headers, withoutHeaders, queryParams, uri, method)",
                        |(_, why)| why,
                    );
                    f.errors.push(FieldError::forbidden(&at, why));
                }
            }
        }
        if exprs.is_empty() && entry.keys().any(|k| k != "name") {
            continue;
        }
        if exprs.is_empty() {
            f.errors.push(FieldError::required(&p, "a match entry needs a matcher (headers, queryParams, uri, ...)"));
            continue;
        }
        rules.push(exprs);
    }
    rules
}

/// `headers`, `withoutHeaders` or `queryParams`: a map of names to string matches.
fn named(value: &Value, scope: &'static str, negated: bool, p: &Path, out: &mut Vec<MatchExpr>, f: &mut Findings) {
    let Some(map) = value.as_object() else {
        f.errors.push(FieldError::invalid(p, value.to_string(), "must be a map of names to string matches"));
        return;
    };
    for (name, m) in map {
        out.extend(string_match(m, scope, Some(name.to_ascii_lowercase()), negated, false, &p.key(name), f));
    }
}

/// One string match (`exact`, `prefix`, `suffix` or `regex`) as an expr.
fn string_match(
    value: &Value,
    scope: &'static str,
    name: Option<String>,
    negated: bool,
    ignore_case: bool,
    p: &Path,
    f: &mut Findings,
) -> Option<MatchExpr> {
    let Some(map) = value.as_object().filter(|m| m.len() == 1) else {
        let why = "must be one of exact, prefix, suffix or regex, with a string";
        f.errors.push(FieldError::invalid(p, value.to_string(), why));
        return None;
    };
    let (kind, v) = map.iter().next()?;
    let Some(v) = v.as_str() else {
        f.errors.push(FieldError::invalid(&p.child(kind), v.to_string(), "must be a string"));
        return None;
    };
    let (op, value) = match kind.as_str() {
        "exact" if !ignore_case => (if negated { "NotEqual" } else { "Equal" }, v.to_owned()),
        "exact" => (regex_op(negated, true), format!("^{}$", regex::escape(v))),
        "prefix" => (regex_op(negated, ignore_case), format!("^{}", regex::escape(v))),
        "suffix" => (regex_op(negated, ignore_case), format!("{}$", regex::escape(v))),
        "regex" => {
            if let Err(e) = regex::Regex::new(v) {
                let why = format!("not a regular expression in Envoy's RE2 syntax, which Flagger's match uses: {e}");
                f.errors.push(FieldError::invalid(&p.child(kind), v, why.replace('\n', " ")));
                return None;
            }
            (regex_op(negated, ignore_case), format!("^(?:{v})$"))
        }
        other => {
            f.errors.push(FieldError::not_supported(&p.child(other), other, &["exact", "prefix", "suffix", "regex"]));
            return None;
        }
    };
    Some(MatchExpr { scope, name, op, value })
}

fn regex_op(negated: bool, ignore_case: bool) -> &'static str {
    match (negated, ignore_case) {
        (false, false) => "RegexMatch",
        (true, false) => "RegexNotMatch",
        (false, true) => "RegexMatchCaseInsensitive",
        (true, true) => "RegexNotMatchCaseInsensitive",
    }
}

#[cfg(test)]
mod tests;
