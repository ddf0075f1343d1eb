//! Client-side pacing: requests are spaced evenly so that a long run uses the budget without
//! provoking 429s, and a 429 slows everyone down.
//!
//! Intune counts requests in a 20-second window per app and tenant. Sending `requests` evenly
//! over `window`, one request and half a percent under the budget, never puts more than the
//! budget in any window however long the run (a request woken late by the timer or delayed on the
//! network can slip one into the next window, never more), while a burst-then-wait scheme would.
//!
//! A 429's pause holds for everyone: a task that was handed a slot before the 429 arrived
//! re-checks the pause when it wakes and waits again, and [`Pacer::paused`] lets the sender check
//! once more just before a request leaves.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Requests per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub requests: u32,
    pub window: Duration,
}

/// The margin under the budget, for timer and network jitter: one request per window, and this.
const MARGIN: f64 = 0.995;
/// How much slower the pacer gets after each 429, and the most it will slow down.
const SLOWDOWN: f64 = 1.5;
const MAX_SLOWDOWN: f64 = 8.0;
/// How quickly it speeds up again after successes.
const RECOVERY: f64 = 0.97;

#[derive(Debug)]
struct State {
    next: Instant,
    /// No request leaves before this (the server's `Retry-After`, or our backoff).
    paused_until: Instant,
    factor: f64,
}

/// Hands out evenly spaced send slots.
#[derive(Debug)]
pub(crate) struct Pacer {
    base: Duration,
    state: Mutex<State>,
}

impl Pacer {
    /// At most `requests` per `window`.
    pub(crate) fn new(requests: u32, window: Duration) -> Self {
        let base = window.div_f64(paced(requests));
        let now = Instant::now();
        Pacer { base, state: Mutex::new(State { next: now, paused_until: now, factor: 1.0 }) }
    }

    /// The spacing between two sends now.
    pub(crate) async fn interval(&self) -> Duration {
        self.base.mul_f64(self.state.lock().await.factor)
    }

    /// Waits for the next send slot. A pause learned while waiting (a 429 answered to someone
    /// else) is honoured: the slot is given up and a new one taken after the pause.
    pub(crate) async fn acquire(&self) {
        loop {
            let at = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let at = s.next.max(now).max(s.paused_until);
                s.next = at + self.base.mul_f64(s.factor);
                at
            };
            tokio::time::sleep_until(at).await;
            if !self.paused().await {
                return;
            }
        }
    }

    /// Whether a pause is in force now: no request may leave.
    pub(crate) async fn paused(&self) -> bool {
        Instant::now() < self.state.lock().await.paused_until
    }

    /// A 429: nobody sends before `delay` has passed, and the pace slows down.
    pub(crate) async fn throttled(&self, delay: Duration) {
        let mut s = self.state.lock().await;
        s.factor = (s.factor * SLOWDOWN).min(MAX_SLOWDOWN);
        let until = Instant::now() + delay;
        s.paused_until = s.paused_until.max(until);
        s.next = s.next.max(until);
    }

    /// A success: the pace recovers towards the budget.
    pub(crate) async fn succeeded(&self) {
        let mut s = self.state.lock().await;
        s.factor = (s.factor * RECOVERY).max(1.0);
    }
}

/// How many requests a window gets: the budget less one, less half a percent (at least one).
fn paced(requests: u32) -> f64 {
    (f64::from(requests) * MARGIN - 1.0).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced_and_429_pushes_them_back() {
        let p = Pacer::new(10, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..5 {
            p.acquire().await;
        }
        let spacing = Duration::from_secs(1).div_f64(10.0 * MARGIN - 1.0);
        // tokio timers have a 1 ms resolution.
        let took = Instant::now() - t0;
        assert!(took >= spacing * 4 && took <= spacing * 4 + Duration::from_millis(4), "{took:?}");
        p.throttled(Duration::from_secs(3)).await;
        let t1 = Instant::now();
        p.acquire().await;
        assert!(Instant::now() - t1 >= Duration::from_secs(3));
        assert_eq!(p.interval().await, spacing.mul_f64(SLOWDOWN));
        for _ in 0..10 {
            p.throttled(Duration::ZERO).await;
        }
        assert_eq!(p.interval().await, spacing.mul_f64(MAX_SLOWDOWN), "the slow-down has a ceiling");
        for _ in 0..100 {
            p.succeeded().await;
        }
        assert_eq!(p.interval().await, spacing);
    }

    // Regression: tasks handed a send time before a 429 came back still sent inside its window.
    #[tokio::test(start_paused = true)]
    async fn a_pause_learned_while_waiting_holds_for_slots_already_handed_out() {
        let p = std::sync::Arc::new(Pacer::new(10, Duration::from_secs(1)));
        let t0 = Instant::now();
        // Five tasks take slots spread over the next ~0.4 s.
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let p = p.clone();
            waiting.push(tokio::spawn(async move {
                p.acquire().await;
                Instant::now()
            }));
        }
        tokio::task::yield_now().await;
        // A 429 arrives after 50 ms with a 3 s Retry-After.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let pause_end = Instant::now() + Duration::from_secs(3);
        p.throttled(Duration::from_secs(3)).await;
        let mut sent = Vec::new();
        for w in waiting {
            sent.push(w.await.expect("task"));
        }
        let inside: Vec<_> = sent.iter().filter(|t| **t > t0 + Duration::from_millis(50) && **t < pause_end).collect();
        assert!(inside.is_empty(), "{} slots used inside the pause", inside.len());
        assert!(!p.paused().await);
    }
}
