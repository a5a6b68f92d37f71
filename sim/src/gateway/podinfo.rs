//! What a podinfo pod answers, decided from the Pod object alone: `/` and `/api/info`,
//! `/version`, `/status/{code}`, `/delay/{seconds}`, `/healthz`, `/readyz`; and the
//! faults the sim injects from the container env (`SIM_ERROR_RATE`, `SIM_LATENCY_MS`).

use std::time::Duration;

use serde_json::{Value, json};

/// Env var: percent (0..100) of requests answered 500.
pub const ERROR_RATE_ENV: &str = "SIM_ERROR_RATE";
/// Env var: milliseconds added to every answer.
pub const LATENCY_ENV: &str = "SIM_LATENCY_MS";
/// The longest `/delay/{seconds}` honoured.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// The podinfo container's defaults (podinfo 6).
const COLOR: &str = "#34577c";
const LOGO: &str = "https://raw.githubusercontent.com/stefanprodan/podinfo/gh-pages/cuddle_clap.gif";

/// A pod's injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Percent of requests answered 500.
    pub error_rate: f64,
    pub latency: Duration,
}

/// A pod's answer: status, JSON body and how long it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
}

/// The env of the pod's containers (first container wins).
pub fn env<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    pod.pointer("/spec/containers")?.as_array()?.iter().find_map(|c| {
        c.get("env")?.as_array()?.iter().find(|e| e["name"] == name).and_then(|e| e.get("value")?.as_str())
    })
}

pub fn faults(pod: &Value) -> Faults {
    let number = |name| env(pod, name).and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite());
    Faults {
        error_rate: number(ERROR_RATE_ENV).unwrap_or(0.0).clamp(0.0, 100.0),
        latency: Duration::from_secs_f64(number(LATENCY_ENV).unwrap_or(0.0).clamp(0.0, 600_000.0) / 1000.0),
    }
}

/// The tag of an image reference: `stefanprodan/podinfo:6.0.1` -> `6.0.1`.
pub fn version(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map_or("latest", |(_, tag)| tag)
}

/// `/api/info`, from the pod's name, first container's image and env.
pub fn info(pod: &Value) -> Value {
    let image = pod.pointer("/spec/containers/0/image").and_then(Value::as_str).unwrap_or_default();
    let version = version(image);
    let hostname = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let revision = pod.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str).unwrap_or_default();
    let message =
        env(pod, "PODINFO_UI_MESSAGE").map_or_else(|| format!("greetings from podinfo v{version}"), str::to_owned);
    json!({
        "hostname": hostname,
        "version": version,
        "revision": revision,
        "color": env(pod, "PODINFO_UI_COLOR").unwrap_or(COLOR),
        "logo": LOGO,
        "message": message,
        "goos": "linux",
        "goarch": "amd64",
        "runtime": "go1.16.5",
        "num_goroutine": "8",
        "num_cpu": "2",
    })
}

fn status(code: u16, body: Value) -> Reply {
    Reply { status: code, body, delay: Duration::ZERO }
}

/// The answer to `path`; `fail` is this request's injected error.
pub fn reply(pod: &Value, path: &str, fail: bool) -> Reply {
    let latency = faults(pod).latency;
    let mut reply = if fail {
        status(500, json!({"code": 500, "message": format!("{ERROR_RATE_ENV} injected an error")}))
    } else {
        route(pod, path)
    };
    reply.delay += latency;
    reply
}

fn route(pod: &Value, path: &str) -> Reply {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        [] | ["api", "info"] => status(200, info(pod)),
        ["version"] => {
            let info = info(pod);
            status(200, json!({"commit": info["revision"], "version": info["version"]}))
        }
        ["healthz"] | ["readyz"] => status(200, json!({"status": "OK"})),
        ["status", code] => match code.parse::<u16>() {
            Ok(code @ 100..=599) => status(code, json!({"status": code})),
            _ => status(400, json!({"code": 400, "message": format!("invalid status code {code:?}")})),
        },
        ["delay", seconds] => match seconds.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                Reply { status: 200, body: json!({"delay": s}), delay: Duration::from_secs_f64(s).min(MAX_DELAY) }
            }
            _ => status(400, json!({"code": 400, "message": format!("invalid delay {seconds:?}")})),
        },
        _ => status(404, json!({"code": 404, "message": "404 page not found"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(env: Value) -> Value {
        json!({"metadata": {"name": "podinfo-abc", "labels": {"pod-template-hash": "5d4f"}},
            "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.1", "env": env}]}})
    }

    #[test]
    fn versions_come_from_the_image_tag() {
        assert_eq!(version("stefanprodan/podinfo:6.0.1"), "6.0.1");
        assert_eq!(version("registry:5000/podinfo:6.0.2@sha256:ab"), "6.0.2");
        assert_eq!(version("registry:5000/podinfo"), "latest");
        assert_eq!(version("podinfo"), "latest");
    }

    #[test]
    fn paths_answer_like_podinfo() {
        let p = pod(json!([]));
        let info = reply(&p, "/api/info", false);
        assert_eq!(info.status, 200);
        assert_eq!(info.body["hostname"], "podinfo-abc");
        assert_eq!(info.body["version"], "6.0.1");
        assert_eq!(info.body["revision"], "5d4f");
        assert_eq!(info.body["message"], "greetings from podinfo v6.0.1");
        assert_eq!(reply(&p, "/", false).body, info.body);
        assert_eq!(reply(&p, "/status/503", false).status, 503);
        assert_eq!(reply(&p, "/status/abc", false).status, 400);
        assert_eq!(reply(&p, "/delay/1", false).delay, Duration::from_secs(1));
        assert_eq!(reply(&p, "/delay/9999", false).delay, MAX_DELAY);
        assert_eq!(reply(&p, "/healthz", false).status, 200);
        assert_eq!(reply(&p, "/readyz", false).status, 200);
        assert_eq!(reply(&p, "/nope", false).status, 404);
    }

    #[test]
    fn faults_come_from_the_env() {
        let p = pod(json!([{"name": "SIM_ERROR_RATE", "value": "25"}, {"name": "SIM_LATENCY_MS", "value": "40"}]));
        assert_eq!(faults(&p), Faults { error_rate: 25.0, latency: Duration::from_millis(40) });
        let failed = reply(&p, "/api/info", true);
        assert_eq!((failed.status, failed.delay), (500, Duration::from_millis(40)));
        assert_eq!(faults(&pod(json!([{"name": "SIM_ERROR_RATE", "value": "250"}]))).error_rate, 100.0);
        assert_eq!(faults(&pod(json!([{"name": "SIM_ERROR_RATE", "value": "x"}]))), Faults::default());
    }
}
