//! Durations written the way Kubernetes users write them (Go's `time.ParseDuration`):
//! `500ms`, `10s`, `1m`, `1m30s`, `1.5h`.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a duration such as 500ms, 10s, 1m or 1h30m")]
pub struct ParseDurationError;

/// Parses a Go duration string. Signs are rejected: no setting of ours is negative.
pub fn parse(s: &str) -> Result<Duration, ParseDurationError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(ParseDurationError);
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or(ParseDurationError)?;
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(ParseDurationError);
        }
        let number: f64 = number.parse().map_err(|_| ParseDurationError)?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(ParseDurationError),
        };
        total += number * nanos_per_unit;
        rest = tail;
    }
    // Past ~292 years Go overflows too; anything that large is a typo.
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(ParseDurationError);
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Formats like Go's `Duration.String()` for whole units: `1m30s`, `500ms`, `2h0m0s`
/// becomes `2h`. Round trips through [`parse`].
pub struct Display(pub Duration);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.subsec_nanos() != 0 && d.as_secs() == 0 {
            let nanos = d.subsec_nanos();
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}us", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        match d.subsec_millis() {
            0 if s > 0 => write!(f, "{s}s"),
            0 => Ok(()),
            ms => {
                let frac = format!("{ms:03}");
                write!(f, "{s}.{}s", frac.trim_end_matches('0'))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ok = [
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("2h45m", Duration::from_secs(9900)),
            ("250us", Duration::from_micros(250)),
            ("1.5s", Duration::from_millis(1500)),
        ];
        for (s, want) in ok {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for s in ["", "10", "s", "10x", "1m 30s", "-1s", "+1s", "1..5s", ".s", "1d", "10S", "ten seconds"] {
            assert_eq!(parse(s), Err(ParseDurationError), "{s:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["500ms", "10s", "1m", "1m30s", "2h", "1h1m1s", "1.5s", "1.25s", "250us"] {
            let d = parse(s).unwrap();
            assert_eq!(Display(d).to_string(), s);
            assert_eq!(parse(&Display(d).to_string()), Ok(d));
        }
    }
}

#[cfg(test)]
mod kube_duration {
    /// Why we keep our parser rather than `kube::core::Duration`: kube's accepts an
    /// empty string as zero and signs, and panics on values past `Duration::MAX`
    /// (`Duration::mul_f64` in kube-core 5's `FromStr`). A webhook must answer such
    /// input with a field error, never a panic.
    #[test]
    fn kube_core_duration_does_not_fit_admission() {
        assert_eq!("".parse::<kube::core::Duration>().map(|d| d.is_negative()).ok(), Some(false));
        assert!("-1s".parse::<kube::core::Duration>().is_ok_and(|d| d.is_negative()));
        for s in ["", "-1s", "+1s", "99999999999999999999h"] {
            assert!(super::parse(s).is_err(), "{s:?}");
        }
    }
}
