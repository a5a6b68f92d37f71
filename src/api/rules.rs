//! The rules every analysis setting obeys, whichever way it was written (a Deployment
//! annotation, a `v1alpha1` or a `v1beta1` Canary): one function per setting, so the
//! same bad value gets the same message everywhere.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::duration;
use super::field::{FieldError, Path, Shown};

pub const MIN_WEIGHT: i64 = 1;
pub const MAX_WEIGHT: i64 = 100;
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const MIN_REQUEST_DURATION: Duration = Duration::from_millis(1);
pub const MAX_REQUEST_DURATION: Duration = Duration::from_secs(600);
pub const MAX_PROGRESS_DEADLINE_SECONDS: i64 = 24 * 3600;
pub const MAX_THRESHOLD: i64 = 1000;
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(600);
/// Retries of one webhook call: with the backoff capped at 2s, ten retries of a hook
/// with the default 10s timeout already take two minutes.
pub const MAX_WEBHOOK_RETRIES: i64 = 10;

/// A traffic weight in percent: 1..=100.
pub fn weight(path: &Path, raw: &Shown, value: Option<i64>) -> Result<u32, FieldError> {
    match value {
        Some(v) if (MIN_WEIGHT..=MAX_WEIGHT).contains(&v) => Ok(v as u32),
        Some(_) => Err(FieldError::invalid(path, raw, "must be between 1 and 100")),
        None => Err(FieldError::invalid(path, raw, "must be an integer between 1 and 100")),
    }
}

/// Failed checks before a rollback: 1..=1000.
pub fn threshold(path: &Path, raw: &Shown, value: Option<i64>) -> Result<u32, FieldError> {
    match value {
        Some(v) if (1..=MAX_THRESHOLD).contains(&v) => Ok(v as u32),
        Some(v) if v < 1 => Err(FieldError::invalid(path, raw, "must be at least 1")),
        Some(_) => Err(FieldError::invalid(path, raw, format!("must be at most {MAX_THRESHOLD}"))),
        None => Err(FieldError::invalid(path, raw, "must be an integer of at least 1")),
    }
}

