//! The retry policy: one pure decision for every answer Graph gives (writes and reads) and for
//! the cycles of `watch`.
//!
//! Callers classify what happened ([`Outcome`]), keep a [`History`] per request (or per action,
//! across its attempts), and ask [`decide`] what comes next. `decide` reads no clock and does no
//! I/O, so every case is pinned by the table in the tests below (like kube-runtime's
//! `error_policy`).
//!
//! # The rules
//! - An answer that settles the request (success, a refusal, an unknown outcome) is final: a
//!   `POST` whose fate is unknown (timeout, 5xx) is **never** retried — only `refresh` decides it.
//! - **429** (and a write held back because a 429's pause began before it left): wait the server's
//!   `Retry-After` (capped at `graph.backoff.max`), else `graph.backoff.initial` doubled per
//!   earlier 429 of the same request (capped at the max), plus up to 20 % [`jitter`]; at most
//!   [`Policy::max_throttled`] times.
//! - **401**: renew the token and try again, at most [`Policy::max_unauthorized`] times.
//! - **Not sent** (408, could not connect — the request certainly did not run): pause
//!   `graph.backoff.initial` (at most 5 s) and try again, up to [`Policy::max_not_sent`] tries.
//! - Anything past its limit gives up: a write is then recorded `not-executed` for the next run,
//!   a read fails the lookup.

use std::time::Duration;

/// What one request's answer means for retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An answer that settles it: a success, a refusal, or an unknown outcome of a write.
    Final,
    /// 429, with the server's `Retry-After` if it gave one.
    Throttled(Option<Duration>),
    /// A write never sent because a 429's pause began before it left (the pacer waits it out).
    HeldBack,
    /// 401: the token was refused.
    Unauthorized,
    /// 408 or no connection: certainly not executed.
    NotSent,
}

/// What came before, for one request (or one action across its attempts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// 429s and held-back writes so far.
    pub throttled: u32,
    pub unauthorized: u32,
    pub not_sent: u32,
}

impl History {
    /// The history once `outcome` happened too.
    pub(crate) fn after(self, outcome: Outcome) -> History {
        let mut h = self;
        match outcome {
            Outcome::Throttled(_) | Outcome::HeldBack => h.throttled += 1,
            Outcome::Unauthorized => h.unauthorized += 1,
            Outcome::NotSent => h.not_sent += 1,
            Outcome::Final => {}
        }
        h
    }
}

/// The limits (`graph.backoff` in the config for Graph; fixed ones for `watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The first computed wait, doubled per earlier 429 of the same request.
    pub initial: Duration,
    /// The longest wait, computed or asked for by the server.
    pub max: Duration,
    /// How many 429s one request may meet.
    pub max_throttled: u32,
    /// How many 401s (each renewing the token).
    pub max_unauthorized: u32,
    /// How many tries in all for a request that could not be sent.
    pub max_not_sent: u32,
}

impl Policy {
    /// Graph's policy with the configured backoff.
    pub(crate) fn graph(initial: Duration, max: Duration) -> Policy {
        Policy { initial, max, max_throttled: 20, max_unauthorized: 3, max_not_sent: 3 }
    }

    /// `watch --apply`: after `n` failed cycles in a row the next waits [`Policy::exponential`]
    /// of `n`: 5 s, doubling to 5 min. The watch never gives up.
    pub(crate) const WATCH: Policy = Policy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(300),
        max_throttled: u32::MAX,
        max_unauthorized: u32::MAX,
        max_not_sent: u32::MAX,
    };

    /// `initial × 2^n`, at most `max`.
    pub(crate) fn exponential(&self, n: u32) -> Duration {
        self.initial.saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX)).min(self.max)
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing more: the answer stands.
    Done,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Renew the token, then try again.
    Reauthenticate,
    /// Past the limit: stop trying (a write is recorded `not-executed`).
    GiveUp,
}

/// The decision for `outcome`, given what came before it (`before` does not count it yet).
pub(crate) fn decide(outcome: Outcome, before: History, policy: &Policy) -> Next {
    match outcome {
        Outcome::Final => Next::Done,
        Outcome::Throttled(_) | Outcome::HeldBack if before.throttled >= policy.max_throttled => Next::GiveUp,
        Outcome::Throttled(Some(asked)) => Next::RetryAfter(asked.min(policy.max)),
        Outcome::Throttled(None) => Next::RetryAfter(policy.exponential(before.throttled)),
        // The pacer already holds every send until the pause is over.
        Outcome::HeldBack => Next::RetryAfter(Duration::ZERO),
        Outcome::Unauthorized if before.unauthorized < policy.max_unauthorized => Next::Reauthenticate,
        Outcome::NotSent if before.not_sent + 1 < policy.max_not_sent => {
            Next::RetryAfter(policy.initial.min(Duration::from_secs(5)))
        }
        Outcome::Unauthorized | Outcome::NotSent => Next::GiveUp,
    }
}

