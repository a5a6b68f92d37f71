//! Durations written the way Kubernetes users write them (Go's `time.ParseDuration`):
//! `500ms`, `10s`, `1m`, `1m30s`, `1.5h`.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a duration such as 500ms, 10s, 1m or 1h30m")]
pub struct ParseDurationError;

/// Parses a Go duration string. Signs are rejected: no setting of ours is negative.
/// Exact: integers throughout, fractions truncated to the nanosecond, as Go does.
pub fn parse(s: &str) -> Result<Duration, ParseDurationError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(ParseDurationError);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or(ParseDurationError)?;
        let (number, tail) = rest.split_at(digits);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(ParseDurationError);
        }
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(ParseDurationError),
        };
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| ParseDurationError)? };
        // Digits past the 25th are below a nanosecond of any unit.
        let fraction = &fraction[..fraction.len().min(25)];
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| ParseDurationError)? };
        total = whole
            .checked_mul(nanos_per_unit)
            .and_then(|n| n.checked_add(fraction * nanos_per_unit / scale))
            .and_then(|n| n.checked_add(total))
            .ok_or(ParseDurationError)?;
        rest = tail;
    }
    // Past ~584 years a Duration of nanoseconds overflows; anything that large is a typo.
    let total = u64::try_from(total).map_err(|_| ParseDurationError)?;
    Ok(Duration::from_nanos(total))
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
        match d.subsec_nanos() {
            0 if s > 0 => write!(f, "{s}s"),
            0 => Ok(()),
            nanos => {
                let frac = format!("{nanos:09}");
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

    /// Integers throughout: no float rounding, fractions truncated to the nanosecond.
    #[test]
    fn parses_exactly() {
        assert_eq!(parse("91m18336323029ns"), Ok(Duration::new(5478, 336_323_029)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1.0000000009s"), Ok(Duration::new(1, 0)));
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(Duration::from_nanos(i64::MAX as u64)));
        assert_eq!(parse("18446744073709551615ns"), Ok(Duration::from_nanos(u64::MAX)));
        assert_eq!(parse("18446744073709551616ns"), Err(ParseDurationError));
        assert_eq!(parse("99999999999999999999999999999999999999999h"), Err(ParseDurationError));
    }

    #[test]
    fn display_round_trips() {
        for s in ["500ms", "10s", "1m", "1m30s", "2h", "1h1m1s", "1.5s", "1.25s", "250us", "1h31m18.336323029s"] {
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
