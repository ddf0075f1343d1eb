//! Client-side pacing: requests are spaced evenly so that a long run uses the budget without
//! provoking 429s, and a 429 slows everyone down.
//!
//! Intune counts requests in a 20-second window per app and tenant. Sending `requests` evenly
//! over `window` (with a 2% margin for timer and network jitter) never puts more than the budget
//! in any window, however long the run, while a burst-then-wait scheme would.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The margin under the budget, for timer and network jitter.
const MARGIN: f64 = 0.98;
/// How much slower the pacer gets after each 429, and the most it will slow down.
const SLOWDOWN: f64 = 1.5;
const MAX_SLOWDOWN: f64 = 8.0;
/// How quickly it speeds up again after successes.
const RECOVERY: f64 = 0.97;

#[derive(Debug)]
struct State {
    next: Instant,
    factor: f64,
}

/// Hands out evenly spaced send slots.
#[derive(Debug)]
pub struct Pacer {
    base: Duration,
    state: Mutex<State>,
}

impl Pacer {
    /// At most `requests` per `window`.
    pub fn new(requests: u32, window: Duration) -> Self {
        let base = window.div_f64(f64::from(requests.max(1)) * MARGIN);
        Pacer { base, state: Mutex::new(State { next: Instant::now(), factor: 1.0 }) }
    }

    /// The spacing between two sends now.
    pub async fn interval(&self) -> Duration {
        self.base.mul_f64(self.state.lock().await.factor)
    }

    /// Waits for the next send slot.
    pub async fn acquire(&self) {
        let at = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            let at = s.next.max(now);
            s.next = at + self.base.mul_f64(s.factor);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// A 429: nobody sends before `delay` has passed, and the pace slows down.
    pub async fn throttled(&self, delay: Duration) {
        let mut s = self.state.lock().await;
        s.factor = (s.factor * SLOWDOWN).min(MAX_SLOWDOWN);
        s.next = s.next.max(Instant::now() + delay);
    }

    /// A success: the pace recovers towards the budget.
    pub async fn succeeded(&self) {
        let mut s = self.state.lock().await;
        s.factor = (s.factor * RECOVERY).max(1.0);
    }
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
        let spacing = Duration::from_secs(1).div_f64(10.0 * MARGIN);
        // tokio timers have a 1 ms resolution.
        let took = Instant::now() - t0;
        assert!(took >= spacing * 4 && took <= spacing * 4 + Duration::from_millis(4), "{took:?}");
        p.throttled(Duration::from_secs(3)).await;
        let t1 = Instant::now();
        p.acquire().await;
        assert!(Instant::now() - t1 >= Duration::from_secs(3));
        assert!(p.interval().await > spacing);
        for _ in 0..100 {
            p.succeeded().await;
        }
        assert_eq!(p.interval().await, spacing);
    }
}
