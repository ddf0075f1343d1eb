//! The plan: a pure diff of the actions the manifests ask for against what the ledger recorded.
//!
//! No I/O and no clock: `(actions, ledger) → Plan`. What `apply` will send is exactly the
//! [`Change::Send`] entries.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::core::action::{Action, ActionKey, Selector};
use crate::core::device::Device;
use crate::ledger::{Attempt, Ledger, Record, Status};
use crate::manifest::ManifestInfo;

/// What will happen to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Change {
    /// Never executed: `apply` sends it.
    #[serde(rename = "reset")]
    Send,
    /// Executed (accepted or done): never sent again.
    AlreadyDone,
    /// Recorded with a result that needs a human or `refresh` (rejected, unknown, failed, …).
    Attention,
    /// In the ledger, but no manifest asks for it any more. Nothing is undone.
    Orphaned,
    /// Would be reset, but cannot be sent (device not found, ambiguous or unsupported, a policy
    /// rule of its manifest, a likely rename): never sent.
    Blocked,
    /// Another entry of the same manifest names the same device: it is reset once, by that
    /// entry. Information, not a problem.
    SameDevice,
    /// The device was reset outside this tool a short while ago (`policy.outOfBand`, `then:
    /// adopt`): `apply` records that reset as this action's and sends nothing.
    Adopt,
}

impl Change {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Change::Send => "reset",
            Change::AlreadyDone => "already-done",
            Change::Attention => "attention",
            Change::Orphaned => "orphaned",
            Change::Blocked => "blocked",
            Change::SameDevice => "same-device",
            Change::Adopt => "adopt",
        }
    }
}

/// One line of the plan, borrowing the action and record it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub change: Change,
    /// The manifest's action; `None` for orphans.
    pub action: Option<&'a Action>,
    /// The ledger's record, if any: under the action's key, or under a key it had before a
    /// rename (`formerNames`).
    pub record: Option<&'a Record>,
    /// The Intune device the selector resolved to, when devices were looked up.
    pub device: Option<&'a Device>,
    /// Why a [`Change::Blocked`] entry is blocked.
    pub block: Option<BlockKind>,
    /// Why it is in this category, for a human.
    pub reason: Cow<'static, str>,
    /// The device's latest reset made outside this tool within `policy.outOfBand.within`, when
    /// it would otherwise be reset (adopted, blocked or sent with a warning, as the policy says).
    pub out_of_band: Option<crate::core::out_of_band::OutOfBand>,
}

