//! The pacer's decisions, at injected instants: nothing sleeps, nothing is timed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The most departures any window of `window` holds (windows open at the start, closed at the
/// end, as a server counting arrivals in its last `window` does).
fn most_in_any_window(departures: &[Instant], window: Duration) -> usize {
    let mut oldest = 0;
    let mut most = 0;
    for (i, d) in departures.iter().enumerate() {
        while *d - departures[oldest] >= window {
            oldest += 1;
        }
        most = most.max(i + 1 - oldest);
    }
    most
}

/// What happens next in [`run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A task is free to take a turn.
    Free,
    /// A task's turn has come (its timer fired).
    Woke,
    /// A task's intent is recorded: it asks to leave.
    Leave,
    /// A 429 comes back, asking for this many milliseconds.
    Throttled(u64),
}

/// How the simulated executor behaves.
struct Load {
    requests: usize,
    tasks: usize,
    /// How long recording request `i`'s intent takes.
    intent: fn(usize) -> Duration,
    /// How late every timer fires.
    late: Duration,
    latency: Duration,
    /// A 429 answered at this offset from the start, with this delay.
    throttled: Option<(Duration, Duration)>,
}

/// Runs `load` through `s` as the executor drives the pacer — turn, intent, departure, answer —
/// in the order the instants come, and returns every departure.
fn run(s: &mut Schedule, t0: Instant, load: &Load) -> Vec<Instant> {
    let mut events = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, at: Instant, e: Event, req: usize| {
        seq += 1;
        events.push(Reverse((at, seq, e, req)));
    };
    for _ in 0..load.tasks {
        push(&mut events, t0, Event::Free, usize::MAX);
    }
    if let Some((after, delay)) = load.throttled {
        push(&mut events, t0 + after, Event::Throttled(delay.as_millis() as u64), usize::MAX);
    }
    let mut started = 0;
    let mut departures = Vec::new();
    while let Some(Reverse((now, _, event, req))) = events.pop() {
        match event {
            Event::Free if started < load.requests => {
                let at = s.turn(now);
                push(&mut events, at + load.late, Event::Woke, started);
                started += 1;
            }
            Event::Free => {}
            Event::Woke if s.paused(now) => {
                let at = s.turn(now);
                push(&mut events, at + load.late, Event::Woke, req);
            }
            Event::Woke => push(&mut events, now + (load.intent)(req), Event::Leave, req),
            Event::Leave => match s.depart(now) {
                Departure::Now => {
                    departures.push(now);
                    push(&mut events, now + load.latency, Event::Free, usize::MAX);
                }
                Departure::At(at) => push(&mut events, at + load.late, Event::Leave, req),
                // Held back: the executor records it and takes a new turn for it.
                Departure::Paused => {
                    let at = s.turn(now);
                    push(&mut events, at + load.late, Event::Woke, req);
                }
            },
            Event::Throttled(delay) => s.throttled(now, ms(delay)),
        }
    }
    assert_eq!(departures.len(), load.requests, "every request left once");
    departures
}

/// Intents that take 0 to 40 ms, in no order (a fixed pseudo-random sequence).
fn varying_intent(i: usize) -> Duration {
    let x = (i as u64).wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    ms((x >> 33) % 41)
}

/// 1,000 writes at 100 per 2 s by 16 tasks, 50 ms latency, each timer 1 ms late.
fn two_second_window() -> Load {
    Load { requests: 1_000, tasks: 16, intent: varying_intent, late: ms(1), latency: ms(50), throttled: None }
}

#[test]
fn after_n_departures_in_a_window_the_next_waits_until_the_oldest_is_a_window_old() {
    let t0 = Instant::now();
    let mut s = Schedule::new(10, Duration::from_secs(1), t0);
    assert_eq!(s.capacity, 9, "10 less one");
    for k in 0..9 {
        assert_eq!(s.depart(t0 + ms(100 * k)), Departure::Now);
    }
    assert_eq!(s.depart(t0 + ms(900)), Departure::At(t0 + Duration::from_secs(1)));
    assert_eq!(s.depart(t0 + ms(999)), Departure::At(t0 + Duration::from_secs(1)));
    assert_eq!(s.depart(t0 + Duration::from_secs(1)), Departure::Now);
}

