//! `spec.http[].match.exprs`: translated to APISIX `vars` as the ingress controller does
//! and evaluated with lua-resty-expr's semantics (a missing variable fails `==`, regex
//! and `in`, and passes their negations).

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::Value;

/// One `exprs[]` entry as written in an ApisixRoute.
#[derive(Debug, Deserialize)]
struct Written {
    subject: Subject,
    op: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    set: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Subject {
    scope: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    Greater(String),
    GreaterEqual(String),
    Less(String),
    LessEqual(String),
    Regex(Regex),
    In(Vec<String>),
}

/// A compiled expression: `<var> [!] <op> <value>`.
#[derive(Debug, Clone)]
pub struct Expr {
    /// The nginx variable: `http_user_agent`, `arg_x`, `cookie_y`, `uri`.
    pub var: String,
    negate: bool,
    op: Op,
}

/// The nginx variable an expression subject reads.
fn variable(subject: &Subject) -> Result<String, String> {
    let name = subject.name.clone().unwrap_or_default();
    let need_name = |prefix: &str| {
        if name.is_empty() {
            Err(format!("exprs: subject.name is required for scope {}", subject.scope))
        } else {
            Ok(format!("{prefix}{name}"))
        }
    };
    match subject.scope.as_str() {
        "Header" => need_name("http_").map(|v| v.to_ascii_lowercase().replace('-', "_")),
        "Query" => need_name("arg_"),
        "Cookie" => need_name("cookie_"),
        "Path" => Ok("uri".to_owned()),
        "Variable" => need_name(""),
        "Body" => need_name("post_arg_"),
        other => Err(format!("exprs: unknown subject.scope {other:?}")),
    }
}

fn regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|e| format!("exprs: invalid regex {pattern:?}: {e}"))
}

impl Expr {
    /// Compiles one `exprs[]` entry; the message says what is wrong with it.
    pub fn compile(written: &Value) -> Result<Self, String> {
        let w: Written = serde_json::from_value(written.clone()).map_err(|e| format!("exprs: {e}"))?;
        let var = variable(&w.subject)?;
        let value = || w.value.clone().ok_or_else(|| format!("exprs: op {} needs a value", w.op));
        let set = || w.set.clone().ok_or_else(|| format!("exprs: op {} needs a set", w.op));
        let (negate, op) = match w.op.as_str() {
            "Equal" => (false, Op::Equal(value()?)),
            "NotEqual" => (false, Op::NotEqual(value()?)),
            "GreaterThan" => (false, Op::Greater(value()?)),
            "GreaterThanEqual" => (false, Op::GreaterEqual(value()?)),
            "LessThan" => (false, Op::Less(value()?)),
            "LessThanEqual" => (false, Op::LessEqual(value()?)),
            "RegexMatch" => (false, Op::Regex(regex(&value()?, false)?)),
            "RegexNotMatch" => (true, Op::Regex(regex(&value()?, false)?)),
            "RegexMatchCaseInsensitive" => (false, Op::Regex(regex(&value()?, true)?)),
            "RegexNotMatchCaseInsensitive" => (true, Op::Regex(regex(&value()?, true)?)),
            "In" => (false, Op::In(set()?)),
            "NotIn" => (true, Op::In(set()?)),
            other => return Err(format!("exprs: unknown op {other:?}")),
        };
        Ok(Self { var, negate, op })
    }

    /// Evaluates against the request's variables (`None` when the request lacks one).
    pub fn eval(&self, value: Option<&str>) -> bool {
        let number = |s: &str| s.trim().parse::<f64>().ok();
        let compare = |r: &str, f: fn(f64, f64) -> bool| match (value.and_then(number), number(r)) {
            (Some(l), Some(r)) => f(l, r),
            _ => false,
        };
        let result = match &self.op {
            Op::Equal(r) => value == Some(r.as_str()),
            Op::NotEqual(r) => value != Some(r.as_str()),
            Op::Greater(r) => compare(r, |l, r| l > r),
            Op::GreaterEqual(r) => compare(r, |l, r| l >= r),
            Op::Less(r) => compare(r, |l, r| l < r),
            Op::LessEqual(r) => compare(r, |l, r| l <= r),
            Op::Regex(re) => value.is_some_and(|v| re.is_match(v)),
            Op::In(set) => value.is_some_and(|v| set.iter().any(|s| s == v)),
        };
        result != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expr(scope: &str, name: &str, op: &str, value: Value) -> Expr {
        let mut w = json!({"subject": {"scope": scope, "name": name}, "op": op});
        if value.is_array() {
            w["set"] = value;
        } else {
            w["value"] = value;
        }
        Expr::compile(&w).unwrap()
    }

    #[test]
    fn operators_follow_lua_resty_expr() {
        let cases: &[(&str, Value, Option<&str>, bool)] = &[
            ("Equal", json!("a"), Some("a"), true),
            ("Equal", json!("a"), None, false),
            ("NotEqual", json!("a"), Some("b"), true),
            ("NotEqual", json!("a"), None, true),
            ("RegexMatch", json!(".*Chrome.*"), Some("Mozilla Chrome/1"), true),
            ("RegexMatch", json!("Chrome"), Some("xChromex"), true),
            ("RegexMatch", json!("^Chrome"), Some("xChrome"), false),
            ("RegexMatch", json!("x"), None, false),
            ("RegexNotMatch", json!("Chrome"), Some("Firefox"), true),
            ("RegexNotMatch", json!("Chrome"), None, true),
            ("RegexMatchCaseInsensitive", json!("chrome"), Some("CHROME"), true),
            ("In", json!(["a", "b"]), Some("b"), true),
            ("In", json!(["a", "b"]), None, false),
            ("NotIn", json!(["a", "b"]), Some("c"), true),
            ("NotIn", json!(["a", "b"]), Some("a"), false),
            ("NotIn", json!(["a"]), None, true),
            ("GreaterThan", json!("10"), Some("11"), true),
            ("GreaterThan", json!("10"), Some("x"), false),
            ("LessThanEqual", json!("10"), Some("10"), true),
        ];
        for (op, value, input, want) in cases {
            let e = expr("Header", "User-Agent", op, value.clone());
            assert_eq!(e.eval(*input), *want, "{op} {value} on {input:?}");
        }
    }

    #[test]
    fn subjects_become_nginx_variables() {
        assert_eq!(expr("Header", "X-Canary-Id", "Equal", json!("1")).var, "http_x_canary_id");
        assert_eq!(expr("Query", "id", "Equal", json!("1")).var, "arg_id");
        assert_eq!(expr("Cookie", "c", "Equal", json!("1")).var, "cookie_c");
        let path = Expr::compile(&json!({"subject": {"scope": "Path"}, "op": "Equal", "value": "/"})).unwrap();
        assert_eq!(path.var, "uri");
    }

    #[test]
    fn bad_expressions_say_why() {
        let bad = |w: Value| Expr::compile(&w).unwrap_err();
        assert!(bad(json!({"subject": {"scope": "Header", "name": "a"}, "op": "Like", "value": "x"})).contains("Like"));
        assert!(bad(json!({"subject": {"scope": "Header"}, "op": "Equal", "value": "x"})).contains("name"));
        assert!(bad(json!({"subject": {"scope": "Header", "name": "a"}, "op": "In"})).contains("set"));
        assert!(
            bad(json!({"subject": {"scope": "Header", "name": "a"}, "op": "RegexMatch", "value": "("}))
                .contains("regex")
        );
    }
}