impl Entry<'_> {
    pub(crate) fn key(&self) -> &ActionKey {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.key,
            (None, Some(r)) => &r.key,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    pub(crate) fn manifest(&self) -> &str {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.manifest,
            (None, Some(r)) => &r.manifest,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    /// Where the action comes from: the manifest file (as recorded for orphans), the line of its
    /// device entry when the manifest still has it, its round and collection.
    pub(crate) fn origin(&self) -> Origin {
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

    pub(crate) fn selector(&self) -> &Selector {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.selector,
            (None, Some(r)) => &r.selector,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    /// The kind of action it is.
    pub(crate) fn kind(&self) -> crate::core::action::ActionKind {
        match (&self.action, &self.record) {
            (Some(a), _) => a.kind,
            (None, Some(r)) => r.kind,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    /// The action's parameters (`spec.parameters`).
    pub(crate) fn parameters(&self) -> &crate::core::action::Parameters {
        match (&self.action, &self.record) {
            (Some(a), _) => &a.parameters,
            (None, Some(r)) => &r.parameters,
            (None, None) => unreachable!("an entry has an action or a record"),
        }
    }

    /// What the entry's kind says will be done to its looked-up device (`remove passcode` on
    /// corporate iOS/iPadOS); `None` when no device was looked up, or it cannot take the action.
    pub(crate) fn effect(&self) -> Option<&'static str> {
        self.device.and_then(|d| self.kind().spec().eligible(d).ok())
    }

    /// Whether this reset removes the passcode instead of setting a new one: corporate iOS and
    /// iPadOS, as far as the looked-up device tells.
    pub(crate) fn removes_passcode(&self) -> bool {
        self.change == Change::Send
            && self.kind() == crate::core::action::ActionKind::PasscodeReset
            && self.effect().is_some_and(|v| v.starts_with("remove"))
    }

    /// Whether a compact plan leaves it out: it changes nothing and needs nobody (already done,
    /// orphaned). `--show-done` lists it.
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(self.change, Change::AlreadyDone | Change::Orphaned)
    }

    /// The manifest name the record was made under, when it is a former name of this action's
    /// manifest (a rename with `formerNames`).
    pub(crate) fn recorded_as(&self) -> Option<&str> {
        match (&self.action, &self.record) {
            (Some(a), Some(r)) if r.key != a.key => Some(&r.manifest),
            _ => None,
        }
    }
}

/// See [`Entry::origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub file: String,
    pub line: Option<u32>,
    pub round: u32,
    pub collection: crate::core::action::Collection,
}

/// Counts per category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Summary {
    /// Every reset to send, passcode removals included. In JSON written first, by [`SummaryJson`].
    #[serde(skip)]
    pub to_send: usize,
    /// Of [`Summary::to_send`], those that remove the passcode (corporate iOS/iPadOS). In
    /// JSON `remove_passcode` (saved plans of format 1: `to_remove`).
    #[serde(rename = "remove_passcode", alias = "to_remove")]
    pub to_remove: usize,
    pub already_done: usize,
    pub orphaned: usize,
    pub attention: usize,
    pub blocked: usize,
    pub same_device: usize,
    /// Resets made outside this tool, adopted instead of sent.
    pub adopt: usize,
    /// Policy violations (of a manifest: its resets are blocked; of the repository: `apply`
    /// refuses to start).
    pub violations: usize,
}

/// [`Summary`] in JSON: a plan's `summary` and `outside`, a saved plan's `outside`
/// (docs/contract.md, JSON): `to_reset`, of those the ones that set a new passcode, then the
/// other counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SummaryJson {
    #[serde(default)]
    #[serde(rename = "to_reset")]
    pub to_send: usize,
    /// `to_reset` − `remove_passcode`.
    #[serde(default)]
    pub reset_passcode: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

impl From<Summary> for SummaryJson {
    fn from(summary: Summary) -> Self {
        let reset_passcode = summary.to_send.saturating_sub(summary.to_remove);
        SummaryJson { to_send: summary.to_send, reset_passcode, summary }
    }
}

impl From<SummaryJson> for Summary {
    fn from(s: SummaryJson) -> Self {
        Summary { to_send: s.to_send, ..s.summary }
    }
}

impl Summary {
    fn count(&mut self, e: &Entry<'_>) {
        if e.removes_passcode() {
            self.to_remove += 1;
        }
        match e.change {
            Change::Send => self.to_send += 1,
            Change::AlreadyDone => self.already_done += 1,
            Change::Attention => self.attention += 1,
            Change::Orphaned => self.orphaned += 1,
            Change::Blocked => self.blocked += 1,
            Change::SameDevice => self.same_device += 1,
            Change::Adopt => self.adopt += 1,
        }
    }
}

/// A likely rename: a new action for a device that an orphaned action reset a short while ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenameGuard {
    /// When the resets would be sent.
    pub now: jiff::Timestamp,
    /// How far back an orphan's reset counts.
    pub within: std::time::Duration,
}

/// How to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanOptions {
    /// Report ledger records that no manifest asks for. Off when the run was limited to some
    /// manifest paths, since the others were simply not read.
    pub report_orphans: bool,
    /// Block likely renames (needs the orphans, so only when `report_orphans`).
    pub rename_guard: Option<RenameGuard>,
}

pub(crate) use crate::core::violation::Violation;

/// The whole plan, in manifest order, orphans last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan<'a> {
    pub entries: Vec<Entry<'a>>,
    pub summary: Summary,
    /// Policy violations found in this plan (see [`crate::core::policy`]).
    pub violations: Vec<Violation>,
    /// Ticket, reason and requester of each manifest in the plan, by name.
    pub manifests: BTreeMap<String, ManifestInfo>,
    /// `plan --base`: the counts of what lies outside the change (not detailed).
    pub outside: Option<Summary>,
    /// What the change does to the policy, and where the rules in effect come from.
    pub policy_change: Option<crate::core::violation::PolicyChange>,
    /// The tenant, commit and CI run the Markdown plan names for its reviewer (set by the
    /// command that renders it).
    pub context: Option<crate::ci::provenance::ReviewContext>,
}

