//! The rules that decide between two copies of a record (a snapshot's and a journal's): written
//! once, used by every home and by `state push` / `state pull`.
//!
//! Attempts are compared by `client-request-id`, so an intent is never lost: a copy that holds
//! every attempt of the other and more is newer; with the same attempts, the later write is.

use std::collections::BTreeMap;

use super::location::Location;
use super::{Ledger, Record, StateError, Status};
use crate::core::action::ActionKey;

/// Refuses a ledger bound to another tenant.
pub(crate) fn check_tenant(path: &Location, ledger: &Ledger, tenant: Option<&str>) -> Result<(), StateError> {
    match (&ledger.tenant, tenant) {
        (Some(l), Some(t)) if !l.eq_ignore_ascii_case(t) => {
            Err(StateError::WrongTenant { path: path.clone(), ledger: l.clone(), current: t.to_owned() })
        }
        _ => Ok(()),
    }
}

/// Merges a journal that does not extend the snapshot (see the module docs): records the
/// snapshot lacks or has an older version of are taken from the journal.
pub(crate) fn merge_stale(
    ledger: &mut Ledger,
    puts: Vec<Record>,
    base_serial: u64,
    journal: &Location,
    diverged: &dyn Fn(String, &'static str) -> StateError,
) -> Result<(), StateError> {
    // The journal's last word on every record it touched.
    let mut latest: BTreeMap<ActionKey, Record> = BTreeMap::new();
    for r in puts {
        latest.insert(r.key.clone(), r);
    }
    let mut merged = 0;
    for (key, j) in latest {
        match ledger.records.get(&key) {
            None => {}
            Some(s) => match newer(s, &j) {
                Some(Newer::Snapshot) => continue,
                Some(Newer::Journal) => {}
                None => {
                    return Err(diverged(
                        format!("action {} has attempts in each that the other lacks", key.short()),
                        "both copies may hold requests that were sent: merge them by hand with `reconcile state show` on each, or ask for help",
                    ));
                }
            },
        }
        tracing::warn!(
            key = key.short(),
            journal = %journal,
            "merging a record the ledger file lacked from a journal that did not extend it"
        );
        ledger.records.insert(key, j);
        merged += 1u64;
    }
    ledger.serial = ledger.serial.max(base_serial) + merged;
    Ok(())
}

/// Which of two versions of one record is newer, when one extends the other; `None` when they
/// diverged. Attempts are compared by `client-request-id`: an intent is never lost.
pub(crate) enum Newer {
    Snapshot,
    Journal,
}

pub(crate) fn newer(snapshot: &Record, journal: &Record) -> Option<Newer> {
    let ids = |r: &Record| r.attempts.iter().map(|a| a.client_request_id).collect::<Vec<_>>();
    let (s, j) = (ids(snapshot), ids(journal));
    if s.len() > j.len() && s.starts_with(&j) {
        return Some(Newer::Snapshot);
    }
    if j.len() > s.len() && j.starts_with(&s) {
        return Some(Newer::Journal);
    }
    if s != j {
        return None;
    }
    // The same attempts: the later write knows more (an outcome after an intent, a refresh).
    if journal.updated_at > snapshot.updated_at { Some(Newer::Journal) } else { Some(Newer::Snapshot) }
}

/// Merges an entry older than the snapshot: left by a crash between a compaction's snapshot and
/// its tombstones (the snapshot holds it already), or a late write into a freed name. Nothing
/// is refused: a record the snapshot lacks is taken, a newer one too, and one that diverged keeps
/// the snapshot's attempts plus the entry's others; if the snapshot had it `not-executed`, it
/// becomes `unknown`, since the entry's attempt may have been sent (`refresh` decides).
pub(crate) fn merge_late(ledger: &mut Ledger, records: Vec<Record>, base_serial: u64, entry: &str) {
    let mut latest: BTreeMap<ActionKey, Record> = Default::default();
    for r in records {
        latest.insert(r.key.clone(), r);
    }
    let mut merged = 0;
    for (key, j) in latest {
        let next = match ledger.records.get(&key) {
            None => j,
            Some(s) => match newer(s, &j) {
                Some(Newer::Snapshot) => continue,
                Some(Newer::Journal) => j,
                None => {
                    let mut both = s.clone();
                    for a in j.attempts {
                        if !both.attempts.iter().any(|b| b.client_request_id == a.client_request_id) {
                            both.attempts.push(a);
                        }
                    }
                    both.attempts.sort_by_key(|a| a.started_at);
                    // Awaiting approval is "not executed" too: the entry's attempt may be a re-send.
                    if matches!(both.status, Status::NotExecuted | Status::AwaitingApproval) {
                        both.status = Status::Unknown;
                    }
                    both.updated_at = both.updated_at.max(j.updated_at);
                    tracing::warn!(
                        key = key.short(),
                        entry,
                        status = %both.status,
                        "a journal entry older than the ledger's snapshot disagrees with it (a late write from a run that had lost the lock?): keeping the attempts of both; `refresh` settles an unknown one from Intune"
                    );
                    both
                }
            },
        };
        tracing::warn!(key = key.short(), entry, "merging a record the snapshot lacked from an older journal entry");
        ledger.records.insert(key, next);
        merged += 1u64;
    }
    ledger.serial = ledger.serial.max(base_serial) + merged;
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::ledger::tests::record;

    #[test]
    fn newer_compares_attempts_then_update_time() {
        let with = |ids: &[u128], updated: i64| {
            let mut r = record("m", "A", Status::Unknown);
            r.attempts = ids
                .iter()
                .map(|i| crate::ledger::Attempt { client_request_id: Uuid::from_u128(*i), ..Default::default() })
                .collect();
            r.updated_at = jiff::Timestamp::from_second(updated).expect("ts");
            r
        };
        let is = |x: Option<Newer>| match x {
            Some(Newer::Snapshot) => "snapshot",
            Some(Newer::Journal) => "journal",
            None => "diverged",
        };
        assert_eq!(is(newer(&with(&[1, 2], 0), &with(&[1], 9))), "snapshot");
        assert_eq!(is(newer(&with(&[1], 9), &with(&[1, 2], 0))), "journal");
        assert_eq!(is(newer(&with(&[], 0), &with(&[1], 0))), "journal");
        assert_eq!(is(newer(&with(&[1], 0), &with(&[], 0))), "snapshot");
        assert_eq!(is(newer(&with(&[1, 2], 0), &with(&[1, 3], 0))), "diverged");
        assert_eq!(is(newer(&with(&[1, 2], 0), &with(&[3], 0))), "diverged");
        assert_eq!(is(newer(&with(&[1], 5), &with(&[1], 6))), "journal", "same attempts: the later write");
        assert_eq!(is(newer(&with(&[1], 6), &with(&[1], 5))), "snapshot");
        assert_eq!(is(newer(&with(&[1], 5), &with(&[1], 5))), "snapshot");
    }
}
