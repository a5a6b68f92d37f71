//! APISIX's `response-rewrite` plugin on a rule, written from its documentation
//! (apache/apisix `docs/en/latest/plugins/response-rewrite.md`) and checked against its
//! source (`apisix/plugins/response-rewrite.lua`, `apisix/core/utils.lua`'s
//! `resolve_var`) where the page is silent:
//!
//! - `vars` (lua-resty-expr) are evaluated in the header filter, so they see `status`
//!   and `upstream_addr`; when they fail, nothing is rewritten.
//! - then `status_code`, then `headers`: `add` (`"Name: value"` items, appended), `set`
//!   (replaces every header of the name) and `remove`, run in that order by the source
//!   (the page says add, remove, set). The legacy flat map `{"Name": "value"}` is `set`.
//! - header values interpolate `$var` and `${var}` (and `${var ?? default}`); an
//!   unknown variable is empty, and an empty value removes the header (nginx's
//!   `ngx.header[name] = ""`) or adds nothing.
//! - `body` (`body_base64`) replaces the body.
//!
//! A config APISIX's schema check refuses fails the rule, and the route is left out as
//! the Admin API would refuse it. `filters` are not simulated and refused.

use base64::Engine;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use regex::Regex;
use serde_json::{Map, Value};

use super::exprs::Vars;

/// The plugin's name in `spec.http[].plugins[]`.
pub const NAME: &str = "response-rewrite";

/// One rule's `response-rewrite` config, checked.
#[derive(Debug, Clone, Default)]
pub struct ResponseRewrite {
    vars: Option<Vars>,
    status_code: Option<StatusCode>,
    /// `None` too when an `add` item passed the schema but not the plugin's own parse:
    /// APISIX then logs "failed to create header operation" and applies no header.
    headers: Option<Headers>,
    body: Option<Bytes>,
}

#[derive(Debug, Clone, Default)]
struct Headers {
    add: Vec<(HeaderName, String)>,
    set: Vec<(HeaderName, String)>,
    remove: Vec<HeaderName>,
}

/// A header name nginx would send, as the sim can.
fn name(raw: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(raw.as_bytes()).map_err(|_| format!("{raw:?} is not a header name the sim can send"))
}

/// A header value of `set` or the legacy map: a string or a number (`tostring`).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `headers`: `add`, `set` and `remove` when one of them is a JSON array or object
/// (a Lua table), otherwise the legacy flat map.
fn headers(h: &Map<String, Value>) -> Result<Option<Headers>, String> {
    let is_new = ["add", "set", "remove"].iter().any(|k| h.get(*k).is_some_and(|v| v.is_array() || v.is_object()));
    let mut out = Headers::default();
    if !is_new {
        for (field, value) in h {
            if field.is_empty() {
                return Err("invalid field length in header".into());
            }
            let value = scalar(value).ok_or("invalid type as header value")?;
            out.set.push((name(field)?, value));
        }
        return Ok(Some(out));
    }
    let list = |key: &str, pattern: &str| -> Result<Vec<String>, String> {
        let Some(v) = h.get(key) else { return Ok(Vec::new()) };
        let items = v.as_array().filter(|a| !a.is_empty()).ok_or(format!("headers.{key}: a non-empty array"))?;
        let re = Regex::new(pattern).map_err(|e| e.to_string())?;
        items
            .iter()
            .map(|i| match i.as_str() {
                Some(s) if re.is_match(s) => Ok(s.to_owned()),
                _ => Err(format!("headers.{key}: {i} does not match {pattern:?}")),
            })
            .collect()
    };
    // The schema's pattern ("Set-Cookie: <cookie-name>=<cookie-value>; Max-Age=<number>"):
    // no colon in the value, and no "/" at its end.
    let add = list("add", "^[^:]+:[^:]*[^/]$")?;
    for header in list("remove", "^[^:]+$")? {
        out.remove.push(name(&header)?);
    }
    if let Some(set) = h.get("set") {
        let set = set.as_object().filter(|m| !m.is_empty()).ok_or("headers.set: an object of one header or more")?;
        for (field, value) in set {
            let value = scalar(value).ok_or_else(|| format!("headers.set.{field}: a string or a number"))?;
            out.set.push((name(field)?, value));
        }
    }
    // The plugin's own parse of each `add` item, at the first request.
    let parse = Regex::new(r"^([^:\s]+)\s*:\s*([^:]+)$").map_err(|e| e.to_string())?;
    for item in &add {
        let Some(c) = parse.captures(item) else {
            tracing::warn!(item = %item, "gateway: response-rewrite: failed to create header operation");
            return Ok(None);
        };
        out.add.push((name(&c[1])?, c[2].to_owned()));
    }
    Ok(Some(out))
}