/// A success rate in percent: 0..=100, fractions allowed.
pub fn success_rate(path: &Path, raw: &Shown, value: Option<f64>) -> Result<f64, FieldError> {
    match value {
        Some(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(FieldError::invalid(path, raw, "must be a number between 0 and 100")),
    }
}

/// `judge: sequential`'s confidence in percent, strictly between 50 and 100: at 50 or
/// less the test would roll back a healthy release as often as not, at 100 never.
pub fn confidence(path: &Path, raw: &Shown, value: Option<f64>) -> Result<f64, FieldError> {
    match value {
        Some(v) if v > 50.0 && v < 100.0 => Ok(v),
        _ => Err(FieldError::invalid(path, raw, "must be a number strictly between 50 and 100, such as 99 or 99.9")),
    }
}

/// How much worse than the stable version a canary may be (`maxDelta`): at least 0; in
/// percentage points for a success rate, so at most 100 there.
pub fn max_delta(path: &Path, value: f64, percent: bool) -> Result<f64, FieldError> {
    let raw = Shown::bare(value);
    if percent && !(0.0..=100.0).contains(&value) {
        Err(FieldError::invalid(path, raw, "must be a number between 0 and 100"))
    } else if !(value >= 0.0 && value.is_finite()) {
        Err(FieldError::invalid(path, raw, "must be at least 0"))
    } else {
        Ok(value)
    }
}

/// Requests the canary must serve before a metric is judged: at least 0 (0 = off).
pub fn min_requests(path: &Path, value: i64) -> Result<u64, FieldError> {
    u64::try_from(value)
        .map_err(|_| FieldError::invalid(path, Shown::bare(value), "must be at least 0 (0 turns it off)"))
}

/// Seconds to wait for the canary to become ready.
pub fn progress_deadline_seconds(path: &Path, raw: &Shown, value: Option<i64>) -> Result<u32, FieldError> {
    match value {
        Some(v) if (1..=MAX_PROGRESS_DEADLINE_SECONDS).contains(&v) => Ok(v as u32),
        _ => Err(FieldError::invalid(
            path,
            raw,
            format!("must be a whole number of seconds between 1 and {MAX_PROGRESS_DEADLINE_SECONDS}"),
        )),
    }
}

/// The time between two analysis steps.
pub fn interval(path: &Path, raw: &str) -> Result<Duration, FieldError> {
    bounded_duration(path, raw, MIN_INTERVAL, MAX_INTERVAL)
}

/// The P99 request duration a canary may not exceed.
pub fn request_duration(path: &Path, raw: &str) -> Result<Duration, FieldError> {
    bounded_duration(path, raw, MIN_REQUEST_DURATION, MAX_REQUEST_DURATION)
}

/// The P99 bound of the built-in `request-duration` metric, in milliseconds (the
/// v1beta1 form of `maxRequestDuration`): the same bounds and words.
pub fn request_duration_ms(path: &Path, ms: f64) -> Result<f64, FieldError> {
    let (min, max) = (MIN_REQUEST_DURATION.as_secs_f64() * 1e3, MAX_REQUEST_DURATION.as_secs_f64() * 1e3);
    if (min..=max).contains(&ms) {
        Ok(ms)
    } else {
        let (lo, hi) = (duration::Display(MIN_REQUEST_DURATION), duration::Display(MAX_REQUEST_DURATION));
        Err(FieldError::invalid(path, Shown::bare(ms), format!("must be between {lo} and {hi}")))
    }
}

/// How long a webhook call may take.
pub fn webhook_timeout(path: &Path, raw: &str) -> Result<Duration, FieldError> {
    bounded_duration(path, raw, MIN_INTERVAL, MAX_WEBHOOK_TIMEOUT)
}

/// Attempts after the first of a failing webhook call: 0..=10.
pub fn webhook_retries(path: &Path, value: i64) -> Result<u32, FieldError> {
    match u32::try_from(value) {
        Ok(n) if value <= MAX_WEBHOOK_RETRIES => Ok(n),
        _ => Err(FieldError::invalid(path, Shown::bare(value), format!("must be between 0 and {MAX_WEBHOOK_RETRIES}"))),
    }
}

/// A custom HTTP header, checked as the client will send it. The value is never echoed:
/// a header may carry a credential.
pub fn http_header(path: &Path, name: &str, value: &str) -> Result<(HeaderName, HeaderValue), FieldError> {
    let key = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| FieldError::invalid(path, name, "must be a valid HTTP header name"))?;
    let value = HeaderValue::from_str(value).map_err(|_| {
        FieldError::invalid(
            path,
            Shown::bare("(hidden)"),
            "must be a valid HTTP header value: visible ASCII, no line breaks",
        )
    })?;
    Ok((key, value))
}

/// A TCP port: 1..=65535.
pub fn port(path: &Path, value: i64) -> Result<u16, FieldError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| FieldError::invalid(path, Shown::bare(value), "must be between 1 and 65535, inclusive"))
}

/// An absolute `http://` or `https://` URL with a host.
pub fn http_url(path: &Path, raw: &str) -> Result<http::Uri, FieldError> {
    let invalid = || FieldError::invalid(path, raw, "must be an absolute http or https URL");
    let uri: http::Uri = raw.parse().map_err(|_| invalid())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if scheme_ok && host_ok { Ok(uri) } else { Err(invalid()) }
}

fn bounded_duration(path: &Path, raw: &str, min: Duration, max: Duration) -> Result<Duration, FieldError> {
    let d = duration::parse(raw).map_err(|e| FieldError::invalid(path, raw, e.to_string()))?;
    if d < min || d > max {
        let (min, max) = (duration::Display(min), duration::Display(max));
        return Err(FieldError::invalid(path, raw, format!("must be between {min} and {max}")));
    }
    Ok(d)
}

/// Intervals this short leave Prometheus few samples per step (it scrapes every 10-30s).
pub fn interval_warning(d: Duration) -> Option<String> {
    (d < Duration::from_secs(10))
        .then(|| format!("interval {} is under 10s: metrics may have too few samples per step", duration::Display(d)))
}

/// A threshold of 1 rolls back on the first failed check, even a transient one.
pub fn threshold_warning(t: u32) -> Option<String> {
    (t == 1).then(|| "threshold 1 rolls back on the first failed check, even a transient one".to_owned())
}

