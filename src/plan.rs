//! The plan: a pure diff of the actions the manifests ask for against what the ledger recorded.
//!
//! No I/O and no clock: `(actions, ledger) → Plan`. What `apply` will send is exactly the
//! [`Change::Reset`] entries.

use std::borrow::Cow;
use std::collections::HashSet;

use std::collections::HashMap;

use crate::action::{Action, ActionKey, Selector};
use crate::graph::Device;
use crate::state::{Ledger, Record, Status};

/// What will happen to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Never executed: `apply` sends it.
    Reset,
    /// Executed (accepted or done): never sent again.
    AlreadyDone,
    /// Recorded with a result that needs a human or `refresh` (rejected, unknown, failed, …).
    Attention,
    /// In the ledger, but no manifest asks for it any more. Nothing is undone.
    Orphaned,
    /// Would be reset, but the device cannot be acted on (not found, ambiguous, unsupported):
    /// never sent.
    Blocked,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Reset => "reset",
            Change::AlreadyDone => "already-done",
            Change::Attention => "attention",
            Change::Orphaned => "orphaned",
            Change::Blocked => "blocked",
        }
    }
}

/// One line of the plan, borrowing the action and record it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub change: Change,
    /// The manifest's action; `None` for orphans.
    pub action: Option<&'a Action>,
    /// The ledger's record, if any.
    pub record: Option<&'a Record>,
    /// The Intune device the selector resolved to, when devices were looked up.
    pub device: Option<&'a Device>,
    /// Why a [`Change::Blocked`] entry is blocked.
    pub block: Option<BlockKind>,
    /// Why it is in this category, for a human.
    pub reason: Cow<'static, str>,
}

impl Entry<'_> {
    pub fn key(&self) -> &ActionKey {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.key,
            (None, Some(r)) => &r.key,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    pub fn manifest(&self) -> &str {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.manifest,
            (None, Some(r)) => &r.manifest,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    /// Where the action comes from: the manifest file (as recorded for orphans), the line of its
    /// device entry when the manifest still has it, its round and collection.
    pub fn origin(&self) -> Origin {
        match (&self.action, &self.record) {
            (Some(a), _) => Origin {
                file: a.file.display().to_string(),
                line: Some(a.pos.line),
                round: a.round,
                collection: a.collection,
            },
            (None, Some(r)) => Origin { file: r.file.clone(), line: None, round: r.round, collection: r.collection },
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    pub fn selector(&self) -> &Selector {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.selector,
            (None, Some(r)) => &r.selector,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }
}

/// See [`Entry::origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: Option<u32>,
    pub round: u32,
    pub collection: crate::action::Collection,
}

/// Counts per category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub to_reset: usize,
    pub already_done: usize,
    pub orphaned: usize,
    pub attention: usize,
    pub blocked: usize,
    /// Policy violations: any makes `apply` refuse.
    pub violations: usize,
}

/// How to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Report ledger records that no manifest asks for. Off when the run was limited to some
    /// manifest paths, since the others were simply not read.
    pub report_orphans: bool,
}

/// The whole plan, in manifest order, orphans last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    pub entries: Vec<Entry<'a>>,
    pub summary: Summary,
    /// Policy violations found in this plan (see [`crate::policy`]).
    pub violations: Vec<crate::diagnostic::Diagnostic>,
}

impl<'a> Plan<'a> {
    /// A plan of these entries, with their counts.
    pub fn from_entries(entries: Vec<Entry<'a>>) -> Self {
        let mut summary = Summary::default();
        for e in &entries {
            match e.change {
                Change::Reset => summary.to_reset += 1,
                Change::AlreadyDone => summary.already_done += 1,
                Change::Attention => summary.attention += 1,
                Change::Orphaned => summary.orphaned += 1,
                Change::Blocked => summary.blocked += 1,
            }
        }
        Plan { entries, summary, violations: Vec::new() }
    }

    /// The same plan, with the policy violations found in it.
    pub fn with_violations(mut self, violations: Vec<crate::diagnostic::Diagnostic>) -> Self {
        self.summary.violations = violations.len();
        self.violations = violations;
        self
    }

    pub fn has_changes(&self) -> bool {
        self.summary.to_reset > 0
    }

    pub fn to_reset(&self) -> impl Iterator<Item = &Entry<'a>> {
        self.entries.iter().filter(|e| e.change == Change::Reset)
    }
}

/// Why a device cannot be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    NotFound,
    Ambiguous,
    NotSupported,
    /// The selector now finds another device than the one recorded.
    ReEnrolled,
    /// Graph refused the lookup.
    Refused,
    /// Another entry of the same manifest names the same device.
    Repeated,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::NotFound => "not-found",
            BlockKind::Ambiguous => "ambiguous",
            BlockKind::NotSupported => "not-supported",
            BlockKind::ReEnrolled => "re-enrolled",
            BlockKind::Refused => "lookup-refused",
            BlockKind::Repeated => "repeated",
        }
    }
}

/// What looking an action's device up in Intune found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The device to act on.
    Device(Device),
    /// Why the action cannot be sent.
    Blocked(BlockKind, String),
}

/// Devices looked up for a plan, by action key. Empty for an offline plan.
pub type Resolutions = HashMap<ActionKey, Resolution>;

