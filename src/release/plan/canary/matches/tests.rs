//! The translation table, matcher by matcher, and each refusal with its message.

use serde_json::json;

use super::*;

fn one(entry: Value) -> Result<Vec<MatchExpr>, Vec<String>> {
    let mut f = Findings::default();
    let rules = translate(&[entry], &Path::new("spec").child("analysis").child("match"), &mut f);
    if f.errors.is_empty() {
        Ok(rules.into_iter().next().unwrap_or_default())
    } else {
        Err(f.errors.iter().map(ToString::to_string).collect())
    }
}

fn expr(scope: &'static str, name: Option<&str>, op: &'static str, value: &str) -> MatchExpr {
    MatchExpr { scope, name: name.map(str::to_owned), op, value: value.to_owned() }
}

#[test]
fn each_flagger_matcher_has_its_apisix_expr() {
    let cases = [
        (json!({"headers": {"x-canary": {"exact": "insider"}}}), expr("Header", Some("x-canary"), "Equal", "insider")),
        (json!({"headers": {"X-Canary": {"exact": "insider"}}}), expr("Header", Some("x-canary"), "Equal", "insider")),
        (
            json!({"headers": {"user-agent": {"prefix": "Mozilla/5.0 (X"}}}),
            expr("Header", Some("user-agent"), "RegexMatch", r"^Mozilla/5\.0 \(X"),
        ),
        (json!({"headers": {"x-env": {"suffix": ".eu"}}}), expr("Header", Some("x-env"), "RegexMatch", r"\.eu$")),
        (
            json!({"headers": {"user-agent": {"regex": ".*Firefox.*"}}}),
            expr("Header", Some("user-agent"), "RegexMatch", "^(?:.*Firefox.*)$"),
        ),
        // Flagger's cookie, as its docs write it.
        (
            json!({"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}),
            expr("Header", Some("cookie"), "RegexMatch", "^(?:^(.*?;)?(canary=always)(;.*)?$)$"),
        ),
        (json!({"withoutHeaders": {"x-canary": {"exact": "no"}}}), expr("Header", Some("x-canary"), "NotEqual", "no")),
        (
            json!({"withoutHeaders": {"x-canary": {"regex": "n.*"}}}),
            expr("Header", Some("x-canary"), "RegexNotMatch", "^(?:n.*)$"),
        ),
        (json!({"queryParams": {"canary": {"exact": "1"}}}), expr("Query", Some("canary"), "Equal", "1")),
        (json!({"uri": {"prefix": "/api/v2"}}), expr("Path", None, "RegexMatch", "^/api/v2")),
        (
            json!({"uri": {"exact": "/Login"}, "ignoreUriCase": true}),
            expr("Path", None, "RegexMatchCaseInsensitive", "^/Login$"),
        ),
        (json!({"method": {"exact": "POST"}}), expr("Variable", Some("request_method"), "Equal", "POST")),
    ];
    for (entry, want) in cases {
        assert_eq!(one(entry.clone()), Ok(vec![want]), "{entry}");
    }
    // Several matchers of an entry all hold; entries are alternatives (one rule each).
    let mut f = Findings::default();
    let rules = translate(
        &[
            json!({"headers": {"x-canary": {"exact": "insider"}}, "uri": {"prefix": "/api"}}),
            json!({"headers": {"cookie": {"regex": ".*canary=always.*"}}}),
        ],
        &Path::new("m"),
        &mut f,
    );
    assert!(f.errors.is_empty());
    assert_eq!(rules.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(
        rules[0][0].to_json(),
        json!({"subject": {"scope": "Header", "name": "x-canary"}, "op": "Equal", "value": "insider"})
    );
    assert_eq!(rules[0][1].to_json(), json!({"subject": {"scope": "Path"}, "op": "RegexMatch", "value": "^/api"}));
}

#[test]
fn each_refusal_names_the_field_the_value_and_why() {
    let refused = |entry: Value| one(entry).unwrap_err().join("\n");
    assert_eq!(
        refused(json!({"sourceLabels": {"app": "web"}})),
        "spec.analysis.match[0].sourceLabels: Forbidden: APISIX does not know the calling pod's labels"
    );
    assert!(
        refused(json!({"scheme": {"exact": "https"}}))
            .starts_with("spec.analysis.match[0].scheme: Forbidden: the scheme")
    );
    let bad = refused(json!({"headers": {"x-canary": {"regex": "(?=lookahead)"}}}));
    assert!(
        bad.starts_with("spec.analysis.match[0].headers[x-canary].regex: Invalid value: \"(?=lookahead)\": not a regular expression in Envoy's RE2 syntax"),
        "{bad}"
    );
    assert_eq!(
        refused(json!({"headers": {"x-canary": {"contains": "a"}}})),
        "spec.analysis.match[0].headers[x-canary].contains: Unsupported value: \"contains\": supported values: \"exact\", \"prefix\", \"suffix\", \"regex\""
    );
    assert!(
        refused(json!({"headers": {"x-canary": {"exact": "a", "prefix": "b"}}}))
            .contains("must be one of exact, prefix, suffix or regex")
    );
    assert!(refused(json!({"headers": {"x-canary": {"exact": 5}}})).contains("must be a string"));
    assert!(refused(json!("x-canary")).contains("must be an object of matchers"));
    assert!(refused(json!({"name": "only-a-name"})).contains("a match entry needs a matcher"));
}