/// Explicit weights, each 1..=100 and strictly increasing.
pub fn step_weights(path: &Path, raw: &Shown, values: &[Option<i64>]) -> Result<Vec<u32>, FieldError> {
    if values.is_empty() {
        return Err(FieldError::invalid(path, raw, "must list at least one weight"));
    }
    let mut weights = Vec::with_capacity(values.len());
    for v in values {
        match v {
            Some(v) if (MIN_WEIGHT..=MAX_WEIGHT).contains(v) => weights.push(*v as u32),
            _ => {
                return Err(FieldError::invalid(path, raw, "each weight must be an integer between 1 and 100"));
            }
        }
    }
    if weights.windows(2).any(|w| w[0] >= w[1]) {
        return Err(FieldError::invalid(path, raw, "weights must be strictly increasing"));
    }
    Ok(weights)
}

/// A Kubernetes object name (RFC 1123 subdomain), with apimachinery's message.
pub fn object_name(path: &Path, name: &str) -> Result<(), FieldError> {
    const DETAIL: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
        characters, '-' or '.', and must start and end with an alphanumeric character";
    if name.is_empty() {
        return Err(FieldError::required(path, "a name is required"));
    }
    if name.len() > 253 {
        return Err(FieldError::invalid(path, name, "must be no more than 253 characters"));
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = name.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || c == b'-')
    });
    if ok { Ok(()) } else { Err(FieldError::invalid(path, name, DETAIL)) }
}

/// A Service port name: a DNS-1123 label (apimachinery's words).
pub fn port_name(path: &Path, name: &str) -> Result<(), FieldError> {
    const DETAIL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
        and must start and end with an alphanumeric character";
    let b = name.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.len() > 63 {
        return Err(FieldError::invalid(path, name, "must be no more than 63 characters"));
    }
    let ok = !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || c == b'-');
    if ok { Ok(()) } else { Err(FieldError::invalid(path, name, DETAIL)) }
}