/// Diffs `actions` against `ledger`; `resolutions` (empty offline) block what cannot be sent.
pub fn plan<'a>(
    actions: &'a [Action],
    ledger: &'a Ledger,
    resolutions: &'a Resolutions,
    opts: PlanOptions,
) -> Plan<'a> {
    let mut entries = Vec::with_capacity(actions.len());
    for a in actions {
        let record = ledger.records.get(&a.key);
        let (mut change, mut reason) = classify(record);
        let (mut device, mut block) = (None, None);
        match resolutions.get(&a.key) {
            Some(Resolution::Device(d)) => device = Some(d),
            Some(Resolution::Blocked(kind, why)) if change == Change::Reset => {
                change = Change::Blocked;
                block = Some(*kind);
                reason = why.clone().into();
            }
            _ => {}
        }
        entries.push(Entry { change, action: Some(a), record, device, block, reason });
    }
    if opts.report_orphans {
        let wanted: HashSet<&ActionKey> = actions.iter().map(|a| &a.key).collect();
        let mut orphans: Vec<&Record> = ledger.records.values().filter(|r| !wanted.contains(&r.key)).collect();
        orphans.sort_by(|a, b| (&a.manifest, &a.created_at, &a.key).cmp(&(&b.manifest, &b.created_at, &b.key)));
        entries.extend(orphans.into_iter().map(|r| Entry {
            change: Change::Orphaned,
            action: None,
            record: Some(r),
            device: None,
            block: None,
            reason: format!("no manifest asks for it any more (status {}); nothing will be undone", r.status).into(),
        }));
    }
    Plan::from_entries(entries)
}

fn classify(record: Option<&Record>) -> (Change, Cow<'static, str>) {
    let Some(r) = record else {
        return (Change::Reset, "new".into());
    };
    let last_error = r.attempts.last().and_then(|a| a.error_message.clone());
    match r.status {
        Status::NotExecuted => (Change::Reset, "earlier attempt did not take effect".into()),
        Status::Accepted => (Change::AlreadyDone, "accepted by Intune; `reconcile refresh` learns the result".into()),
        Status::Done => (Change::AlreadyDone, "done".into()),
        Status::Unknown => (
            Change::Attention,
            "outcome unknown (the request may have reached Intune): run `reconcile refresh`; it is not re-sent until then"
                .into(),
        ),
        s @ (Status::Rejected | Status::Failed | Status::NotSupported | Status::Canceled) => (
            Change::Attention,
            format!("{s}{}; bump spec.round to try again", last_error.map(|m| format!(": {m}")).unwrap_or_default())
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{ActionKind, Collection, Selector, SelectorKind};
    use crate::diagnostic::Pos;
    use crate::state::Record;

    fn action(name: &str, serial: &str) -> Action {
        let selector = Selector { kind: SelectorKind::SerialNumber, value: serial.into() };
        Action {
            key: ActionKey::compute(ActionKind::PasscodeReset, name, 1, Collection::ManagedDevices, &selector),
            kind: ActionKind::PasscodeReset,
            manifest: name.into(),
            file: "m.yaml".into(),
            pos: Pos::new(1, 1),
            round: 1,
            collection: Collection::ManagedDevices,
            selector,
        }
    }

    fn ledger_with(records: &[(&Action, Status)]) -> Ledger {
        let mut l = Ledger::empty();
        for (a, s) in records {
            let mut r = Record::new(a, None, jiff::Timestamp::UNIX_EPOCH);
            r.status = *s;
            l.records.insert(r.key.clone(), r);
        }
        l
    }

    #[test]
    fn every_status_lands_in_its_category() {
        let acts: Vec<Action> = (0..9).map(|i| action("m", &format!("S{i}"))).collect();
        let statuses = Status::ALL;
        let recs: Vec<(&Action, Status)> = acts.iter().zip(statuses).collect();
        let ledger = ledger_with(&recs);
        let none = Resolutions::new();
        let p = plan(&acts, &ledger, &none, PlanOptions { report_orphans: true });
        let changes: Vec<Change> = p.entries.iter().map(|e| e.change).collect();
        use Change::*;
        assert_eq!(
            changes,
            [AlreadyDone, AlreadyDone, Attention, Attention, Attention, Attention, Attention, Reset, Reset]
        );
        assert_eq!(
            p.summary,
            Summary { to_reset: 2, already_done: 2, orphaned: 0, attention: 5, blocked: 0, violations: 0 }
        );
    }

    #[test]
    fn recorded_actions_are_never_planned_again_and_removed_ones_are_orphans() {
        let a = action("m", "A");
        let b = action("m", "B");
        let gone = action("old", "C");
        let l = ledger_with(&[(&a, Status::Accepted), (&gone, Status::Done)]);
        let both = [a.clone(), b.clone()];
        let none = Resolutions::new();
        let p = plan(&both, &l, &none, PlanOptions { report_orphans: true });
        assert_eq!(p.to_reset().map(|e| e.key()).collect::<Vec<_>>(), [&b.key]);
        assert_eq!(p.summary.orphaned, 1);
        assert_eq!(p.entries.last().map(Entry::key), Some(&gone.key));

        let limited = plan(&both, &l, &none, PlanOptions { report_orphans: false });
        assert_eq!(limited.summary.orphaned, 0);

        let blocked: Resolutions =
            [(b.key.clone(), Resolution::Blocked(BlockKind::NotFound, "not found".into()))].into();
        let p = plan(&both, &l, &blocked, PlanOptions { report_orphans: false });
        assert_eq!((p.summary.to_reset, p.summary.blocked), (0, 1));
        assert_eq!(limited.summary.orphaned, 0);
    }
}
