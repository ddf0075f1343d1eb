//! Helpers shared by the end-to-end tests: temp repositories ([`repo`]), the real binary
//! ([`spawn`]), the simulated fleet ([`fleet`]), Azurite ([`azurite`]) and the tests' own HTTP
//! ([`http`], [`proxy`]).

pub(crate) mod azurite;
pub(crate) mod fleet;
pub(crate) mod http;
pub(crate) mod proxy;
pub(crate) mod repo;
pub(crate) mod spawn;

use std::time::Duration;

pub(crate) use fleet::*;
pub(crate) use repo::{Repo, examples};
pub(crate) use spawn::{StandaloneSim, hermetic};

/// Waits until `happened` (an event the simulator, a file or the binary's output shows), and fails
/// the test after 20 s: the tests synchronise on what happened, never on how long it took.
pub(crate) fn wait_until(what: &str, happened: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !happened() {
        assert!(start.elapsed() < Duration::from_secs(20), "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lock ID a refusal names (`… lock ID ID …`): what `reconcile state unlock` takes.
pub(crate) fn lock_id(message: &str) -> String {
    message
        .split("lock ID ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .map(|id| id.trim_end_matches([',', ';', ')']).to_owned())
        .unwrap_or_else(|| panic!("no lock ID in: {message}"))
}