impl<'a> Plan<'a> {
    /// A plan of these entries, with their counts.
    pub(crate) fn from_entries(entries: Vec<Entry<'a>>) -> Self {
        let mut summary = Summary::default();
        for e in &entries {
            summary.count(e);
        }
        Plan {
            entries,
            summary,
            violations: Vec::new(),
            manifests: BTreeMap::new(),
            outside: None,
            policy_change: None,
            context: None,
        }
    }

    /// The same plan, with what its reviewers see of each manifest.
    pub(crate) fn with_manifests(mut self, manifests: BTreeMap<String, ManifestInfo>) -> Self {
        self.manifests = manifests;
        self
    }

    /// The same plan with the policy violations found in it: the resets of a manifest that
    /// breaks a rule are blocked (the entry the rule points at says which rule, the others name
    /// it); violations of the repository are kept for the caller to refuse the run.
    pub(crate) fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        for v in &violations {
            let Some(manifest) = &v.manifest else { continue };
            let line = v.diagnostic.pos.map(|p| p.line);
            let rule = v.rule.code();
            for e in self.entries.iter_mut().filter(|e| e.manifest() == manifest.as_str()) {
                let here = e.action.is_some_and(|a| {
                    Some(a.pos.line) == line && v.diagnostic.file.as_deref() == Some(a.file.as_path())
                });
                let blockable = matches!(e.change, Change::Send | Change::Adopt)
                    || (e.change == Change::Blocked && e.block == Some(BlockKind::Policy) && here);
                if !blockable {
                    continue;
                }
                if here {
                    e.reason = v.diagnostic.message.clone().into();
                } else {
                    let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
                    e.reason = format!("manifest `{manifest}` breaks policy {rule}{at}: nothing of it is sent").into();
                }
                e.change = Change::Blocked;
                e.block = Some(BlockKind::Policy);
            }
        }
        self.recount();
        self.summary.violations = violations.len();
        self.violations = violations;
        self
    }

    /// Counts the entries again after their changes were decided anew.
    pub(crate) fn recount(&mut self) {
        let mut summary = Summary { violations: self.summary.violations, ..Summary::default() };
        for e in &self.entries {
            summary.count(e);
        }
        self.summary = summary;
    }

    /// Violations that stop the whole run (not one manifest).
    pub(crate) fn run_violations(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.manifest.is_none())
    }

    pub(crate) fn has_changes(&self) -> bool {
        self.summary.to_send > 0
    }

    pub(crate) fn to_send(&self) -> impl Iterator<Item = &Entry<'a>> {
        self.entries.iter().filter(|e| e.change == Change::Send)
    }

    /// Only the entries (and manifest violations) of the manifests `inside` says are part of the
    /// change; what lies outside is counted in [`Plan::outside`]. Repository violations stay.
    pub(crate) fn scoped(mut self, inside: impl Fn(&Entry<'_>) -> bool) -> Self {
        let mut outside = Summary::default();
        let mut kept_manifests = std::collections::HashSet::new();
        let mut entries = Vec::with_capacity(self.entries.len());
        for e in std::mem::take(&mut self.entries) {
            if inside(&e) {
                kept_manifests.insert(e.manifest().to_owned());
                entries.push(e);
            } else {
                outside.count(&e);
            }
        }
        let (violations, others): (Vec<Violation>, Vec<Violation>) = std::mem::take(&mut self.violations)
            .into_iter()
            .partition(|v| v.manifest.as_ref().is_none_or(|m| kept_manifests.contains(m)));
        outside.violations = others.len();
        self.entries = entries;
        self.manifests.retain(|name, _| kept_manifests.contains(name));
        self.summary.violations = violations.len();
        self.violations = violations;
        self.recount();
        self.outside = Some(outside);
        self
    }
}

