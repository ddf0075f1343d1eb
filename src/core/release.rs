//! The release rule: which planned actions may leave while devices are still being looked up.
//!
//! The executor looks the candidates' devices up in plan order and sends while it looks up. An
//! action may leave only once nothing that is not yet known can still stop it:
//! - nothing can (the default, [`Release::Each`]): each action leaves once its device and every
//!   earlier candidate's are known;
//! - device rules in the policy ([`Release::Manifest`]), whose violation stops a whole manifest: a
//!   manifest's actions leave once all of its devices (and every earlier one) are known;
//! - a confirmation to ask, a saved plan to judge, more candidates than the blast radius (or than
//!   a kind's limit), or a destructive action among them ([`Release::All`]): nothing leaves before
//!   every device is known (and the complete plan is confirmed, judged and counted, which the
//!   executor does before its first send). A destructive action is never streamed
//!   (docs/device-actions.md, "Risk classes").
//!
//! Lookups run at most [`LOOKAHEAD`] ahead of the sends ([`may_look_up`]).

/// How far resolution runs ahead of sending (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// An action leaves once its device and every earlier candidate's are looked up.
    Each,
    /// A manifest's actions leave once all of its devices (and every earlier one) are looked up:
    /// the policy has device rules, and a violation stops the whole manifest.
    Manifest,
    /// Nothing leaves before every device is looked up: the plan is confirmed, judged against a
    /// saved plan, or may be larger than the blast radius.
    All,
}

/// What decides the release mode of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// `apply --plan`: the complete plan is judged against a saved plan first.
    pub saved_plan: bool,
    /// The complete plan is confirmed first.
    pub confirm: bool,
    /// The most actions the run may send (the stricter blast radius), if any.
    pub limit: Option<usize>,
    /// How many candidates the plan made before any lookup has.
    pub candidates: usize,
    /// The policy has device rules (a violation stops a whole manifest).
    pub device_rules: bool,
    /// A candidate is destructive (wipe, retire, fresh start): never streamed.
    pub destructive: bool,
    /// More candidates of a kind (or of the destructive class) than its limit.
    pub over_kind_limit: bool,
}

impl Release {
    /// The release mode of a run: the strictest that what may still stop an action requires.
    pub(crate) fn of(mode: Mode) -> Self {
        let over = mode.limit.is_some_and(|max| mode.candidates > max) || mode.over_kind_limit;
        if mode.saved_plan || mode.confirm || over || mode.destructive {
            Release::All
        } else if mode.device_rules {
            Release::Manifest
        } else {
            Release::Each
        }
    }
}

/// The release rule over one run's candidates, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gate {
    /// Candidate `i` may leave once candidates `..ends[i]` are looked up.
    ends: Vec<usize>,
}

impl Gate {
    /// The gate of candidates whose manifests are `manifests`, in plan order (a manifest's
    /// candidates are one run of them).
    pub(crate) fn new<M: PartialEq>(release: Release, manifests: &[M]) -> Self {
        let n = manifests.len();
        let ends = match release {
            Release::Each => (1..=n).collect(),
            Release::Manifest => {
                let mut ends = vec![0; n];
                let mut start = 0;
                for i in 1..=n {
                    if i == n || manifests[i] != manifests[start] {
                        ends[start..i].fill(i);
                        start = i;
                    }
                }
                ends
            }
            Release::All => vec![n; n],
        };
        Gate { ends }
    }

    /// How many leading candidates may leave when the first `looked_up` have their device known.
    pub(crate) fn released(&self, looked_up: usize) -> usize {
        if looked_up >= self.ends.len() {
            return self.ends.len();
        }
        (0..=looked_up).rev().find(|&r| r == 0 || self.ends[r - 1] <= looked_up).unwrap_or(0)
    }
}

/// Lookups under way plus actions released but not yet given a send slot, at most: lookups wait
/// beyond it, so reads run just ahead of writes instead of competing with them for Intune's
/// request limit.
pub(crate) const LOOKAHEAD: usize = 256;

