//! `hey` command lines, parsed as hey's Go flag set reads them, into a bounded plan.
//! Unknown flags, unsupported features and limits beyond the sim's are refused with a
//! message that names the flag.

use std::time::Duration;

/// Workers one command may start.
pub const MAX_WORKERS: u64 = 64;
/// The longest a command may run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Requests per second of a worker without `-q` (hey has no limit; the sim shares 2 cores).
pub const UNTHROTTLED_QPS: f64 = 200.0;

/// What one command asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `-z`: run for this long (then `-n` is ignored).
    pub duration: Option<Duration>,
    /// `-n`: total requests.
    pub requests: u64,
    /// `-c`: concurrent workers.
    pub workers: u64,
    /// `-q`: requests per second per worker.
    pub qps: Option<f64>,
    /// `-m`.
    pub method: String,
    /// `-host`, else the URL's authority.
    pub host: String,
    /// `-H`, `-A`, `-T`, `-a`.
    pub headers: Vec<(String, String)>,
    /// `-d`.
    pub body: Option<String>,
    /// `-t`: per request.
    pub timeout: Duration,
    pub keepalive: bool,
    /// The URL's host and port (port 80 unless given).
    pub target_host: String,
    pub target_port: u16,
    pub path_and_query: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeyError {
    #[error("empty command")]
    Empty,
    #[error("only hey commands are supported, not {0:?}")]
    NotHey(String),
    #[error("{0}")]
    Shell(String),
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    Invalid { flag: String, value: String, reason: String },
    #[error("flag -{0} is not supported by the sim's load tester")]
    Unsupported(String),
    #[error("missing URL: usage hey [options...] <url>")]
    NoUrl,
    #[error("unexpected argument {0:?} after the URL")]
    Extra(String),
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    #[error("{0}")]
    Limit(String),
}

/// Splits like a POSIX shell: whitespace, single and double quotes, backslash.
fn words(cmd: &str) -> Result<Vec<String>, HeyError> {
    crate::exec::shell::words(cmd).map_err(HeyError::Shell)
}

