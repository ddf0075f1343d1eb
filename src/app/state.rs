//! `state …`: the ledger read, decided about by hand, archived, copied and unlocked, each under
//! the lock where a writer could otherwise interleave. (`state adopt` is [`super::adopt`].)

use std::time::Duration;

use super::Error;
use crate::ledger::{Ledger, Location, PersonDecision, Record, StateError, Store, block_on};
use crate::settings::{Overrides, Settings};

/// The ledger the settings name (the simulated one with `simulate`), not yet read.
#[derive(Debug)]
pub(crate) struct Opened {
    settings: Settings,
    store: Store,
    simulate: bool,
    lock_timeout: Duration,
    /// When a person's decision is recorded.
    clock: crate::clock::SharedClock,
}

/// Reads the config and opens its ledger (nothing is read from it yet).
pub(crate) fn open(
    overrides: &Overrides,
    simulate: bool,
    lock_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Opened, Error> {
    let settings = super::project::settings_only(overrides, env)?;
    let store = if simulate {
        Store::from(crate::ledger::LocalStore::open(settings.simulated_state()).map_err(anyhow::Error::from)?)
    } else {
        super::connect::open_store(&settings, env)?
    };
    Ok(Opened { settings, store, simulate, lock_timeout, clock: crate::clock::system() })
}

impl Opened {
    pub(crate) fn location(&self) -> String {
        self.store.location().to_string()
    }

    /// A person's decision about one action (`resolve`, `retry`), recorded with who and why.
    pub(crate) fn decide(
        &self,
        key: &str,
        decision: PersonDecision,
        reason: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Record> {
        let person = crate::ci::provenance::person(env);
        Ok(block_on(self.store.decide_by_person(self.lock_timeout, key, decision, &person, reason, self.clock.now()))??)
    }

    /// Archives the actions of `keys`; each with whether this call archived it.
    pub(crate) fn archive(
        &self,
        keys: &[String],
        reason: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Vec<(Record, bool)>> {
        let person = crate::ci::provenance::person(env);
        Ok(block_on(self.store.archive(self.lock_timeout, keys, &person, reason, self.clock.now()))??)
    }

    /// Where `state push DEST` copies to: a Blob URL or a path.
    pub(crate) fn destination(&self, dest: &str) -> anyhow::Result<Location> {
        match Location::parse(dest, self.settings.graph.cloud) {
            Ok(Some(url)) => Ok(Location::Blob(Box::new(url))),
            Ok(None) => Ok(Location::Local(dest.into())),
            Err(e) => Err(anyhow::anyhow!("state push: {e}")),
        }
    }

    /// Copies the ledger to `dest` (`verb`: the command, named in the lock); the number of
    /// records copied.
    pub(crate) fn copy_to(
        &self,
        dest: &Location,
        verb: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<u64> {
        let to = super::connect::open_store_at(&self.settings, dest, env)?;
        if to.same_ledger(&self.store) {
            return Err(anyhow::anyhow!("`{dest}` is the ledger itself"));
        }
        let timeout = self.lock_timeout;
        // The source is read under its lock, the one an apply holds: a copy taken while an apply
        // writes would lack what it records next, and the copy's next apply would send it again.
        // It is held until the copy is written, so nothing is recorded in the source meanwhile.
        Ok(block_on(async {
            let held = self.store.lock(timeout, verb, None).await?;
            let copied = to.import(held.ledger(), timeout).await;
            let released = held.commit().await;
            let n = copied?;
            released?;
            Ok::<_, StateError>(n)
        })??)
    }

    /// Releases a blob ledger's lock by its ID; who held it.
    pub(crate) fn unlock(&self, id: &str) -> anyhow::Result<String> {
        Ok(block_on(self.store.unlock(id))??.to_string())
    }

    /// The ledger; `consistent`: read under the lock, the ledger at one instant (an export).
    /// `verb` is the subcommand, named in the hint when there is no ledger.
    pub(crate) fn read(&self, consistent: bool, verb: &str) -> anyhow::Result<Ledger> {
        let timeout = self.lock_timeout;
        let read = if consistent {
            block_on(async {
                let held = self.store.lock(timeout, "reconcile state export", None).await?;
                let ledger = held.ledger().clone();
                held.commit().await?;
                Ok::<_, StateError>(ledger)
            })?
        } else {
            block_on(self.store.load_existing())?
        };
        match read {
            Err(StateError::Missing { path }) => Err(missing(&self.settings, self.simulate, &path, verb)),
            other => Ok(other?),
        }
    }
}

/// No ledger to read at `path`: what creates it. A newcomer who has only tried `--simulate` has a
/// simulated ledger and no real one; `reconcile init` alone would send them the wrong way.
fn missing(settings: &Settings, simulate: bool, path: &Location, verb: &str) -> anyhow::Error {
    if simulate {
        return anyhow::anyhow!(
            "there is no simulated ledger at `{}`\nhint: a `--simulate` run creates it: `reconcile apply --simulate`",
            path
        );
    }
    let simulated = settings.simulated_state();
    if simulated.is_file() {
        return anyhow::anyhow!(
            "there is no ledger at `{}`, only the simulated one `{}`\nhint: `reconcile state --simulate {verb}` reads what `--simulate` runs recorded; for a real tenant, run `reconcile init` once to create the ledger (or fix --state, -C or RECONCILE_STATE if it should exist)",
            path,
            simulated.display()
        );
    }
    StateError::Missing { path: path.clone() }.into()
}