/// Whether one more lookup may start, with `in_flight` lookups under way and `backlog` released
/// actions without a send slot. When not `paced` (nothing leaves before every device is known),
/// lookups never wait.
pub(crate) fn may_look_up(paced: bool, in_flight: usize, backlog: usize) -> bool {
    !paced || in_flight + backlog < LOOKAHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candidates `manifests` (one letter per candidate: its manifest), `known` (`K` known, `.`
    /// not yet, per candidate), the mode, and how many leading candidates may leave.
    const TABLE: &[(&str, &str, Release, usize)] = &[
        // Nothing known, nothing leaves.
        ("aab", "...", Release::Each, 0),
        ("aab", "...", Release::Manifest, 0),
        ("aab", "...", Release::All, 0),
        // Each: every known leading candidate leaves.
        ("aab", "K..", Release::Each, 1),
        ("aab", "KK.", Release::Each, 2),
        ("aab", "KKK", Release::Each, 3),
        // A later candidate known out of order does not release it before the earlier ones.
        ("aab", ".KK", Release::Each, 0),
        ("aab", "K.K", Release::Each, 1),
        // Manifest: a manifest leaves once all its devices are known.
        ("aab", "K..", Release::Manifest, 0),
        ("aab", "KK.", Release::Manifest, 2),
        ("aab", "KKK", Release::Manifest, 3),
        ("aabbc", "KKK..", Release::Manifest, 2),
        ("aabbc", "KKKK.", Release::Manifest, 4),
        ("abc", "K..", Release::Manifest, 1),
        ("abc", "KK.", Release::Manifest, 2),
        ("abc", "K.K", Release::Manifest, 1),
        ("aaa", "KK.", Release::Manifest, 0),
        ("aaa", "KKK", Release::Manifest, 3),
        // A manifest that comes back later in the order is a run of its own.
        ("aba", "KK.", Release::Manifest, 2),
        // All: nothing leaves before every device is known.
        ("aab", "K..", Release::All, 0),
        ("aab", "KK.", Release::All, 0),
        ("abc", "KK.", Release::All, 0),
        ("aab", "KKK", Release::All, 3),
        // No candidates: nothing to release.
        ("", "", Release::Each, 0),
        ("", "", Release::Manifest, 0),
        ("", "", Release::All, 0),
    ];

    #[test]
    fn release_table() {
        for &(manifests, known, release, expected) in TABLE {
            let manifests: Vec<char> = manifests.chars().collect();
            let looked_up = known.chars().take_while(|&c| c == 'K').count();
            let released = Gate::new(release, &manifests).released(looked_up);
            assert_eq!(released, expected, "{release:?} over {manifests:?} with {known:?} known");
        }
    }

    #[test]
    fn release_never_more_than_looked_up_nor_fewer_as_lookups_advance() {
        for release in [Release::Each, Release::Manifest, Release::All] {
            for manifests in ["a", "ab", "aabbbc", "abab", "aaaa"] {
                let manifests: Vec<char> = manifests.chars().collect();
                let gate = Gate::new(release, &manifests);
                let mut before = 0;
                for looked_up in 0..=manifests.len() {
                    let released = gate.released(looked_up);
                    assert!(released <= looked_up, "{release:?} {manifests:?} {looked_up}");
                    assert!(released >= before, "{release:?} {manifests:?} {looked_up}");
                    before = released;
                }
                assert_eq!(before, manifests.len(), "{release:?} {manifests:?}: all leave once all are known");
            }
        }
    }

    /// Saved plan, confirm, limit, candidates, device rules, destructive, over a kind's limit;
    /// and the mode.
    type ModeRow = (bool, bool, Option<usize>, usize, bool, bool, bool, Release);

    #[test]
    fn release_mode_table() {
        let table: &[ModeRow] = &[
            (false, false, None, 5, false, false, false, Release::Each),
            (false, false, None, 5, true, false, false, Release::Manifest),
            (true, false, None, 5, false, false, false, Release::All),
            (true, false, None, 5, true, false, false, Release::All),
            (false, true, None, 5, false, false, false, Release::All),
            (false, true, None, 5, true, false, false, Release::All),
            // Within the blast radius: the limit cannot be exceeded, so it does not hold back.
            (false, false, Some(5), 5, false, false, false, Release::Each),
            (false, false, Some(5), 5, true, false, false, Release::Manifest),
            (false, false, Some(6), 5, false, false, false, Release::Each),
            // Beyond it: the complete plan is counted first.
            (false, false, Some(4), 5, false, false, false, Release::All),
            (false, false, Some(4), 5, true, false, false, Release::All),
            (false, false, Some(0), 1, false, false, false, Release::All),
            (false, false, Some(0), 0, false, false, false, Release::Each),
            // A destructive candidate: nothing leaves before the whole plan is known, whatever
            // else holds (the class rule, docs/device-actions.md).
            (false, false, None, 1, false, true, false, Release::All),
            (false, false, None, 5, true, true, false, Release::All),
            (false, false, Some(5), 5, false, true, false, Release::All),
            (false, true, None, 5, false, true, false, Release::All),
            // More candidates of a kind than its own limit: counted first.
            (false, false, None, 2, false, false, true, Release::All),
            (false, false, None, 2, true, false, true, Release::All),
            (false, false, Some(9), 2, false, false, true, Release::All),
        ];
        for &(saved_plan, confirm, limit, candidates, device_rules, destructive, over_kind_limit, expected) in table {
            let mode = Mode { saved_plan, confirm, limit, candidates, device_rules, destructive, over_kind_limit };
            assert_eq!(Release::of(mode), expected, "{mode:?}");
        }
    }

    /// (paced, lookups in flight, backlog) → may one more lookup start.
    #[test]
    fn release_lookahead_table() {
        let table: &[(bool, usize, usize, bool)] = &[
            (true, 0, 0, true),
            (true, LOOKAHEAD - 1, 0, true),
            (true, 0, LOOKAHEAD - 1, true),
            (true, LOOKAHEAD, 0, false),
            (true, 0, LOOKAHEAD, false),
            (true, LOOKAHEAD / 2, LOOKAHEAD / 2, false),
            (true, LOOKAHEAD / 2, LOOKAHEAD / 2 - 1, true),
            (false, LOOKAHEAD, LOOKAHEAD, true),
            (false, 0, 0, true),
        ];
        for &(paced, in_flight, backlog, expected) in table {
            assert_eq!(may_look_up(paced, in_flight, backlog), expected, "{paced} {in_flight} {backlog}");
        }
    }
}
