//! Human durations as written in `reconcile.yaml` and on the command line: `500ms`, `20s`, `5m`, `1h`.
//!
//! Kept tiny on purpose: one number and one unit, no compound forms, so that what a reviewer reads
//! in a pull request is exactly what the tool uses.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration parsed from `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HumanDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{input}`: expected a whole number followed by ms, s, m or h (e.g. `500ms`, `20s`, `5m`, `1h`)"
)]
pub(crate) struct DurationError {
    input: String,
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError { input: s.to_owned() };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err());
        }
        let n: u64 = num.parse().map_err(|_| err())?;
        let ms_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(err()),
        };
        let ms = n.checked_mul(ms_per_unit).ok_or_else(err)?;
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

/// A timestamp as people read it: UTC, to the second (`2026-11-30T08:15:02Z`).
pub(crate) fn at_second(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for bad in ["", "s", "20", "1.5s", "-1s", "20 s", "20sec", "1d", "99999999999999999999h"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        for s in ["500ms", "20s", "2m", "1h", "1500ms"] {
            assert_eq!(s.parse::<HumanDuration>().map(|d| d.to_string()), Ok(s.to_owned()));
        }
    }
}
