//! `spec.http[].match.exprs`: translated to APISIX `vars` as the ingress controller does
//! and evaluated with lua-resty-expr's semantics (a missing variable fails `==`, regex
//! and `in`, and passes their negations). [`Vars`] is lua-resty-expr itself, as plugins
//! such as `response-rewrite` take it: `[["status", "==", 200]]`, `["OR", [..], [..]]`.

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

/// A right-hand value as lua-resty-expr holds it: a Lua string and a number differ
/// (`==` against a number compares `tonumber` of the variable).
#[derive(Debug, Clone)]
enum Operand {
    Str(String),
    Num(f64),
    /// JSON `null`: Lua's `nil`, equal only to a missing variable.
    Nil,
    /// A boolean, array or object: equal to no variable.
    Other,
}

impl Operand {
    fn from_json(v: &Value) -> Self {
        match v {
            Value::String(s) => Operand::Str(s.clone()),
            Value::Number(n) => n.as_f64().map_or(Operand::Other, Operand::Num),
            Value::Null => Operand::Nil,
            _ => Operand::Other,
        }
    }

    /// Lua's `tostring` of a string or number (`tostring(200)` is "200").
    fn text(&self) -> Option<String> {
        match self {
            Operand::Str(s) => Some(s.clone()),
            Operand::Num(n) => Some(lua_number(*n)),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Operand::Str(s) => tonumber(s),
            Operand::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// Lua's `l_v == r_v` with lua-resty-expr's `tonumber` of `l_v` against a number.
    fn equals(&self, value: Option<&str>) -> bool {
        match self {
            Operand::Str(s) => value == Some(s.as_str()),
            Operand::Num(n) => value.and_then(tonumber) == Some(*n),
            Operand::Nil => value.is_none(),
            Operand::Other => false,
        }
    }
}

/// Lua's `tostring` of a number: integers without a fraction.
fn lua_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() }
}

/// Lua's `tonumber` of a string: decimal (surrounding space allowed) or `0x` hex.
fn tonumber(s: &str) -> Option<f64> {
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        let n = i64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if negative { -n } else { n });
    }
    // Rust also reads "inf" and "nan"; Lua does not.
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return None;
    }
    s.parse().ok()
}

#[derive(Debug, Clone)]
enum Op {
    Equal(Operand),
    NotEqual(Operand),
    Greater(Operand),
    GreaterEqual(Operand),
    Less(Operand),
    LessEqual(Operand),
    Regex(Regex),
    In(Vec<Operand>),
    /// `has`: an element of a table variable; the gateway's variables are strings, so never.
    Has,
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
        let operand = || value().map(Operand::Str);
        let set = || {
            let set = w.set.clone().ok_or_else(|| format!("exprs: op {} needs a set", w.op))?;
            Ok::<_, String>(set.into_iter().map(Operand::Str).collect())
        };
        let (negate, op) = match w.op.as_str() {
            "Equal" => (false, Op::Equal(operand()?)),
            "NotEqual" => (false, Op::NotEqual(operand()?)),
            "GreaterThan" => (false, Op::Greater(operand()?)),
            "GreaterThanEqual" => (false, Op::GreaterEqual(operand()?)),
            "LessThan" => (false, Op::Less(operand()?)),
            "LessThanEqual" => (false, Op::LessEqual(operand()?)),
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
        let compare = |r: &Operand, f: fn(f64, f64) -> bool| match (value.and_then(tonumber), r.number()) {
            (Some(l), Some(r)) => f(l, r),
            _ => false,
        };
        let result = match &self.op {
            Op::Equal(r) => r.equals(value),
            Op::NotEqual(r) => !r.equals(value),
            Op::Greater(r) => compare(r, |l, r| l > r),
            Op::GreaterEqual(r) => compare(r, |l, r| l >= r),
            Op::Less(r) => compare(r, |l, r| l < r),
            Op::LessEqual(r) => compare(r, |l, r| l <= r),
            Op::Regex(re) => value.is_some_and(|v| re.is_match(v)),
            Op::In(set) => value.is_some_and(|v| set.iter().any(|s| matches!(s, Operand::Str(s) if s == v))),
            Op::Has => false,
        };
        result != self.negate
    }
}

/// How a lua-resty-expr group combines its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    And,
    Or,
    NotAnd,
    NotOr,
}