/// Go's `time.ParseDuration`: `1m`, `1m30s`, `1.5s`, `500ms`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let (mut rest, mut total) = (s, 0.0_f64);
    if rest.is_empty() || rest.starts_with('-') {
        return Err("want a positive duration such as 30s or 1m".into());
    }
    for _ in 0..s.len() {
        if rest.is_empty() {
            break;
        }
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().map_err(|_| format!("bad number in {s:?}"))?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {s:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        total += number * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

fn invalid(flag: &str, value: &str, reason: impl Into<String>) -> HeyError {
    HeyError::Invalid { flag: flag.into(), value: value.into(), reason: reason.into() }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, HeyError> {
    value.parse().map_err(|_| invalid(flag, value, "not a number"))
}

/// Parses a whole `hey ...` command line.
pub fn parse(cmd: &str) -> Result<Plan, HeyError> {
    let words = words(cmd)?;
    let (program, args) = words.split_first().ok_or(HeyError::Empty)?;
    if program.rsplit('/').next() != Some("hey") {
        return Err(HeyError::NotHey(program.clone()));
    }
    let (mut n, mut c, mut q, mut z, mut t) = (200u64, 50u64, 0.0f64, None, 20u64);
    let (mut method, mut host, mut headers, mut body, mut keepalive) = ("GET".to_owned(), None, Vec::new(), None, true);
    let mut i = 0;
    let url = loop {
        let Some(arg) = args.get(i) else { return Err(HeyError::NoUrl) };
        i += 1;
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|f| !f.is_empty()) else {
            break arg.clone();
        };
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (flag, None),
        };
        match flag {
            "h2" | "disable-compression" | "disable-redirects" => continue,
            "disable-keepalive" => {
                keepalive = false;
                continue;
            }
            "n" | "c" | "q" | "z" | "o" | "m" | "H" | "t" | "A" | "d" | "T" | "a" | "host" | "cpus" => {}
            "D" | "x" => return Err(HeyError::Unsupported(flag.into())),
            other => return Err(HeyError::UnknownFlag(other.into())),
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i - 1).cloned().ok_or_else(|| HeyError::MissingValue(flag.into()))?
            }
        };
        match flag {
            "n" => n = number(flag, &value)?,
            "c" => c = number(flag, &value)?,
            "q" => q = number(flag, &value)?,
            "z" => z = Some(parse_duration(&value).map_err(|e| invalid(flag, &value, e))?),
            "t" => t = number(flag, &value)?,
            "m" => method = value.to_ascii_uppercase(),
            "host" => host = Some(value),
            "d" => body = Some(value),
            "A" => headers.push(("accept".to_owned(), value)),
            "T" => headers.push(("content-type".to_owned(), value)),
            "a" => {
                use base64::Engine as _;
                if !value.contains(':') {
                    return Err(invalid(flag, &value, "want user:password"));
                }
                let token = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
                headers.push(("authorization".to_owned(), format!("Basic {token}")));
            }
            "H" => {
                let (k, v) = value.split_once(':').ok_or_else(|| invalid(flag, &value, "want \"Name: value\""))?;
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            "o" if value != "csv" => return Err(invalid(flag, &value, "the only output type is csv")),
            _ => {}
        }
    };
    if let Some(extra) = args.get(i) {
        return Err(HeyError::Extra(extra.clone()));
    }
    if z.is_none() {
        if n == 0 || c == 0 {
            return Err(HeyError::Limit("-n and -c cannot be smaller than 1".into()));
        }
        if n < c {
            return Err(HeyError::Limit("-n cannot be less than -c".into()));
        }
    } else if c == 0 {
        return Err(HeyError::Limit("-c cannot be smaller than 1".into()));
    }
    if c > MAX_WORKERS {
        return Err(HeyError::Limit(format!("-c {c} exceeds the sim load tester's limit of {MAX_WORKERS} workers")));
    }
    if let Some(z) = z.filter(|z| *z > MAX_DURATION) {
        return Err(HeyError::Limit(format!(
            "-z {}s exceeds the sim load tester's limit of {}s",
            z.as_secs(),
            MAX_DURATION.as_secs()
        )));
    }
    if !q.is_finite() || q < 0.0 {
        return Err(invalid("q", &q.to_string(), "want a rate of 0 or more"));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HeyError::Url(url.clone(), "only http:// URLs are supported by the sim's load tester".into()))?;
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |p| (&rest[..p], &rest[p..]));
    let path_and_query = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    let (target_host, target_port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| HeyError::Url(url.clone(), format!("bad port {p:?}")))?),
        None => (authority, 80),
    };
    if target_host.is_empty() {
        return Err(HeyError::Url(url.clone(), "no host".into()));
    }
    Ok(Plan {
        duration: z.filter(|z| !z.is_zero()),
        requests: n,
        workers: c,
        qps: (q > 0.0).then_some(q),
        method,
        host: host.unwrap_or_else(|| authority.to_owned()),
        headers,
        body,
        timeout: if t == 0 { MAX_DURATION } else { Duration::from_secs(t).min(MAX_DURATION) },
        keepalive,
        target_host: target_host.to_owned(),
        target_port,
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_commands_parse() {
        let p = parse("hey -z 1m -q 10 -c 2 -h2 -host app.example.com http://apisix-gateway.apisix/api/info").unwrap();
        assert_eq!(p.duration, Some(Duration::from_secs(60)));
        assert_eq!((p.qps, p.workers, p.method.as_str()), (Some(10.0), 2, "GET"));
        assert_eq!(
            (p.host.as_str(), p.target_host.as_str(), p.target_port),
            ("app.example.com", "apisix-gateway.apisix", 80)
        );
        assert_eq!(p.path_and_query, "/api/info");
        let p = parse("hey -z 1m -c 5 -q 5 -host app.example.com http://apisix-gateway.apisix/status/500").unwrap();
        assert_eq!((p.workers, p.path_and_query.as_str()), (5, "/status/500"));
        let p = parse("/usr/local/bin/hey -n 10 -c 2 -m post -d '{\"a\": 1}' -H 'X-A: b c' http://h:8080?x=1").unwrap();
        assert_eq!((p.requests, p.duration, p.method.as_str()), (10, None, "POST"));
        assert_eq!((p.host.as_str(), p.target_port, p.path_and_query.as_str()), ("h:8080", 8080, "/?x=1"));
        assert_eq!(p.body.as_deref(), Some("{\"a\": 1}"));
        assert_eq!(p.headers, [("x-a".to_owned(), "b c".to_owned())]);
    }

    #[test]
    fn durations_follow_go() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = |cmd: &str| parse(cmd).unwrap_err().to_string();
        assert_eq!(err("curl http://x/"), "only hey commands are supported, not \"curl\"");
        assert_eq!(err("hey -z 1m"), "missing URL: usage hey [options...] <url>");
        assert_eq!(err("hey -y 1 http://x/"), "flag provided but not defined: -y");
        assert_eq!(
            err("hey -z 1x http://x/"),
            "invalid value \"1x\" for flag -z: unknown unit \"x\" in duration \"1x\""
        );
        assert_eq!(err("hey -c 100 -z 1s http://x/"), "-c 100 exceeds the sim load tester's limit of 64 workers");
        assert_eq!(err("hey -z 11m http://x/"), "-z 660s exceeds the sim load tester's limit of 600s");
        assert_eq!(err("hey -n 1 -c 2 http://x/"), "-n cannot be less than -c");
        assert!(err("hey https://x/").contains("only http://"));
        assert_eq!(err("hey -q"), "flag needs an argument: -q");
        assert_eq!(err("hey 'unterminated"), "syntax error: unterminated quoted string");
        assert_eq!(err("hey http://x/; rm -rf /"), "one command only: no ;, && or ||");
        assert_eq!(err("hey -x proxy:1 http://x/"), "flag -x is not supported by the sim's load tester");
    }
}