#[test]
fn requests_held_up_by_their_intents_do_not_leave_together() {
    let t0 = Instant::now();
    let mut s = Schedule::new(10, Duration::from_secs(1), t0);
    assert_eq!(s.depart(t0), Departure::Now);
    let gap = s.spacing.mul_f64(MIN_GAP);
    assert_eq!(s.depart(t0 + ms(1)), Departure::At(t0 + gap));
    assert_eq!(s.depart(t0 + gap), Departure::Now);
}

// The bunching that provoked a 429 ~3 s into a 2 s-window run: turns were even, departures
// (a turn plus an intent write of varying length) were not.
#[test]
fn no_window_holds_more_than_the_budget_less_the_margin_however_long_intents_take() {
    let t0 = Instant::now();
    let window = Duration::from_secs(2);
    let mut s = Schedule::new(100, window, t0);
    let departures = run(&mut s, t0, &two_second_window());
    assert_eq!(most_in_any_window(&departures, window), 99);
    let gap = s.spacing.mul_f64(MIN_GAP);
    assert!(departures.windows(2).all(|d| d[1] - d[0] >= gap), "no two leave closer than the gap");
}

// Timers fire late and intents vary, yet the run keeps the budget's pace: a late request is
// caught up on, not passed on to every later one.
#[test]
fn late_timers_and_slow_intents_do_not_slow_the_pace_down() {
    let t0 = Instant::now();
    let mut s = Schedule::new(100, Duration::from_secs(2), t0);
    let departures = run(&mut s, t0, &Load { late: ms(3), ..two_second_window() });
    let span = departures[999] - departures[0];
    // 999 spacings, and less than two spacings more.
    assert!(span < s.spacing * 1_001, "{span:?} for 999 × {:?}", s.spacing);
}

#[test]
fn nothing_leaves_during_a_429s_pause_and_the_pace_is_the_budgets_right_after() {
    let t0 = Instant::now();
    let window = Duration::from_secs(2);
    let mut s = Schedule::new(100, window, t0);
    let (at, delay) = (Duration::from_secs(3), Duration::from_secs(3));
    let departures = run(&mut s, t0, &Load { throttled: Some((at, delay)), ..two_second_window() });
    let (start, end) = (t0 + at, t0 + at + delay);
    assert!(departures.iter().all(|d| *d < start || *d >= end), "a departure inside the pause");
    assert_eq!(s.interval(), s.spacing, "a lone 429 does not slow the pace down");
    // The windows after the pause are as full as the budget allows, as before it.
    let after = departures.iter().position(|d| *d >= end).expect("departures after the pause");
    let in_window = |from: Instant| departures.iter().filter(|d| **d >= from && **d < from + window).count();
    assert!(in_window(t0) >= 98, "before: {}", in_window(t0));
    for k in 0..3 {
        let from = departures[after] + window * k;
        assert!(in_window(from) >= 98, "window {k} after the pause: {}", in_window(from));
    }
    // Every request left: the pause, and at most a window of departures are lost to it.
    let span = departures[999] - departures[0];
    assert!(span < s.spacing * 1_001 + delay + s.spacing * 3, "{span:?}");
}

#[test]
fn turns_are_evenly_spaced_and_a_429_pushes_them_past_its_pause() {
    let t0 = Instant::now();
    let mut s = Schedule::new(10, Duration::from_secs(1), t0);
    let spacing = Duration::from_secs(1) / 9;
    for k in 0..5 {
        assert_eq!(s.turn(t0), t0 + spacing * k);
    }
    s.throttled(t0 + ms(10), Duration::from_secs(3));
    let end = t0 + ms(3_010);
    assert!(s.paused(t0 + ms(3_009)) && !s.paused(end));
    assert_eq!(s.depart(t0 + ms(20)), Departure::Paused);
    assert_eq!(s.turn(t0 + ms(20)), end);
    assert_eq!(s.turn(t0 + ms(20)), end + spacing);
}

// Every request in flight when the window filled gets a 429 within the pause of the first:
// counted as one, they would slow the pace down eightfold.
#[test]
fn the_429s_answered_during_a_pause_are_one_and_do_not_slow_the_pace_down() {
    let t0 = Instant::now();
    let mut s = Schedule::new(100, Duration::from_secs(2), t0);
    for k in 0..16 {
        s.throttled(t0 + ms(5 * k), Duration::from_secs(3));
    }
    assert_eq!(s.interval(), s.spacing);
    assert_eq!(s.paused_until, Some(t0 + ms(75) + Duration::from_secs(3)), "the longest pause holds");
}

