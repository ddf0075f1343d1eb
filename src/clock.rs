//! Time, from one place: every reading of "now" outside the executor, the ledger's lock and the
//! simulator goes through a [`Clock`], so that a test can fix the time and a function of `core/`
//! takes `now` as a value instead of reading it.
//!
//! # Guarantees
//! - [`SystemClock`] is this machine's clock, read on every call.
//! - [`FixedClock`] returns what it was set to until it is set or advanced again.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

/// Where the time comes from.
pub(crate) trait Clock: Send + Sync + std::fmt::Debug {
    /// The time now.
    fn now(&self) -> Timestamp;
}

/// A clock shared by a session and everything it starts.
pub(crate) type SharedClock = Arc<dyn Clock>;

/// This machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock, shared.
pub(crate) fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is set or advanced (for tests).
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code, reason = "the tests' clock"))]
pub(crate) struct FixedClock(Mutex<Timestamp>);

#[cfg_attr(not(test), allow(dead_code, reason = "the tests' clock"))]
impl FixedClock {
    pub(crate) fn new(at: Timestamp) -> Self {
        FixedClock(Mutex::new(at))
    }

    /// From now on the clock says `at`.
    pub(crate) fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves the clock by `by` (backwards too, as a machine's clock may).
    pub(crate) fn advance(&self, by: SignedDuration) {
        let mut at = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *at = at.saturating_add(by).unwrap_or(*at);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_stands_still_until_moved() {
        let start: Timestamp = "2024-05-01T10:00:00Z".parse().expect("time");
        let clock = FixedClock::new(start);
        assert_eq!(clock.now(), start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_secs(90));
        assert_eq!(clock.now().to_string(), "2024-05-01T10:01:30Z");
        clock.advance(SignedDuration::from_secs(-30));
        assert_eq!(clock.now().to_string(), "2024-05-01T10:01:00Z");
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn the_system_clock_moves_with_the_machine() {
        let before = Timestamp::now();
        let read = system().now();
        assert!(read >= before && read <= Timestamp::now());
    }
}
