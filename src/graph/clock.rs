//! Intune's clock, as seen through the `Date` header of Graph's answers.
//!
//! `refresh` compares the time an action's request reached Intune with the `startDateTime` of the
//! results Intune reports, and how much of Intune's time has passed since. Both must be on
//! Intune's clock: the runner's may be minutes off (a CI container, a laptop after sleep), and a
//! wrong guess there could re-send a reset.
//!
//! Each answer's `Date` (whole seconds, stamped by Graph before the answer left) is a *lower
//! bound* of Intune's clock when the answer arrived here. Adding the time elapsed since on the
//! monotonic clock gives a lower bound for any later instant, immune to the runner's wall clock
//! being changed. [`ServerClock`] keeps the largest such bound.
//!
//! Assumption (documented in the README): the machines that stamp `Date` and those that stamp
//! `startDateTime` keep the same time to within [`TOLERANCE`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// How far apart Graph's front end and Intune's back end may stamp the same instant. Used only
/// in the direction that can miss a reset, never in the one that could send a second.
pub(crate) const TOLERANCE: Duration = Duration::from_secs(2);

/// The best lower bound of Intune's clock learned so far.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    anchor: Mutex<Option<(Timestamp, Instant)>>,
}

impl ServerClock {
    /// An answer stamped `date` arrived at `received`.
    pub(crate) fn observe(&self, date: Timestamp, received: Instant) {
        let mut a = self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let better = match *a {
            None => true,
            Some(_) => Self::estimate(*a, received).is_none_or(|old| date > old),
        };
        if better {
            *a = Some((date, received));
        }
    }

    /// The earliest Intune's clock can read at `at` (an instant after some answer arrived).
    pub(crate) fn lower_bound(&self, at: Instant) -> Option<Timestamp> {
        Self::estimate(*self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner), at)
    }

    fn estimate(anchor: Option<(Timestamp, Instant)>, at: Instant) -> Option<Timestamp> {
        let (date, received) = anchor?;
        let elapsed = jiff::SignedDuration::try_from(at.saturating_duration_since(received)).ok()?;
        date.checked_add(elapsed).ok()
    }
}

/// Parses an HTTP date (`Date`, `Retry-After`).
pub(crate) fn http_date(value: &str) -> Option<Timestamp> {
    Some(jiff::fmt::rfc2822::parse(value.trim()).ok()?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_largest_lower_bound_and_moves_with_the_monotonic_clock() {
        let c = ServerClock::default();
        let t0 = Instant::now();
        assert_eq!(c.lower_bound(t0), None);
        let d: Timestamp = "2026-11-30T10:00:00Z".parse().expect("ts");
        c.observe(d, t0);
        assert_eq!(c.lower_bound(t0 + Duration::from_secs(5)), Some(d + jiff::SignedDuration::from_secs(5)));
        // An older, lower stamp seen later does not lower the bound.
        c.observe(d, t0 + Duration::from_secs(3));
        assert_eq!(c.lower_bound(t0 + Duration::from_secs(5)), Some(d + jiff::SignedDuration::from_secs(5)));
        // A later stamp that says more does.
        c.observe(d + jiff::SignedDuration::from_secs(4), t0 + Duration::from_secs(3));
        assert_eq!(c.lower_bound(t0 + Duration::from_secs(5)), Some(d + jiff::SignedDuration::from_secs(6)));
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(http_date("Mon, 30 Nov 2026 10:00:00 GMT"), Some("2026-11-30T10:00:00Z".parse().expect("ts")));
        assert_eq!(http_date("soon"), None);
    }
}