#[test]
fn a_429_within_a_window_of_the_last_pause_slows_down_and_each_clean_window_steps_back() {
    let t0 = Instant::now();
    let window = Duration::from_secs(2);
    let mut s = Schedule::new(100, window, t0);
    let spacing = s.spacing;
    s.throttled(t0, Duration::from_secs(1));
    // More than a window after the pause: a lone 429 again.
    s.throttled(t0 + ms(3_100), Duration::from_secs(1));
    assert_eq!(s.interval(), spacing);
    // Within a window of that pause's end (4.1 s): the pace slows down.
    s.throttled(t0 + ms(5_000), Duration::from_secs(1));
    assert_eq!(s.interval(), spacing.mul_f64(SLOWDOWN));
    s.throttled(t0 + ms(6_500), Duration::from_secs(1));
    assert_eq!(s.interval(), spacing.mul_f64(SLOWDOWN * SLOWDOWN));
    let end = t0 + ms(7_500);
    for k in 0..20 {
        s.throttled(end + ms(1_000 * k), Duration::from_millis(10));
    }
    assert_eq!(s.interval(), spacing.mul_f64(MAX_SLOWDOWN), "the slow-down has a ceiling");
    let end = end + ms(19_010);
    // A step back per clean window after the last pause: 8 → 5.33 → 3.56 → 2.37 → 1.58 → 1.05 → 1.
    let _ = s.turn(end + window - ms(1));
    assert_eq!(s.interval(), spacing.mul_f64(MAX_SLOWDOWN));
    let _ = s.turn(end + window);
    assert_eq!(s.interval(), spacing.mul_f64(MAX_SLOWDOWN / SLOWDOWN));
    let _ = s.depart(end + window * 6);
    assert_eq!(s.interval(), spacing, "back to the budget's pace");
}

// The edges agree with `paused`: the instant a pause ends it is over, so a 429 answered then is
// a new one (and slows the pace down); a window after that end, a 429 is a lone one again.
#[test]
fn a_pause_ends_at_its_end_and_its_window_at_the_windows_end() {
    let t0 = Instant::now();
    let window = Duration::from_secs(2);
    let mut s = Schedule::new(100, window, t0);
    let spacing = s.spacing;
    s.throttled(t0, Duration::from_secs(1));
    let end = t0 + Duration::from_secs(1);
    assert!(s.paused(end - ms(1)) && !s.paused(end));
    s.throttled(end, Duration::from_secs(1));
    assert_eq!(s.interval(), spacing.mul_f64(SLOWDOWN), "answered as the pause ended: a second 429");

    let mut s = Schedule::new(100, window, t0);
    s.throttled(t0, Duration::from_secs(1));
    s.throttled(end + window, Duration::from_secs(1));
    assert_eq!(s.interval(), spacing, "a window after the pause: a lone 429");
}

// Regression: tasks handed a turn before a 429 came back still sent inside its pause.
#[tokio::test(start_paused = true)]
async fn a_pause_learned_while_waiting_holds_for_turns_already_handed_out() {
    let p = std::sync::Arc::new(Pacer::new(10, Duration::from_secs(1)));
    let t0 = Instant::now();
    // Five tasks take turns spread over the next ~0.5 s.
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let p = p.clone();
        waiting.push(tokio::spawn(async move {
            p.acquire().await;
            let left = p.depart().await;
            (Instant::now(), left)
        }));
    }
    tokio::task::yield_now().await;
    // A 429 arrives after 50 ms with a 3 s Retry-After.
    tokio::time::sleep(ms(50)).await;
    let pause_end = Instant::now() + Duration::from_secs(3);
    p.throttled(Duration::from_secs(3)).await;
    let mut sent = Vec::new();
    for w in waiting {
        sent.push(w.await.expect("task"));
    }
    let inside = sent.iter().filter(|(t, left)| *left && *t > t0 + ms(50) && *t < pause_end).count();
    assert_eq!(inside, 0, "turns used inside the pause");
}

#[test]
fn the_margin_is_one_request_and_one_more_for_every_200() {
    let capacity = [1, 10, 100, 150, 200, 1_000, 2_000].map(paced);
    assert_eq!(capacity, [1, 9, 99, 149, 198, 994, 1_989]);
}
