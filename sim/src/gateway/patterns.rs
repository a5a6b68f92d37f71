//! Host and path patterns of APISIX routes, read as lua-resty-radixtree reads them:
//! `*.example.com` matches by suffix; `/api/*` is a prefix; `/users/:id` a segment pattern.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct Host {
    /// `*.example.com` is kept as the suffix `.example.com`.
    wildcard: bool,
    host: String,
}

impl Host {
    pub fn parse(h: &str) -> Self {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(suffix) => Host { wildcard: true, host: suffix.to_owned() },
            None => Host { wildcard: false, host: h },
        }
    }

    /// The `matched_host` label when `host` (lower case, no port) matches.
    pub fn matches(&self, host: &str) -> Option<String> {
        if self.wildcard {
            host.ends_with(&self.host).then(|| format!("*{}", self.host))
        } else {
            (self.host == host).then(|| host.to_owned())
        }
    }
}

#[derive(Debug, Clone)]
pub struct PathRule {
    /// As written: the `matched_uri` label.
    pub org: String,
    /// Exact path, or the part before `*` / `:`.
    pub path: String,
    pub exact: bool,
    /// For `/users/:id/*rest` style paths: the whole-path pattern.
    pub param: Option<Regex>,
}

impl PathRule {
    pub fn parse(org: &str) -> Result<Self, String> {
        let cut = org.find(':').or_else(|| org.find('*'));
        let Some(pos) = cut else {
            return Ok(Self { org: org.into(), path: org.into(), exact: true, param: None });
        };
        let param = if org[pos..].contains(':') || pos + 1 != org.len() { Some(param_regex(org)?) } else { None };
        Ok(Self { org: org.into(), path: org[..pos].into(), exact: false, param })
    }
}

/// radixtree's `fetch_pat`: `:name` is one segment, `*name` the rest.
fn param_regex(org: &str) -> Result<Regex, String> {
    let parts: Vec<String> = org
        .split('/')
        .map(|seg| match seg.as_bytes().first() {
            Some(b':') => "([^/]+)".to_owned(),
            Some(b'*') => "(.*)".to_owned(),
            _ => regex::escape(seg),
        })
        .collect();
    Regex::new(&format!("^{}$", parts.join("/"))).map_err(|e| format!("path {org:?}: {e}"))
}
