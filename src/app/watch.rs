//! `watch`: the watcher's loop. The working directory is watched recursively (debounced, so an
//! editor's save-by-rename or a burst of saves is one change); only YAML files and the config
//! count, and hidden folders (the ledger's `.reconcile/`, `.git/`) are ignored, so the
//! reconciler's own writes never wake it. Watching the folder rather than each manifest also
//! picks up a folder that is deleted and created again.
//!
//! # Expected flow
//! 1. `watch --apply` against a real tenant: [`require_ledger`] refuses a ledger that does not
//!    exist, at once.
//! 2. [`run`] starts the file watcher and one [`Session`] for the watcher's life, and calls the
//!    caller's cycle (a plan, or an apply and a refresh) at start, after every change once the
//!    files have been quiet for the debounce time, and with `--apply` at least every interval.
//! 3. The loop ends when `stop` is set (the cycle under way finishes first).
//!
//! # Guarantees
//! - Failed cycles in a row back off as the retry policy says (5 s doubling to 5 min); a
//!   success resets the backoff.
//! - The ledger lock is held only during a cycle.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer, new_debouncer_opt};

use super::Session;
use crate::settings::Overrides;

/// What to watch and how often to act.
#[derive(Debug, Clone)]
pub(crate) struct WatchOptions {
    /// The folder watched (the working directory).
    pub root: PathBuf,
    /// The config file: a change to it counts.
    pub config: PathBuf,
    /// Be the reconciler: a cycle at least every `interval`.
    pub apply: bool,
    pub interval: Duration,
    /// How long to wait for more saves before acting on a change.
    pub debounce: Duration,
    /// Poll the files this often instead of using change events.
    pub poll: Option<Duration>,
}

/// A ledger that does not exist is refused at once (docs/contract.md, Ledger), never retried: a
/// failed download must not look like "nothing was ever sent". A broken config is left to each
/// cycle to report. Only the config is read here: the manifests are the first cycle's.
pub(crate) fn require_ledger(overrides: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    if let Ok(settings) = super::project::settings_only(overrides, env) {
        let store = super::connect::open_store(&settings, env)?;
        crate::ledger::block_on(store.load_existing())??;
    }
    Ok(())
}

/// Calls `cycle` (with the session and the cycle's number; it returns whether it succeeded) as
/// the module docs say, until `stop` is set.
pub(crate) fn run(
    opts: &WatchOptions,
    stop: &AtomicBool,
    cycle: &mut dyn FnMut(&mut Session, u64) -> bool,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<DebounceEventResult>();
    let _watcher = start_watcher(&opts.root, opts, tx)?;
    tracing::info!(root = %opts.root.display(), apply = opts.apply, "watching for changes");
    // One runtime and one Graph client for the watcher's life: the pacer's learned slow-down and
    // the token outlive a cycle (a new client is made only when the config names another).
    let mut session = Session::new()?;
    let mut n = 0u64;
    // Failed cycles in a row: they back off as the retry policy says.
    let mut failures = 0u32;
    let mut next_due = Instant::now();
    let mut changed = true;
    // A change is acted on once the files have been quiet for the debounce time, so a burst of
    // saves is one cycle however the watcher batches its events.
    let mut quiet_from = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if (changed && Instant::now() >= quiet_from) || Instant::now() >= next_due {
            n += 1;
            let started = Instant::now();
            let ok = cycle(&mut session, n);
            let trigger = match (n, changed) {
                (1, _) => "start",
                (_, true) => "change",
                (_, false) => "interval",
            };
            tracing::info!(cycle = n, trigger, ok, ms = started.elapsed().as_millis() as u64, "cycle");
            changed = false;
            let backoff = if ok { Duration::ZERO } else { crate::core::retry::Policy::WATCH.exponential(failures) };
            failures = if ok { 0 } else { failures.saturating_add(1) };
            next_due = Instant::now()
                + if opts.apply {
                    if ok { opts.interval } else { backoff }
                } else {
                    Duration::from_secs(3600 * 24 * 365)
                };
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(events)) => {
                // Reading the manifests (every cycle does) raises access events: only changes count.
                let changes = events.iter().filter(|e| is_change(&e.event.kind));
                if changes.flat_map(|e| e.paths.iter()).any(|p| relevant(&opts.root, &opts.config, p)) {
                    changed = true;
                    quiet_from = Instant::now() + opts.debounce;
                }
            }
            Ok(Err(errors)) => {
                for e in errors {
                    tracing::warn!(error = %e, "file watcher");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(anyhow::anyhow!("the file watcher stopped")),
        }
    }
    tracing::info!(cycles = n, "stopped");
    Ok(())
}

/// Content, names or existence changed (not an access, not metadata such as access times).
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        _ => false,
    }
}

/// Whether a changed path can change a plan: a YAML file or the config, outside hidden folders.
fn relevant(root: &Path, config: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    if rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
        return false;
    }
    let is_yaml = rel.extension().is_some_and(|x| x == "yaml" || x == "yml");
    // A removed folder (no extension) may have held manifests; a removed ledger journal or lock
    // (`.journal`, `.lock`) never did.
    is_yaml || rel == config || path.is_dir() || (!path.exists() && rel.extension().is_none())
}

fn start_watcher(
    root: &Path,
    opts: &WatchOptions,
    tx: mpsc::Sender<DebounceEventResult>,
) -> anyhow::Result<Box<dyn std::any::Any>> {
    let debounce = opts.debounce.max(Duration::from_millis(10));
    let poll = |every: Duration, tx| -> anyhow::Result<Box<dyn std::any::Any>> {
        let config = notify::Config::default().with_poll_interval(every).with_compare_contents(true);
        let mut d = new_debouncer_opt::<_, notify::PollWatcher, notify_debouncer_full::NoCache>(
            debounce,
            None,
            tx,
            notify_debouncer_full::NoCache,
            config,
        )?;
        d.watch(root, RecursiveMode::Recursive)?;
        Ok(Box::new(d))
    };
    if let Some(every) = opts.poll {
        tracing::info!(every = %crate::duration::HumanDuration(every), "polling for changes");
        return poll(every, tx);
    }
    let events = new_debouncer(debounce, None, tx.clone()).and_then(|mut d| {
        d.watch(root, RecursiveMode::Recursive)?;
        Ok(d)
    });
    match events {
        Ok(d) => Ok(Box::new(d)),
        Err(e) => {
            // No change events here (inotify limits, some network file systems): poll instead.
            tracing::warn!(error = %e, "no file change events; polling every 2s instead");
            poll(Duration::from_secs(2), tx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yaml_the_config_and_folders_outside_hidden_ones_count() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("manifests")).expect("mkdir");
        let config = Path::new("reconcile.yaml");
        let yes = |p: &str| relevant(root, config, &root.join(p));
        assert!(yes("manifests/a.yaml") && yes("b.yml") && yes("reconcile.yaml"));
        assert!(yes("manifests"), "a folder may hold manifests");
        assert!(yes("gone"), "a removed path without extension may have been a folder");
        assert!(!yes(".reconcile/state.json") && !yes(".git/index") && !yes("manifests/.a.yaml.swp"));
        assert!(!yes("notes.txt") && !yes(".reconcile/state.journal"));
    }

    #[test]
    fn reading_a_file_is_no_change() {
        use notify::EventKind;
        use notify::event::{AccessKind, CreateKind, MetadataKind, ModifyKind};
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))));
        assert!(!is_change(&EventKind::Access(AccessKind::Any)));
    }
}
