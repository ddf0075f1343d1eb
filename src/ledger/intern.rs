//! Lean records in memory: a ledger of 100,000 records holds the provenance of a few hundred
//! runs, each repeated in every attempt the run made. While a ledger is read ([`reading`]), each
//! distinct provenance is kept once and shared by the attempts that carry it, and attempt lists
//! are sized exactly. The bytes on disk are the same either way.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::Provenance;

thread_local! {
    /// The provenances seen by the read under way on this thread (`None`: no read).
    static SEEN: RefCell<Option<HashSet<Arc<Provenance>>>> = const { RefCell::new(None) };
}

/// Runs `read` (a parse on this thread) with provenances shared: each distinct one is held once.
pub(crate) fn reading<T>(read: impl FnOnce() -> T) -> T {
    struct Done(Option<HashSet<Arc<Provenance>>>);
    impl Drop for Done {
        fn drop(&mut self) {
            SEEN.with(|s| *s.borrow_mut() = self.0.take());
        }
    }
    // A read within a read (none today) shares the outer one's table.
    let outer = SEEN.with(|s| s.borrow_mut().replace(HashSet::new()));
    let _restore = Done(outer);
    read()
}

/// An attempt's provenance, the one already seen when a read is under way.
pub(super) fn provenance<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Provenance>>, D::Error> {
    let Some(p) = Option::<Provenance>::deserialize(d)? else { return Ok(None) };
    Ok(Some(SEEN.with(|s| match s.borrow_mut().as_mut() {
        Some(seen) => match seen.get(&p) {
            Some(known) => Arc::clone(known),
            None => {
                let p = Arc::new(p);
                seen.insert(Arc::clone(&p));
                p
            }
        },
        None => Arc::new(p),
    })))
}

/// A list without spare capacity (a list grows to four items on its first).
pub(super) fn exact<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Attempt;

    #[test]
    fn a_read_shares_equal_provenances_and_sizes_lists_exactly() {
        let attempt = r#"{"startedAt":"2026-11-30T10:00:00Z","clientRequestId":"00000000-0000-4000-8000-000000000001","provenance":{"ci":"local","actor":"ann@h"}}"#;
        let list = format!("[{attempt},{attempt}]");
        let parse = || serde_json::from_str::<Vec<Attempt>>(&list).expect("attempts");
        let shared = reading(parse);
        let (a, b) = (shared[0].provenance.as_ref().expect("p"), shared[1].provenance.as_ref().expect("p"));
        assert!(Arc::ptr_eq(a, b), "one provenance, held once");
        let alone = parse();
        let (a, b) = (alone[0].provenance.as_ref().expect("p"), alone[1].provenance.as_ref().expect("p"));
        assert!(!Arc::ptr_eq(a, b) && a == b, "outside a read each is its own");
        let json = format!(
            r#"{{"key":"k","kind":"PasscodeReset","manifest":"m","file":"f","round":1,"collection":"managedDevices","selector":{{"kind":"serialNumber","value":"S"}},"status":"unknown","attempts":[{attempt}],"createdAt":"2026-11-30T10:00:00Z","updatedAt":"2026-11-30T10:00:00Z"}}"#
        );
        let r: crate::ledger::Record = serde_json::from_str(&json).expect("record");
        assert_eq!(r.attempts.capacity(), 1);
        assert_eq!(serde_json::to_string(&r).expect("json"), json, "the same bytes back");
    }
}