impl ResponseRewrite {
    /// `check_schema`: the config as the ingress controller passes it (`null` is `{}`).
    pub fn compile(config: Option<&Value>) -> Result<Self, String> {
        let fail = |m: String| format!("failed to check the configuration of plugin {NAME} err: {m}");
        let empty = Map::new();
        let conf = match config {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(other) => return Err(fail(format!("expected an object, got {other}"))),
        };
        let mut out = ResponseRewrite::default();
        if conf.contains_key("filters") {
            return Err(fail("filters are not simulated".into()));
        }
        if let Some(code) = conf.get("status_code") {
            let code = code.as_u64().filter(|c| (200..=598).contains(c));
            let code = code.and_then(|c| StatusCode::from_u16(c as u16).ok());
            out.status_code = Some(code.ok_or_else(|| fail("status_code: an integer in [200, 598]".into()))?);
        }
        if let Some(body) = conf.get("body") {
            let body = body.as_str().ok_or_else(|| fail("body: a string".into()))?;
            let base64 = conf.get("body_base64").and_then(Value::as_bool) == Some(true);
            out.body = Some(if base64 {
                let decoded = base64::engine::general_purpose::STANDARD.decode(body).ok().filter(|b| !b.is_empty());
                Bytes::from(decoded.ok_or_else(|| fail("invalid base64 content".into()))?)
            } else {
                Bytes::from(body.to_owned())
            });
        } else if conf.get("body_base64").and_then(Value::as_bool) == Some(true) {
            return Err(fail("invalid base64 content".into()));
        }
        if let Some(h) = conf.get("headers") {
            let h = h.as_object().ok_or_else(|| fail("headers: an object".into()))?;
            out.headers = headers(h).map_err(fail)?;
        }
        if let Some(vars) = conf.get("vars") {
            let vars = Vars::compile(vars).map_err(|e| {
                let e = e.strip_prefix("vars: ").unwrap_or(&e);
                fail(format!("failed to validate the 'vars' expression: {e}"))
            })?;
            out.vars = Some(vars);
        }
        Ok(out)
    }

    /// The header and body filters on `response`; `var` reads the request's variables
    /// and the upstream's (`upstream_addr`); `status` is the response's own.
    pub fn apply(&self, response: &mut Response<Full<Bytes>>, var: &dyn Fn(&str) -> Option<String>) {
        let with_status = |status: StatusCode| {
            move |name: &str| if name == "status" { Some(status.as_u16().to_string()) } else { var(name) }
        };
        if let Some(vars) = &self.vars
            && !vars.eval(&with_status(response.status()))
        {
            return;
        }
        if let Some(code) = self.status_code {
            *response.status_mut() = code;
        }
        if self.body.is_some() {
            // `core.response.clear_header_as_body_modified`.
            for h in [CONTENT_LENGTH, ETAG, LAST_MODIFIED] {
                response.headers_mut().remove(h);
            }
        }
        if let Some(ops) = &self.headers {
            let var = with_status(response.status());
            let value = |template: &str| {
                let v = resolve_var(template, &var);
                (!v.is_empty()).then(|| HeaderValue::from_bytes(v.as_bytes()).ok()).flatten()
            };
            let headers = response.headers_mut();
            for (name, template) in &ops.add {
                if let Some(v) = value(template) {
                    headers.append(name.clone(), v);
                }
            }
            for (name, template) in &ops.set {
                match value(template) {
                    Some(v) => headers.insert(name.clone(), v),
                    None => headers.remove(name),
                };
            }
            for name in &ops.remove {
                headers.remove(name);
            }
        }
        if let Some(body) = &self.body {
            *response.body_mut() = Full::new(body.clone());
        }
    }
}