/// Why a device cannot be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BlockKind {
    NotFound,
    Ambiguous,
    NotSupported,
    /// The selector now finds another device than the one recorded.
    ReEnrolled,
    /// Graph refused the lookup.
    Refused,
    /// Its manifest breaks a policy rule.
    Policy,
    /// An orphaned action reset this device a short while ago: probably a renamed manifest.
    LikelyRename,
    /// `apply --plan`: what the reviewer saw of this action is no longer true.
    PlanChanged,
    /// The device was reset outside this tool a short while ago (`policy.outOfBand`, `then:
    /// block`).
    OutOfBand,
}

impl BlockKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BlockKind::NotFound => "not-found",
            BlockKind::Ambiguous => "ambiguous",
            BlockKind::NotSupported => "not-supported",
            BlockKind::ReEnrolled => "re-enrolled",
            BlockKind::Refused => "lookup-refused",
            BlockKind::Policy => "policy",
            BlockKind::LikelyRename => "likely-rename",
            BlockKind::PlanChanged => "plan-changed",
            BlockKind::OutOfBand => "out-of-band",
        }
    }
}

/// What looking an action's device up in Intune found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// The device to act on.
    Device(Device),
    /// Another entry of the same manifest acts on this device (why, for a human).
    SameDevice(Device, String),
    /// Why the action cannot be sent.
    Blocked(BlockKind, String),
}

/// Devices looked up for a plan, by action key. Empty for an offline plan.
pub(crate) type Resolutions = HashMap<ActionKey, Resolution>;

/// The ledger's record of `a`: under its key, else under a key it had under a former name.
pub(crate) fn record_of<'a>(ledger: &'a Ledger, a: &Action) -> Option<&'a Record> {
    ledger.records.get(&a.key).or_else(|| a.former_keys.iter().find_map(|k| ledger.records.get(k)))
}

/// Diffs `actions` against `ledger`; `resolutions` (empty offline) block what cannot be sent.
pub(crate) fn plan<'a>(
    actions: &'a [Action],
    ledger: &'a Ledger,
    resolutions: &'a Resolutions,
    opts: PlanOptions,
) -> Plan<'a> {
    let mut entries = Vec::with_capacity(actions.len());
    for a in actions {
        let record = record_of(ledger, a);
        let (mut change, mut reason) = classify(record);
        let (mut device, mut block) = (None, None);
        match resolutions.get(&a.key) {
            Some(Resolution::Device(d)) => device = Some(d),
            Some(Resolution::SameDevice(d, why)) => {
                device = Some(d);
                if change == Change::Send {
                    change = Change::SameDevice;
                    reason = why.clone().into();
                }
            }
            Some(Resolution::Blocked(kind, why)) if change == Change::Send => {
                change = Change::Blocked;
                block = Some(*kind);
                reason = why.clone().into();
            }
            _ => {}
        }
        entries.push(Entry { change, action: Some(a), record, device, block, reason, out_of_band: None });
    }
    if opts.report_orphans {
        let wanted: HashSet<&ActionKey> =
            actions.iter().flat_map(|a| std::iter::once(&a.key).chain(&a.former_keys)).collect();
        let mut orphans: Vec<&Record> = ledger.records.values().filter(|r| !wanted.contains(&r.key)).collect();
        orphans.sort_by(|a, b| (&a.manifest, &a.created_at, &a.key).cmp(&(&b.manifest, &b.created_at, &b.key)));
        if let Some(guard) = opts.rename_guard {
            block_likely_renames(&mut entries, &orphans, guard);
        }
        // An archived orphan (`state archive`) is still the ledger's, for exactly-once and the
        // likely-rename guard above, but no longer shown.
        entries.extend(orphans.into_iter().filter(|r| r.archived.is_none()).map(|r| Entry {
            change: Change::Orphaned,
            action: None,
            record: Some(r),
            device: None,
            block: None,
            reason: format!("no manifest asks for it any more (status {}); nothing will be undone", r.status).into(),
            out_of_band: None,
        }));
    }
    Plan::from_entries(entries)
}