impl Logic {
    fn parse(v: &Value) -> Option<Self> {
        match v.as_str()?.to_ascii_uppercase().as_str() {
            "AND" => Some(Logic::And),
            "OR" => Some(Logic::Or),
            "!AND" => Some(Logic::NotAnd),
            "!OR" => Some(Logic::NotOr),
            _ => None,
        }
    }
}

/// lua-resty-expr (`resty.expr.v1`) as APISIX plugins take it in `vars`: a list of
/// `[var, op, value]` (or `[var, "!", op, value]`, or `[var, value]` for `==`) that
/// must all hold, or a group `["AND" | "OR" | "!AND" | "!OR", expr, expr, ...]`.
/// Operators: `==`, `~=`, `>`, `>=`, `<`, `<=`, `~~` (regex), `~*` (regex, any case),
/// `in`, `has`; `ipmatch` is not simulated. An empty list always holds.
#[derive(Debug, Clone)]
pub enum Vars {
    Expr(Expr),
    Group(Logic, Vec<Vars>),
}

fn lua_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) => Operand::from_json(v).text(),
        _ => None,
    }
}

impl Vars {
    /// `expr.new(rule)`: the messages are lua-resty-expr's, after `vars: `.
    pub fn compile(rule: &Value) -> Result<Self, String> {
        let fail = |m: &str| Err(format!("vars: {m}"));
        let Some(rule) = rule.as_array() else { return fail("must be an array") };
        let Some(first) = rule.first() else { return Ok(Vars::Group(Logic::And, Vec::new())) };
        if !first.is_array() && Logic::parse(first).is_none() {
            return fail("rule should be wrapped inside brackets");
        }
        Self::group(rule).map_err(|m| format!("vars: {m}"))
    }

    /// lua-resty-expr's `compile`: a list of rules, a logic group or one expression.
    fn group(rules: &[Value]) -> Result<Self, String> {
        let Some(first) = rules.first() else { return Err("rule too short".into()) };
        let member =
            |v: &Value| v.as_array().ok_or_else(|| "invalid expression".to_owned()).and_then(|r| Self::group(r));
        if first.is_array() {
            return Ok(Vars::Group(Logic::And, rules.iter().map(member).collect::<Result<_, _>>()?));
        }
        if let Some(logic) = Logic::parse(first) {
            if rules.len() <= 2 {
                return Err("rule too short".into());
            }
            return Ok(Vars::Group(logic, rules[1..].iter().map(member).collect::<Result<_, _>>()?));
        }
        Self::expr(rules).map(Vars::Expr)
    }

    /// lua-resty-expr's `compile_expr`.
    fn expr(e: &[Value]) -> Result<Expr, String> {
        let (l, op, r, negate) = if e.len() == 4 {
            if e[1].as_str() != Some("!") {
                return Err("bad 'not' expression".into());
            }
            (e.first(), e.get(2), e.get(3), true)
        } else {
            (e.first(), e.get(1), e.get(2), false)
        };
        let op = op.and_then(lua_text).map(|o| o.to_ascii_lowercase());
        let known =
            |o: &str| matches!(o, "==" | "~=" | ">" | ">=" | "<" | "<=" | "~~" | "~*" | "in" | "has" | "ipmatch");
        // `[var, value]`: "for compatibility", `==` against the (lower-cased) second item.
        let (op, r) = match (op, r) {
            (Some(o), None) if !known(&o) => ("==".to_owned(), Operand::Str(o)),
            (Some(o), r) => (o, r.map_or(Operand::Nil, Operand::from_json)),
            (None, _) => return Err("invalid expression".into()),
        };
        let Some(var) = l.and_then(Value::as_str).map(str::to_owned) else {
            return Err("invalid expression".into());
        };
        let pattern = |r: &Operand| r.text().ok_or_else(|| format!("invalid regex for operator '{op}'"));
        let op = match op.as_str() {
            "==" => Op::Equal(r),
            "~=" => Op::NotEqual(r),
            ">" => Op::Greater(r),
            ">=" => Op::GreaterEqual(r),
            "<" => Op::Less(r),
            "<=" => Op::LessEqual(r),
            "~~" => Op::Regex(regex(&pattern(&r)?, false)?),
            "~*" => Op::Regex(regex(&pattern(&r)?, true)?),
            "in" => {
                let items = e.get(if negate { 3 } else { 2 }).and_then(Value::as_array);
                Op::In(items.map(|a| a.iter().map(Operand::from_json).collect()).unwrap_or_default())
            }
            "has" => Op::Has,
            "ipmatch" => return Err("operator 'ipmatch' is not simulated".into()),
            other => return Err(format!("invalid operator '{other}'")),
        };
        Ok(Expr { var, negate, op })
    }