/// `core.utils.resolve_var`: `$name` (`[A-Za-z0-9_.]+`) and `${ name }` (with
/// `${name ?? default}`) replaced by the variable's value, or by nothing when it is
/// unknown; a `$` after a backslash is left as written, backslash included.
pub fn resolve_var(template: &str, var: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || (i > 0 && bytes[i - 1] == b'\\') {
            i += 1;
            continue;
        }
        let rest = &template[i + 1..];
        let (variable, len) = match rest.strip_prefix('{').and_then(|r| r.find('}').map(|end| (&r[..end], end))) {
            Some((inner, end)) if !inner.is_empty() => (inner.trim(), end + 2),
            _ => {
                let end =
                    rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        if len == 0 {
            i += 1;
            continue;
        }
        out.push_str(&template[copied..i]);
        let mut segments = variable.split("??").map(str::trim);
        let (name, default) = (segments.next().unwrap_or_default(), segments.next());
        out.push_str(&var(name).or_else(|| default.map(str::to_owned)).unwrap_or_default());
        i += 1 + len;
        copied = i;
    }
    out.push_str(&template[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "upstream_addr" => Some("10.96.0.12:80".into()),
            "host" => Some("app.example.com".into()),
            "arg_x" => Some("1".into()),
            "a.b" => Some("dotted".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_interpolate_as_resolve_var() {
        let cases = [
            (
                "canary-affinity=$upstream_addr; Max-Age=86400; Path=/",
                "canary-affinity=10.96.0.12:80; Max-Age=86400; Path=/",
            ),
            ("${upstream_addr}x", "10.96.0.12:80x"),
            ("${ host }", "app.example.com"),
            ("$host$arg_x", "app.example.com1"),
            ("[$nope]", "[]"),
            ("[${nope}]", "[]"),
            ("${nope ?? fallback}", "fallback"),
            ("${host??fallback}", "app.example.com"),
            ("$a.b", "dotted"),
            (r"\$host", r"\$host"),
            ("cost: $ 5 ${", "cost: $ 5 ${"),
            ("${}", "${}"),
            ("$", "$"),
            ("plain", "plain"),
        ];
        for (template, want) in cases {
            assert_eq!(resolve_var(template, &env), want, "{template}");
        }
    }

    fn response() -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
        r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        r.headers_mut().append("set-cookie", HeaderValue::from_static("a=1"));
        r.headers_mut().append("set-cookie", HeaderValue::from_static("b=2"));
        r
    }

    fn rewrite(config: Value) -> Response<Full<Bytes>> {
        let mut r = response();
        ResponseRewrite::compile(Some(&config)).unwrap().apply(&mut r, &env);
        r
    }

    fn all(r: &Response<Full<Bytes>>, name: &str) -> Vec<String> {
        r.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn add_appends_set_replaces_remove_removes() {
        let r = rewrite(json!({"headers": {
            "add": ["Set-Cookie: c=$arg_x; Max-Age=60", "X-Empty: $nope"],
            "set": {"X-Server": "$host", "X-Id": 3, "X-Content-Type-Options": "${nope}"},
            "remove": ["X-Nothing"]}}));
        assert_eq!(all(&r, "set-cookie"), ["a=1", "b=2", "c=1; Max-Age=60"]);
        assert_eq!(all(&r, "x-server"), ["app.example.com"]);
        assert_eq!(all(&r, "x-id"), ["3"]);
        assert!(all(&r, "x-empty").is_empty(), "an empty added value is not sent");
        assert!(all(&r, "x-content-type-options").is_empty(), "an empty set value removes");

        // add, then set (every header of the name), then remove.
        let r = rewrite(json!({"headers": {"add": ["X-A: 1"], "set": {"Set-Cookie": "k=$upstream_addr"},
            "remove": ["X-Content-Type-Options", "X-A"]}}));
        assert_eq!(all(&r, "set-cookie"), ["k=10.96.0.12:80"]);
        assert!(all(&r, "x-content-type-options").is_empty() && all(&r, "x-a").is_empty());
    }

    #[test]
    fn the_legacy_map_sets_and_an_empty_value_removes() {
        let r = rewrite(json!({"headers": {"X-Legacy": "${host}", "X-Content-Type-Options": "", "Set-Cookie": "z=9"}}));
        assert_eq!(all(&r, "x-legacy"), ["app.example.com"]);
        assert!(all(&r, "x-content-type-options").is_empty());
        assert_eq!(all(&r, "set-cookie"), ["z=9"]);
        // Not the new format: "add" here is a header named add.
        assert_eq!(all(&rewrite(json!({"headers": {"add": "1"}})), "add"), ["1"]);
        assert_eq!(all(&rewrite(json!({"headers": {}})), "set-cookie"), ["a=1", "b=2"]);
    }

    #[test]
    fn vars_status_code_and_body() {
        let conf = |vars: Value| json!({"vars": vars, "status_code": 203, "body": "new", "headers": {"set": {"X-S": "$status"}}});
        let r = rewrite(conf(json!([["status", "==", 200], ["upstream_addr", "~~", "^10\\."]])));
        assert_eq!(r.status(), 203);
        assert_eq!(all(&r, "x-s"), ["203"], "headers see the new status");
        let r = rewrite(conf(json!([["status", ">=", 500]])));
        assert_eq!((r.status(), all(&r, "x-s").len()), (StatusCode::OK, 0), "vars fail: nothing rewritten");
        let r = rewrite(json!({"body": "SGVsbG8=", "body_base64": true}));
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(r.into_body()));
        assert_eq!(body.unwrap().unwrap().to_bytes(), "Hello");
    }

    #[test]
    fn an_add_item_the_plugin_cannot_parse_drops_every_header() {
        let r = rewrite(json!({"status_code": 201, "headers": {"add": ["X A: 1"], "set": {"X-B": "2"}}}));
        assert_eq!((r.status(), all(&r, "x-b").len()), (StatusCode::CREATED, 0));
    }

    #[test]
    fn the_schema_refuses() {
        let bad = |config: Value| ResponseRewrite::compile(Some(&config)).unwrap_err();
        let cases = [
            (json!({"headers": {"add": ["Set-Cookie: a=b; Path=/"]}}), "does not match"),
            (json!({"headers": {"add": ["X-Url: http://x"]}}), "does not match"),
            (json!({"headers": {"add": []}}), "non-empty array"),
            (json!({"headers": {"set": {}}}), "one header or more"),
            (json!({"headers": {"set": {"X": true}}}), "a string or a number"),
            (json!({"headers": {"remove": ["X: y"]}}), "does not match"),
            (json!({"headers": {"X": {"a": 1}}}), "invalid type as header value"),
            (json!({"headers": {"": "x"}}), "invalid field length"),
            (json!({"headers": {"Bad Name": "x"}}), "not a header name"),
            (json!({"status_code": 100}), "[200, 598]"),
            (json!({"body": "%%%", "body_base64": true}), "invalid base64 content"),
            (json!({"filters": [{"regex": "a", "replace": "b"}]}), "not simulated"),
            (json!({"vars": [["status", "=", 200]]}), "failed to validate the 'vars' expression: invalid operator '='"),
            (json!("x"), "an object"),
        ];
        for (config, want) in cases {
            let e = bad(config.clone());
            assert!(e.starts_with("failed to check the configuration of plugin response-rewrite err: "), "{e}");
            assert!(e.contains(want), "{config}: {e}");
        }
        assert!(ResponseRewrite::compile(None).is_ok());
    }
}