/// A new action for a device that an orphaned action reset within `guard.within` (by device id
/// when devices were looked up, else by the same selector) is most likely a renamed manifest:
/// blocked, with the fix. A higher `round` than the orphan's says "reset it again" and passes.
fn block_likely_renames(entries: &mut [Entry<'_>], orphans: &[&Record], guard: RenameGuard) {
    let since = guard.now - jiff::SignedDuration::try_from(guard.within).unwrap_or(jiff::SignedDuration::MAX);
    let recent = crate::ledger::SentIndex::new(
        orphans.iter().copied().filter(|r| r.status.blocks_sending() && r.last_sent().is_some_and(|t| t >= since)),
    );
    if recent.is_empty() {
        return;
    }
    for e in entries.iter_mut().filter(|e| e.change == Change::Send && e.record.is_none()) {
        let Some(a) = e.action else { continue };
        let Some((when, r)) = recent.last(a, e.device.map(|d| d.id.as_str())).filter(|(_, r)| a.round <= r.round)
        else {
            continue;
        };
        e.change = Change::Blocked;
        e.block = Some(BlockKind::LikelyRename);
        e.reason = format!(
            "likely a rename: manifest `{}` (no longer in the manifests) reset this device at {}; if `{}` is its new name, add `formerNames: [{}]` under metadata; to reset it again, bump spec.round",
            r.manifest,
            crate::duration::at_second(when),
            a.manifest,
            r.manifest
        )
        .into();
    }
}

/// The plan's word for an action held by Multi Admin Approval: certainly not executed, and sent
/// once when approved (docs/exactly-once.md, "Multi Admin Approval").
fn awaiting(r: &Record) -> String {
    let last = r.attempts.last();
    let code = last.and_then(|a| a.approval_code.as_deref()).unwrap_or("?");
    let seen = last.and_then(|a| a.approval.as_ref()).map(|s| format!(", {}", s.describe())).unwrap_or_default();
    format!(
        "awaiting Multi Admin Approval (request {code}{seen}; not executed): a second administrator approves it in the Intune admin center, then `reconcile apply` or `reconcile refresh` sends it once"
    )
}

fn classify(record: Option<&Record>) -> (Change, Cow<'static, str>) {
    let Some(r) = record else {
        return (Change::Send, "new".into());
    };
    let last_error = r.attempts.last().and_then(|a| a.error_message.clone());
    match r.status {
        Status::NotExecuted => (Change::Send, "earlier attempt did not take effect".into()),
        Status::Accepted => (Change::AlreadyDone, "accepted by Intune; `reconcile refresh` learns the result".into()),
        Status::Done => (Change::AlreadyDone, "done".into()),
        // A second send of a harmless kind does no harm: refresh lets it go again once Intune
        // shows no trace of it after the grace, without a person (docs/exactly-once.md).
        Status::Unknown if r.kind.spec().harmless() => (
            Change::Attention,
            "outcome unknown (the request may have reached Intune): run `reconcile refresh`; a second one does no harm, so it is sent again, without a person, once Intune shows no trace of it after graph.unknownGrace"
                .into(),
        ),
        Status::Unknown => (
            Change::Attention,
            "outcome unknown (the request may have reached Intune): run `reconcile refresh`; it is not re-sent until then"
                .into(),
        ),
        Status::Rejected => {
            let meaning = r.attempts.last().and_then(Attempt::refusal).map(|m| format!(" ({m})")).unwrap_or_default();
            (
                Change::Attention,
                format!(
                    "rejected{}{meaning}; once that is fixed, `reconcile state retry {} --reason \"…\"` sends it again",
                    last_error.map(|m| format!(": {m}")).unwrap_or_default(),
                    r.key.short()
                )
                .into(),
            )
        }
        Status::AwaitingApproval => (Change::Attention, awaiting(r).into()),
        s @ (Status::Failed | Status::NotSupported | Status::Canceled) => (
            Change::Attention,
            format!("{s}{}; bump spec.round to try again", last_error.map(|m| format!(": {m}")).unwrap_or_default())
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::action::{ActionKind, Collection, Selector, SelectorKind};
    use crate::core::violation::Rule;
    use crate::diag::Pos;
    use crate::ledger::Record;

    fn action(name: &str, serial: &str) -> Action {
        let selector = Selector { kind: SelectorKind::SerialNumber, value: serial.into() };
        Action {
            key: ActionKey::compute(
                ActionKind::PasscodeReset,
                &Default::default(),
                name,
                1,
                Collection::ManagedDevices,
                &selector,
            ),
            former_names: Vec::new(),
            former_keys: Vec::new(),
            kind: ActionKind::PasscodeReset,
            parameters: Default::default(),
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
        // One action per status, and one new.
        let acts: Vec<Action> = (0..10).map(|i| action("m", &format!("S{i}"))).collect();
        let statuses = Status::ALL;
        let recs: Vec<(&Action, Status)> = acts.iter().zip(statuses).collect();
        let ledger = ledger_with(&recs);
        let none = Resolutions::new();
        let p = plan(&acts, &ledger, &none, PlanOptions { report_orphans: true, rename_guard: None });
        let changes: Vec<Change> = p.entries.iter().map(|e| e.change).collect();
        use Change::*;
        assert_eq!(
            changes,
            [AlreadyDone, AlreadyDone, Attention, Attention, Attention, Attention, Attention, Send, Attention, Send]
        );
        assert_eq!(
            p.summary,
            Summary {
                to_send: 2,
                to_remove: 0,
                already_done: 2,
                orphaned: 0,
                attention: 6,
                blocked: 0,
                same_device: 0,
                adopt: 0,
                violations: 0
            }
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
        let p = plan(&both, &l, &none, PlanOptions { report_orphans: true, rename_guard: None });
        assert_eq!(p.to_send().map(|e| e.key()).collect::<Vec<_>>(), [&b.key]);
        assert_eq!(p.summary.orphaned, 1);
        assert_eq!(p.entries.last().map(Entry::key), Some(&gone.key));

        let limited = plan(&both, &l, &none, PlanOptions { report_orphans: false, rename_guard: None });
        assert_eq!(limited.summary.orphaned, 0);

        let blocked: Resolutions =
            [(b.key.clone(), Resolution::Blocked(BlockKind::NotFound, "not found".into()))].into();
        let p = plan(&both, &l, &blocked, PlanOptions { report_orphans: false, rename_guard: None });
        assert_eq!((p.summary.to_send, p.summary.blocked), (0, 1));
        // A recorded action stays what the ledger says, whatever a lookup found.
        let both_blocked: Resolutions = [
            (a.key.clone(), Resolution::Blocked(BlockKind::NotFound, "gone".into())),
            (b.key.clone(), Resolution::Blocked(BlockKind::NotFound, "gone".into())),
        ]
        .into();
        let p = plan(&both, &l, &both_blocked, PlanOptions { report_orphans: false, rename_guard: None });
        assert_eq!(p.entries[0].change, Change::AlreadyDone);
        assert_eq!(limited.summary.orphaned, 0);
    }

    #[test]
    fn a_manifest_violation_blocks_its_manifest_and_points_at_its_line() {
        let mut a = action("m", "A");
        let mut b = action("m", "B");
        let other = action("n", "C");
        (a.pos, b.pos) = (Pos::new(7, 7), Pos::new(8, 7));
        let acts = [a, b, other];
        let ledger = Ledger::empty();
        let none = Resolutions::new();
        let opts = PlanOptions { report_orphans: false, rename_guard: None };
        let at_b = crate::diag::Diagnostic::error("m.yaml", Some(Pos::new(8, 7)), "policy cooldown: too soon");
        let p = plan(&acts, &ledger, &none, opts)
            .with_violations(vec![Violation::of_manifest("m", (Rule::Cooldown, at_b.clone()))]);
        let reasons: Vec<(Change, Option<BlockKind>, &str)> =
            p.entries.iter().map(|e| (e.change, e.block, e.reason.as_ref())).collect();
        assert_eq!(
            reasons,
            [
                (
                    Change::Blocked,
                    Some(BlockKind::Policy),
                    "manifest `m` breaks policy cooldown (line 8): nothing of it is sent"
                ),
                (Change::Blocked, Some(BlockKind::Policy), "policy cooldown: too soon"),
                (Change::Send, None, "new"),
            ]
        );
        assert_eq!((p.summary.to_send, p.summary.blocked, p.summary.violations), (1, 2, 1));
        assert_eq!(p.run_violations().count(), 0);
        // A second violation at the first entry's line: that entry names it.
        let at_a = crate::diag::Diagnostic::error("m.yaml", Some(Pos::new(7, 7)), "policy allowPlatforms: iOS");
        let other_file = crate::diag::Diagnostic::error("x.yaml", Some(Pos::new(7, 7)), "policy x: elsewhere");
        let p = plan(&acts, &ledger, &none, opts).with_violations(vec![
            Violation::of_manifest("m", (Rule::Cooldown, at_b)),
            Violation::of_manifest("m", (Rule::AllowPlatforms, at_a)),
            Violation::of_manifest("m", (Rule::ProtectedDevices, other_file)),
        ]);
        assert_eq!(p.entries[0].reason, "policy allowPlatforms: iOS");
        assert_eq!(p.entries[1].reason, "policy cooldown: too soon");
    }

    #[test]
    fn likely_renames_are_blocked_only_within_the_window_and_below_a_higher_round() {
        let old = action("old", "A");
        let t0: jiff::Timestamp = "2026-11-30T08:00:00Z".parse().expect("ts");
        let mut ledger = Ledger::empty();
        let mut r = Record::new(&old, None, t0);
        r.status = Status::Accepted;
        r.attempts.push(crate::ledger::Attempt { started_at: t0, http_status: Some(204), ..Default::default() });
        ledger.records.insert(r.key.clone(), r);
        let none = Resolutions::new();
        let guard = |hours: i64| PlanOptions {
            report_orphans: true,
            rename_guard: Some(RenameGuard {
                now: t0 + jiff::SignedDuration::from_hours(hours),
                within: std::time::Duration::from_secs(24 * 3600),
            }),
        };
        let renamed = [action("new", "A")];
        let p = plan(&renamed, &ledger, &none, guard(1));
        assert_eq!((p.entries[0].change, p.entries[0].block), (Change::Blocked, Some(BlockKind::LikelyRename)));
        assert!(p.entries[0].reason.contains("formerNames: [old]"), "{}", p.entries[0].reason);
        assert_eq!(plan(&renamed, &ledger, &none, guard(24)).entries[0].change, Change::Blocked, "24h is within 24h");
        assert_eq!(plan(&renamed, &ledger, &none, guard(25)).entries[0].change, Change::Send, "older than the window");
        // An action with its own record (an earlier attempt that did not run) is not new.
        let mut own_ledger = ledger.clone();
        let mut own = Record::new(&renamed[0], None, t0);
        own.status = Status::NotExecuted;
        own_ledger.records.insert(own.key.clone(), own);
        assert_eq!(plan(&renamed, &own_ledger, &none, guard(1)).entries[0].change, Change::Send);
        let mut again = action("new", "A");
        again.round = 2;
        assert_eq!(plan(&[again], &ledger, &none, guard(1)).entries[0].change, Change::Send, "a higher round");
        let off = PlanOptions { report_orphans: true, rename_guard: None };
        assert_eq!(plan(&renamed, &ledger, &none, off).entries[0].change, Change::Send, "guard off");
    }

    #[test]
    fn scoped_plans_count_what_lies_outside() {
        let acts = [action("m", "A"), action("n", "B"), action("n", "C")];
        let ledger = Ledger::empty();
        let none = Resolutions::new();
        let opts = PlanOptions { report_orphans: false, rename_guard: None };
        let v = crate::diag::Diagnostic::error("m.yaml", None, "policy requireTicket: no ticket");
        let p = plan(&acts, &ledger, &none, opts)
            .with_violations(vec![
                Violation::of_manifest("n", (Rule::RequireTicket, v.clone())),
                Violation::of_repository((Rule::MaxActionsPerApply, v)),
            ])
            .scoped(|e| e.manifest() == "m");
        assert_eq!(p.entries.len(), 1);
        assert_eq!((p.summary.to_send, p.summary.violations), (1, 1), "the repository's violation stays");
        let outside = p.outside.expect("outside");
        assert_eq!((outside.blocked, outside.violations), (2, 1));
    }
}