    /// Whether the variables `var` reads satisfy the rule.
    pub fn eval(&self, var: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Vars::Expr(e) => e.eval(var(&e.var).as_deref()),
            Vars::Group(logic, members) => {
                let all = || members.iter().all(|m| m.eval(var));
                let any = || members.iter().any(|m| m.eval(var));
                match logic {
                    Logic::And => all(),
                    Logic::Or => any(),
                    Logic::NotAnd => !all(),
                    Logic::NotOr => !any(),
                }
            }
        }
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

    fn vars(rule: Value) -> Vars {
        Vars::compile(&rule).unwrap_or_else(|e| panic!("{rule}: {e}"))
    }

    #[test]
    fn vars_follow_lua_resty_expr() {
        let env = |name: &str| match name {
            "status" => Some("200".to_owned()),
            "http_x" => Some("Abc".to_owned()),
            "arg_name" => Some("jack".to_owned()),
            _ => None,
        };
        let cases: &[(Value, bool)] = &[
            (json!([]), true),
            (json!([["status", "==", 200]]), true),
            (json!([["status", "==", "200"]]), true),
            (json!([["status", "==", 200.0]]), true),
            (json!([["status", "~=", 200]]), false),
            (json!([["status", ">=", 500]]), false),
            (json!([["status", "<", "300"]]), true),
            (json!([["missing", "~=", 200]]), true),
            (json!([["missing", "==", null]]), true),
            (json!([["status", "==", null]]), false),
            (json!([["http_x", "~~", "^A"]]), true),
            (json!([["http_x", "~~", "^a"]]), false),
            (json!([["http_x", "~*", "^a"]]), true),
            (json!([["http_x", "!", "~~", "^a"]]), true),
            (json!([["http_x", "in", ["Abc", "d"]]]), true),
            (json!([["http_x", "!", "in", ["Abc"]]]), false),
            (json!([["http_x", "has", "Abc"]]), false),
            // `[var, value]` is `==` against the value lower-cased, as lua-resty-expr does.
            (json!([["arg_name", "JACK"]]), true),
            (json!([["status", "==", 200], ["http_x", "==", "x"]]), false),
            (json!(["OR", ["status", "==", 500], ["http_x", "==", "Abc"]]), true),
            (json!(["!OR", ["status", "==", 500], ["http_x", "==", "Abc"]]), false),
            (json!(["AND", ["status", "==", 200], ["OR", ["missing", "==", "1"], ["arg_name", "==", "jack"]]]), true),
            (json!(["!AND", ["status", "==", 200], ["arg_name", "==", "jack"]]), false),
            (json!([["status", "==", true]]), false),
        ];
        for (rule, want) in cases {
            assert_eq!(vars(rule.clone()).eval(&env), *want, "{rule}");
        }
    }

    #[test]
    fn bad_vars_say_why() {
        let bad = |rule: Value| Vars::compile(&rule).unwrap_err();
        assert_eq!(bad(json!({"status": 200})), "vars: must be an array");
        assert_eq!(bad(json!(["status", "==", 200])), "vars: rule should be wrapped inside brackets");
        assert_eq!(bad(json!(["OR", ["status", "==", 200]])), "vars: rule too short");
        assert_eq!(bad(json!([["status", "=", 200]])), "vars: invalid operator '='");
        assert_eq!(bad(json!([["status", "?", "==", 200]])), "vars: bad 'not' expression");
        assert_eq!(bad(json!([[200, "==", 200]])), "vars: invalid expression");
        assert!(bad(json!([["remote_addr", "ipmatch", "10.0.0.0/8"]])).contains("not simulated"));
        assert!(bad(json!([["uri", "~~", "("]])).contains("invalid regex"));
    }

    #[test]
    fn lua_numbers() {
        assert_eq!(tonumber(" 200 "), Some(200.0));
        assert_eq!(tonumber("0x10"), Some(16.0));
        assert_eq!(tonumber("1e3"), Some(1000.0));
        assert_eq!(tonumber("inf"), None);
        assert_eq!(tonumber("nan"), None);
        assert_eq!(tonumber(""), None);
        assert_eq!(lua_number(3.0), "3");
        assert_eq!(lua_number(3.5), "3.5");
    }
}