/// A container port named in a Service's `targetPort`: an IANA service name, as kube
/// checks it (at most 15 characters, lowercase letters, digits and single inner '-',
/// at least one letter).
pub fn container_port_name(path: &Path, name: &str) -> Result<(), FieldError> {
    let b = name.as_bytes();
    let detail = if b.is_empty() || b.len() > 15 {
        Some("must be no more than 15 characters")
    } else if !b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    } else if name.contains("--") {
        Some("must not contain consecutive hyphens")
    } else if b[0] == b'-' || b[b.len() - 1] == b'-' {
        Some("must not begin or end with a hyphen")
    } else if !b.iter().any(u8::is_ascii_lowercase) {
        Some("must contain at least one letter (a-z)")
    } else {
        None
    };
    match detail {
        Some(d) => Err(FieldError::invalid(path, name, d)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Path {
        Path::new("x")
    }

    #[test]
    fn port_names_as_kube_checks_them() {
        assert_eq!(port_name(&p(), "http-metrics"), Ok(()));
        assert!(port_name(&p(), "HTTP").unwrap_err().to_string().contains("RFC 1123 label"));
        assert_eq!(container_port_name(&p(), "http"), Ok(()));
        let e = container_port_name(&p(), "a-very-long-port-name").unwrap_err();
        assert_eq!(e.to_string(), "x: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters");
        assert!(container_port_name(&p(), "9898").unwrap_err().to_string().contains("at least one letter"));
        assert!(container_port_name(&p(), "a--b").unwrap_err().to_string().contains("consecutive"));
    }

    #[test]
    fn weights() {
        assert_eq!(weight(&p(), &Shown::from("1"), Some(1)), Ok(1));
        assert_eq!(weight(&p(), &Shown::from("100"), Some(100)), Ok(100));
        for v in [0, 101, -5] {
            let e = weight(&p(), &Shown::from(v.to_string()), Some(v)).unwrap_err();
            assert_eq!(e.to_string(), format!("x: Invalid value: \"{v}\": must be between 1 and 100"));
        }
        let e = weight(&p(), &Shown::from("ten"), None).unwrap_err();
        assert_eq!(e.to_string(), "x: Invalid value: \"ten\": must be an integer between 1 and 100");
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(interval(&p(), "10s"), Ok(Duration::from_secs(10)));
        assert_eq!(
            interval(&p(), "500ms").unwrap_err().to_string(),
            "x: Invalid value: \"500ms\": must be between 1s and 24h"
        );
        assert_eq!(
            interval(&p(), "25h").unwrap_err().to_string(),
            "x: Invalid value: \"25h\": must be between 1s and 24h"
        );
        assert_eq!(
            request_duration(&p(), "1x").unwrap_err().to_string(),
            "x: Invalid value: \"1x\": must be a duration such as 500ms, 10s, 1m or 1h30m"
        );
        assert_eq!(request_duration(&p(), "500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn step_weight_lists() {
        assert_eq!(step_weights(&p(), &Shown::from("1,5,50"), &[Some(1), Some(5), Some(50)]), Ok(vec![1, 5, 50]));
        let bad = [
            (vec![Some(10), Some(5)], "weights must be strictly increasing"),
            (vec![Some(10), Some(10)], "weights must be strictly increasing"),
            (vec![Some(10), Some(101)], "each weight must be an integer between 1 and 100"),
            (vec![Some(10), None], "each weight must be an integer between 1 and 100"),
            (vec![], "must list at least one weight"),
        ];
        for (values, detail) in bad {
            let e = step_weights(&p(), &Shown::from("raw"), &values).unwrap_err();
            assert_eq!(e.to_string(), format!("x: Invalid value: \"raw\": {detail}"));
        }
    }

    #[test]
    fn names() {
        for ok in ["podinfo", "a", "my-route.v2", "0abc"] {
            assert_eq!(object_name(&p(), ok), Ok(()), "{ok}");
        }
        for bad in ["Podinfo", "-a", "a-", "a..b", "a_b", "a b"] {
            assert!(object_name(&p(), bad).unwrap_err().to_string().contains("RFC 1123"), "{bad}");
        }
        assert_eq!(object_name(&p(), "").unwrap_err().to_string(), "x: Required value: a name is required");
    }

    #[test]
    fn urls_and_ports() {
        assert!(http_url(&p(), "http://flagger-loadtester.test/").is_ok());
        assert!(http_url(&p(), "https://hooks.slack.com/services/x").is_ok());
        for bad in ["flagger-loadtester.test/", "ftp://x/", "http://", "not a url", ""] {
            assert_eq!(
                http_url(&p(), bad).unwrap_err().to_string(),
                format!("x: Invalid value: {bad:?}: must be an absolute http or https URL")
            );
        }
        assert_eq!(port(&p(), 80), Ok(80));
        assert_eq!(
            port(&p(), 0).unwrap_err().to_string(),
            "x: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert!(port(&p(), 70000).is_err());
        assert_eq!(webhook_retries(&p(), 0), Ok(0));
        assert_eq!(webhook_retries(&p(), 10), Ok(10));
        for bad in [11, -1] {
            assert_eq!(
                webhook_retries(&p(), bad).unwrap_err().to_string(),
                format!("x: Invalid value: {bad}: must be between 0 and 10")
            );
        }
    }

    #[test]
    fn rates_and_thresholds() {
        assert_eq!(success_rate(&p(), &Shown::from("99.5"), Some(99.5)), Ok(99.5));
        assert!(success_rate(&p(), &Shown::from("101"), Some(101.0)).is_err());
        assert!(success_rate(&p(), &Shown::from("NaN"), Some(f64::NAN)).is_err());
        assert_eq!(threshold(&p(), &Shown::from("1"), Some(1)), Ok(1));
        assert_eq!(
            threshold(&p(), &Shown::from("0"), Some(0)).unwrap_err().to_string(),
            "x: Invalid value: \"0\": must be at least 1"
        );
        assert_eq!(progress_deadline_seconds(&p(), &Shown::from("60"), Some(60)), Ok(60));
        assert_eq!(max_delta(&p(), 0.0, true), Ok(0.0));
        assert_eq!(max_delta(&p(), 100.0, true), Ok(100.0));
        assert_eq!(max_delta(&p(), 1500.0, false), Ok(1500.0));
        assert_eq!(
            max_delta(&p(), 100.5, true).unwrap_err().to_string(),
            "x: Invalid value: 100.5: must be a number between 0 and 100"
        );
        assert_eq!(max_delta(&p(), -1.0, false).unwrap_err().to_string(), "x: Invalid value: -1: must be at least 0");
        assert_eq!(min_requests(&p(), 0), Ok(0));
        assert_eq!(min_requests(&p(), 20), Ok(20));
        assert_eq!(
            min_requests(&p(), -1).unwrap_err().to_string(),
            "x: Invalid value: -1: must be at least 0 (0 turns it off)"
        );
        assert!(progress_deadline_seconds(&p(), &Shown::from("0"), Some(0)).is_err());
    }
}