/// A computed wait after a 429 (the server gave no `Retry-After`) with up to 20 % added at random,
/// so that requests throttled together do not all come back together (docs/graph-facts.md,
/// Throttling: exponential with jitter). Never shorter than computed; a server's own wait and every other decision are
/// kept as they are.
pub(crate) fn jitter(next: Next, outcome: Outcome) -> Next {
    match (next, outcome) {
        (Next::RetryAfter(wait), Outcome::Throttled(None)) => {
            let unit = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
            Next::RetryAfter(wait + wait.mul_f64(0.2 * unit))
        }
        _ => next,
    }
}

/// A server's `Retry-After` longer than the policy's max is cut to it: logged, since a server
/// asking for an hour would otherwise hold the run (and the ledger lock) that long.
pub(crate) fn log_capped(asked: Option<Duration>, policy: &Policy) {
    if let Some(asked) = asked.filter(|a| *a > policy.max) {
        tracing::warn!(
            retry_after_s = asked.as_secs_f64(),
            cap_s = policy.max.as_secs_f64(),
            "Retry-After is longer than graph.backoff.max; waiting the cap instead"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn only_computed_waits_get_jitter_and_never_less() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let Next::RetryAfter(d) = jitter(Next::RetryAfter(S(3)), Outcome::Throttled(None)) else {
                panic!("still a wait")
            };
            assert!(d >= S(3) && d <= Duration::from_millis(3600), "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 100, "the waits differ: {}", seen.len());
        assert_eq!(jitter(Next::RetryAfter(S(2)), Outcome::Throttled(Some(S(2)))), Next::RetryAfter(S(2)));
        assert_eq!(jitter(Next::RetryAfter(S(1)), Outcome::NotSent), Next::RetryAfter(S(1)));
        assert_eq!(jitter(Next::GiveUp, Outcome::Throttled(None)), Next::GiveUp);
    }

    fn h(throttled: u32, unauthorized: u32, not_sent: u32) -> History {
        History { throttled, unauthorized, not_sent }
    }

    #[test]
    fn every_answer_has_one_decision() {
        let p = Policy::graph(S(3), S(180));
        let table: &[(Outcome, History, Next)] = &[
            // Settled answers are never retried (an unknown POST included).
            (Outcome::Final, h(0, 0, 0), Next::Done),
            (Outcome::Final, h(19, 2, 2), Next::Done),
            // 429: the server's wait, capped; else doubling from initial, capped.
            (Outcome::Throttled(Some(S(7))), h(0, 0, 0), Next::RetryAfter(S(7))),
            (Outcome::Throttled(Some(S(3600))), h(0, 0, 0), Next::RetryAfter(S(180))),
            (Outcome::Throttled(None), h(0, 0, 0), Next::RetryAfter(S(3))),
            (Outcome::Throttled(None), h(1, 0, 0), Next::RetryAfter(S(6))),
            (Outcome::Throttled(None), h(5, 0, 0), Next::RetryAfter(S(96))),
            (Outcome::Throttled(None), h(6, 0, 0), Next::RetryAfter(S(180))),
            (Outcome::Throttled(None), h(19, 0, 0), Next::RetryAfter(S(180))),
            (Outcome::Throttled(Some(S(1))), h(20, 0, 0), Next::GiveUp),
            (Outcome::HeldBack, h(0, 0, 0), Next::RetryAfter(Duration::ZERO)),
            (Outcome::HeldBack, h(20, 0, 0), Next::GiveUp),
            // 401: renew up to three times.
            (Outcome::Unauthorized, h(0, 0, 0), Next::Reauthenticate),
            (Outcome::Unauthorized, h(0, 2, 0), Next::Reauthenticate),
            (Outcome::Unauthorized, h(0, 3, 0), Next::GiveUp),
            // Not sent: three tries in all, pausing initial (at most 5 s).
            (Outcome::NotSent, h(0, 0, 0), Next::RetryAfter(S(3))),
            (Outcome::NotSent, h(0, 0, 1), Next::RetryAfter(S(3))),
            (Outcome::NotSent, h(0, 0, 2), Next::GiveUp),
        ];
        for (outcome, before, want) in table {
            assert_eq!(decide(*outcome, *before, &p), *want, "{outcome:?} after {before:?}");
        }
        let slow = Policy::graph(S(30), S(180));
        assert_eq!(decide(Outcome::NotSent, h(0, 0, 0), &slow), Next::RetryAfter(S(5)), "a not-sent pause is short");
    }

    #[test]
    fn histories_count_what_happened() {
        let h0 = History::default();
        let h1 = h0.after(Outcome::Throttled(None)).after(Outcome::HeldBack).after(Outcome::Unauthorized);
        assert_eq!(h1.after(Outcome::NotSent).after(Outcome::Final), h(2, 1, 1));
    }

    #[test]
    fn watch_backs_off_to_five_minutes() {
        let w = Policy::WATCH;
        assert_eq!([0, 1, 2, 5, 6, 40].map(|n| w.exponential(n)), [S(5), S(10), S(20), S(160), S(300), S(300)]);
    }
}
