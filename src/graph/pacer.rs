//! Client-side pacing: a long run uses the budget without provoking 429s, and a 429 pauses
//! everyone.
//!
//! Intune counts requests in a window per app and tenant (docs/graph-facts.md, "Throttling"). What
//! it counts is when a request arrives, and the nearest the client can see that is when the request
//! leaves; so the pacer counts **departures**, just before a request's bytes leave (after the
//! executor has recorded its intent, which takes a varying time), not the moment a task was given
//! its turn. It keeps the last `N` departures, `N` being the budget less a margin: a request may
//! leave only once the oldest of them is a whole window old. Then no window, wherever it starts,
//! ever holds more than `N` departures, however late or bunched the tasks come (the argument is in
//! docs/graph-facts.md, "How the pacer stays under it"); the margin absorbs the differences in
//! network delay between requests.
//!
//! Two more rules shape the pace so that it neither bursts nor drifts:
//! - **turns**: a task takes its turn on an even grid (`window / N` apart) before it records its
//!   intent, so that only a few intents wait at a time and the pace is even from the start;
//! - **gap**: two departures are at least three quarters of that spacing apart, so requests held up
//!   by their intents do not leave together, yet a late one can be caught up on (with the full
//!   spacing, each late timer would slow the whole run down a little).
//!
//! A 429 pauses every request until its delay has passed: a task waiting for its turn waits on, and
//! one about to leave is held back ([`Pacer::depart`] says so). A 429 is rare with the departure
//! log, so after the pause the pace is the budget's again; only a 429 that comes back within a
//! window of the last pause's end (someone else spends the same budget) slows the pace down, and
//! each window without one brings it a step back.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Requests per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub requests: u32,
    pub window: Duration,
}

/// The margin under the budget, for differences in network delay: one request per window, and
/// one more for every this many in it (half a percent).
const MARGIN_PER: u32 = 200;
/// The shortest gap between two departures, as a share of the even spacing.
const MIN_GAP: f64 = 0.75;
/// How much slower the pace gets after a repeated 429, and the most it will slow down.
const SLOWDOWN: f64 = 1.5;
const MAX_SLOWDOWN: f64 = 8.0;

/// What a request about to leave is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Leave now: the departure is recorded.
    Now,
    /// Not before this instant (ask again then).
    At(Instant),
    /// A 429's pause is in force: do not leave.
    Paused,
}

/// The pacer's decisions, with the instant passed in: no clock, no sleeping.
#[derive(Debug)]
struct Schedule {
    /// At most this many departures in any window.
    capacity: usize,
    window: Duration,
    /// `window / capacity`: the even spacing at the budget's pace.
    spacing: Duration,
    /// The last `capacity` departures, oldest first.
    departures: VecDeque<Instant>,
    /// The next turn on the grid.
    next: Instant,
    /// The end of the last pause (a 429's delay), if there was one.
    paused_until: Option<Instant>,
    /// The spacing of turns and gaps is `spacing × factor`.
    factor: f64,
    /// When the last window without a 429 began, for the step back from a slow-down.
    clean_since: Instant,
}

impl Schedule {
    fn new(requests: u32, window: Duration, now: Instant) -> Self {
        let capacity = paced(requests);
        Schedule {
            capacity,
            window,
            spacing: window / capacity as u32,
            departures: VecDeque::with_capacity(capacity),
            next: now,
            paused_until: None,
            factor: 1.0,
            clean_since: now,
        }
    }

    /// The spacing of turns now.
    fn interval(&self) -> Duration {
        self.spacing.mul_f64(self.factor)
    }

    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|p| now < p)
    }

    /// Takes the next turn: when the task may go on to record its intent.
    fn turn(&mut self, now: Instant) -> Instant {
        self.step_back(now);
        let at = self.next.max(now).max(self.paused_until.unwrap_or(now));
        self.next = at + self.interval();
        at
    }

    /// Whether a request may leave at `now`; records the departure if so.
    fn depart(&mut self, now: Instant) -> Departure {
        if self.paused(now) {
            return Departure::Paused;
        }
        self.step_back(now);
        let mut earliest = now;
        if self.departures.len() == self.capacity {
            // With this one, the last `capacity` departures would be less than a window apart.
            earliest = earliest.max(self.departures[0] + self.window);
        }
        if let Some(last) = self.departures.back() {
            earliest = earliest.max(*last + self.interval().mul_f64(MIN_GAP));
        }
        if earliest > now {
            return Departure::At(earliest);
        }
        if self.departures.len() == self.capacity {
            self.departures.pop_front();
        }
        self.departures.push_back(now);
        Departure::Now
    }

    /// A 429 answered at `now`: nothing leaves before `delay` has passed. A 429 answered while a
    /// pause holds belongs to the one that began it; one within a window of a pause's end slows
    /// the pace down.
    fn throttled(&mut self, now: Instant, delay: Duration) {
        let until = now + delay;
        match self.paused_until {
            Some(end) if now < end => {}
            Some(end) if now < end + self.window => {
                self.factor = (self.factor * SLOWDOWN).min(MAX_SLOWDOWN);
                self.clean_since = until;
            }
            _ => self.clean_since = self.clean_since.max(until),
        }
        self.paused_until = Some(self.paused_until.map_or(until, |end| end.max(until)));
        self.next = self.next.max(until);
    }

    /// One step back towards the budget's pace for each whole window without a 429.
    fn step_back(&mut self, now: Instant) {
        while self.factor > 1.0 && now >= self.clean_since + self.window {
            self.factor = (self.factor / SLOWDOWN).max(1.0);
            self.clean_since += self.window;
        }
    }
}

/// Paces one kind of request (writes, or reads) under its budget.
#[derive(Debug)]
pub(crate) struct Pacer {
    schedule: Mutex<Schedule>,
}

impl Pacer {
    /// At most `requests` per `window`, less the margin.
    pub(crate) fn new(requests: u32, window: Duration) -> Self {
        Pacer { schedule: Mutex::new(Schedule::new(requests, window, Instant::now())) }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The spacing between two turns now.
    pub(crate) fn interval(&self) -> Duration {
        self.schedule().interval()
    }

    /// Waits for this task's turn on the even grid. A pause learned while waiting (a 429 answered
    /// to someone else) is honoured: the turn is given up and a new one taken after the pause.
    pub(crate) async fn acquire(&self) {
        loop {
            let at = self.schedule().turn(Instant::now());
            tokio::time::sleep_until(at).await;
            if !self.schedule().paused(Instant::now()) {
                return;
            }
        }
    }

    /// Waits until the request may leave (the departure log and the gap allow it) and records its
    /// departure; call it just before the request is sent. `false`: a 429's pause is in force, the
    /// request must not leave.
    pub(crate) async fn depart(&self) -> bool {
        loop {
            let decision = self.schedule().depart(Instant::now());
            match decision {
                Departure::Now => return true,
                Departure::Paused => return false,
                Departure::At(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// A 429: nobody sends before `delay` has passed (and the pace slows down if 429s repeat).
    pub(crate) async fn throttled(&self, delay: Duration) {
        self.schedule().throttled(Instant::now(), delay);
    }
}

/// How many requests may leave in a window: the budget less the margin (at least one).
fn paced(requests: u32) -> usize {
    requests.saturating_sub(1 + requests / MARGIN_PER).max(1) as usize
}

#[cfg(test)]
mod tests;
