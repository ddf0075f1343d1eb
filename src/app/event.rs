//! What an operation tells whoever runs it, as it happens: one [`Event`] enum to one
//! [`Subscriber`]. The command line renders events (a plan, a progress bar, outcome lines);
//! `watch` renders the same events its own way. An operation never knows who listens.
//!
//! # Expected flow
//! 1. The caller passes a [`Subscriber`] to the operation (`app::apply::run`).
//! 2. The operation emits [`Event::Warnings`] once the config and the manifests are read, then
//!    the executor's events, translated by [`Emitter`] (the executor's [`Ui`]): the plan, the
//!    start of the work, its progress, each action's outcome.
//! 3. The one question an operation asks, whether to go on with the complete plan, is
//!    [`Subscriber::confirm`]; a subscriber that cannot ask says no.
//!
//! # Guarantees
//! - Events come in the order things happen, on the caller's thread of control (the subscriber
//!   needs no locking).
//! - Every event that names a time carries it from the session's [`Clock`].

use jiff::Timestamp;

use crate::clock::Clock;
use crate::core::plan::Plan;
use crate::diag::Diagnostics;
use crate::exec::{Progress, Ui};
use crate::ledger::Record;

/// Something an operation did or found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// The config and the manifests are read: what is wrong with them that does not stop the
    /// run.
    Warnings(&'a Diagnostics),
    /// The complete plan that is being executed (resets may already be under way).
    PlanMade(&'a Plan<'a>),
    /// Work starts: `candidates` devices to look up, each reset sent as soon as it may be.
    Started { candidates: usize },
    /// How far the run is (emitted when it changes).
    Progress(Progress),
    /// One action reached its outcome for this run, at `at`.
    Finished { record: &'a Record, at: Timestamp },
}

/// Whoever runs an operation: renders its events, answers its question.
pub(crate) trait Subscriber {
    /// One event, as it happens.
    fn event(&mut self, event: Event<'_>);

    /// Whether to go on with `plan` (asked only when the request wants a confirmation).
    fn confirm(&mut self, plan: &Plan<'_>) -> bool {
        let _ = plan;
        false
    }
}

/// The executor's [`Ui`], turned into events for a [`Subscriber`].
pub(crate) struct Emitter<'s> {
    pub subscriber: &'s mut dyn Subscriber,
    pub clock: &'s dyn Clock,
}

impl Ui for Emitter<'_> {
    fn show_plan(&mut self, plan: &Plan<'_>) {
        self.subscriber.event(Event::PlanMade(plan));
    }

    fn confirm(&mut self, plan: &Plan<'_>) -> bool {
        self.subscriber.confirm(plan)
    }

    fn started(&mut self, candidates: usize) {
        self.subscriber.event(Event::Started { candidates });
    }

    fn progress(&mut self, progress: Progress) {
        self.subscriber.event(Event::Progress(progress));
    }

    fn outcome(&mut self, record: &Record) {
        self.subscriber.event(Event::Finished { record, at: self.clock.now() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;

    const NO_ORPHANS: crate::core::plan::PlanOptions =
        crate::core::plan::PlanOptions { report_orphans: false, rename_guard: None };

    /// Events as lines, and a fixed answer.
    #[derive(Default)]
    struct Recorder {
        seen: Vec<String>,
        answer: bool,
    }

    impl Subscriber for Recorder {
        fn event(&mut self, event: Event<'_>) {
            self.seen.push(match event {
                Event::Warnings(d) => format!("warnings {}", d.items().len()),
                Event::PlanMade(p) => format!("plan {}", p.summary.to_send),
                Event::Started { candidates } => format!("started {candidates}"),
                Event::Progress(p) => format!("progress {}/{}", p.finished, p.candidates),
                Event::Finished { record, at } => format!("finished {} {at}", record.status),
            });
        }

        fn confirm(&mut self, _plan: &Plan<'_>) -> bool {
            self.answer
        }
    }

    #[test]
    fn the_executor_s_callbacks_become_events_in_order() {
        let at: Timestamp = "2024-05-01T10:00:00Z".parse().expect("time");
        let clock = FixedClock::new(at);
        let mut recorder = Recorder { answer: true, ..Recorder::default() };
        let mut emitter = Emitter { subscriber: &mut recorder, clock: &clock };
        emitter.started(3);
        emitter.progress(Progress { candidates: 3, finished: 1, ..Progress::default() });
        let (ledger, none) = (crate::ledger::Ledger::empty(), crate::core::plan::Resolutions::new());
        let plan = crate::core::plan::plan(&[], &ledger, &none, NO_ORPHANS);
        emitter.show_plan(&plan);
        assert!(emitter.confirm(&plan));
        clock.advance(jiff::SignedDuration::from_secs(5));
        emitter.outcome(&crate::ledger::tests::record("m", "SN1", crate::ledger::Status::Accepted));
        assert_eq!(
            recorder.seen,
            ["started 3", "progress 1/3", "plan 0", "finished accepted 2024-05-01T10:00:05Z"],
            "in order, each outcome stamped by the session's clock"
        );
    }

    #[test]
    fn a_subscriber_that_cannot_ask_says_no() {
        struct Silent;
        impl Subscriber for Silent {
            fn event(&mut self, _event: Event<'_>) {}
        }
        let (ledger, none) = (crate::ledger::Ledger::empty(), crate::core::plan::Resolutions::new());
        let plan = crate::core::plan::plan(&[], &ledger, &none, NO_ORPHANS);
        assert!(!Silent.confirm(&plan));
    }
}
