//! `reconcile state …`: inspect the ledger, decide about one action by hand, move the ledger
//! between a file and a blob, release a blob ledger's lock.

use std::io::Write;

use anyhow::Context as _;
use clap::Subcommand;

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::ledger::{Location, PersonDecision, block_on};
use crate::render;
use crate::settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum StateFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ExportFormat {
    /// One row per attempt, for spreadsheets (cells that a spreadsheet would run as a formula
    /// are prefixed with `'`).
    Csv,
    /// The whole ledger, versioned.
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct StateArgs {
    /// The simulated ledger (the one `--simulate` runs write).
    #[arg(long, global = true)]
    pub simulate: bool,
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum StateCommand {
    /// List every action in the ledger: status, last attempt, device, manifest (archived ones
    /// marked).
    List {
        #[arg(long, value_enum, default_value_t = StateFormat::Text)]
        format: StateFormat,
        /// Only the archived actions (`state archive`).
        #[arg(long)]
        archived: bool,
    },
    /// Show one action and all its attempts (a unique key prefix is enough).
    Show {
        key: String,
        #[arg(long, value_enum, default_value_t = StateFormat::Text)]
        format: StateFormat,
    },
    /// Every action and attempt with where it came from (commit, PR, CI run, actor), for auditors.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
    },
    /// Decide an `unknown` action by hand, after checking the device (recorded with who and why).
    Resolve {
        key: String,
        /// What happened: `done` (the reset took effect) or `not-executed` (it never did; the next
        /// apply sends it).
        #[arg(long = "as", value_enum, value_name = "OUTCOME")]
        outcome: ResolveAs,
        /// Why (recorded in the ledger).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Make one `rejected` action sendable again, without bumping `round` for its whole manifest.
    Retry {
        key: String,
        /// Why (recorded in the ledger).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Record, as the manifest action KEY's, a passcode reset made outside reconcile (the Intune
    /// portal, a script): Intune must show one that no record accounts for. Nothing is sent.
    Adopt {
        /// The action's key as `reconcile plan` shows it (a unique prefix is enough).
        key: String,
        /// Why (recorded in the ledger), e.g. the ticket of the reset made in the portal.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// How far back the reset may be.
        #[arg(long, value_name = "DURATION", default_value = "720h")]
        within: crate::duration::HumanDuration,
    },
    /// Archive orphaned actions (no manifest asks for them any more): plans stop showing them.
    /// They stay in the ledger for exactly-once: asked for again, an archived action is what its
    /// status says (a done reset is never sent again). Recorded with who, when and why.
    Archive {
        /// The actions' keys (a unique prefix of 4+ hex digits is enough).
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// Why (recorded in the ledger).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Copy the ledger to DEST (an Azure Blob URL, or a path): to a new location, or over a copy
    /// of the same ledger that this one extends (like `terraform init -migrate-state`).
    Push {
        #[arg(value_name = "DEST")]
        dest: String,
    },
    /// Copy the ledger into the local FILE: a new file, or a copy of the same ledger that this one
    /// extends (like `terraform state pull`).
    Pull {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Release the lock of a blob ledger whose holder is certainly dead (Terraform's
    /// `force-unlock`). ID is the lock ID named by the run that was refused. A lock nobody renews
    /// also expires by itself after 60 s.
    Unlock {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ResolveAs {
    Done,
    NotExecuted,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(g: &GlobalArgs, args: StateArgs) -> CmdResult {
    let cmd = args.command;
    if let StateCommand::Adopt { key, reason, within } = &cmd {
        return adopt(g, args.simulate, key, reason.as_deref(), within.0);
    }
    let mut diags = crate::diag::Diagnostics::default();
    let settings = settings::load(&g.overrides(), &env, &mut diags);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let store = if args.simulate {
        crate::ledger::Store::from(
            crate::ledger::LocalStore::open(settings.simulated_state()).map_err(anyhow::Error::from)?,
        )
    } else {
        crate::app::connect::open_store(&settings, &env)?
    };
    let timeout = g.lock_timeout.map(|d| d.0).unwrap_or_default();
    let decision = match &cmd {
        StateCommand::Resolve { key, outcome, reason } => Some((
            key,
            match outcome {
                ResolveAs::Done => PersonDecision::ResolveDone,
                ResolveAs::NotExecuted => PersonDecision::ResolveNotExecuted,
            },
            reason,
        )),
        StateCommand::Retry { key, reason } => Some((key, PersonDecision::Retry, reason)),
        _ => None,
    };
    if let Some((key, decision, reason)) = decision {
        let r =
            block_on(store.decide_by_person(timeout, key, decision, &crate::ci::provenance::person(&env), reason))??;
        say!(
            "{} {} {} {} is now `{}` (recorded with your reason).",
            r.key.short(),
            r.manifest,
            r.selector,
            r.managed_device_id.as_deref().unwrap_or("-"),
            r.status
        );
        if r.status == crate::ledger::Status::NotExecuted {
            say!("The next `reconcile apply` sends it.");
        }
        return Ok(());
    }
    if let StateCommand::Archive { keys, reason } = &cmd {
        let archived = block_on(store.archive(timeout, keys, &crate::ci::provenance::person(&env), reason))??;
        for (r, changed) in &archived {
            let what = if *changed {
                "is archived (recorded with your reason): plans no longer show it".to_owned()
            } else {
                let a = r.archived.as_ref().map(|a| format!(" by {} at {}", a.by, crate::duration::at_second(a.at)));
                format!("was archived already{}; left as it was", a.unwrap_or_default())
            };
            let line = format!("{} {} {} ({}) {what}.", r.key.short(), r.manifest, r.selector, r.status);
            say!("{}", crate::diag::safe::text(&line));
        }
        return Ok(());
    }
    let dest = match &cmd {
        StateCommand::Push { dest } => Some(match Location::parse(dest, settings.graph.cloud) {
            Ok(Some(url)) => Location::Blob(Box::new(url)),
            Ok(None) => Location::Local(dest.into()),
            Err(e) => return Err(anyhow::anyhow!("state push: {e}").into()),
        }),
        StateCommand::Pull { file } => Some(Location::Local(file.clone())),
        _ => None,
    };
    if let Some(dest) = dest {
        let to = crate::app::connect::open_store_at(&settings, &dest, &env)?;
        if to.same_ledger(&store) {
            return Err(anyhow::anyhow!("`{dest}` is the ledger itself").into());
        }
        let verb =
            if matches!(cmd, StateCommand::Push { .. }) { "reconcile state push" } else { "reconcile state pull" };
        // The source is read under its lock, the one an apply holds: a copy taken while an apply
        // writes would lack what it records next, and the copy's next apply would send it again.
        // It is held until the copy is written, so nothing is recorded in the source meanwhile.
        let n = block_on(async {
            let held = store.lock(timeout, verb, None).await?;
            let copied = to.import(held.ledger(), timeout).await;
            let released = held.commit().await;
            let n = copied?;
            released?;
            Ok::<_, crate::ledger::StateError>(n)
        })??;
        say!("Copied {n} records from `{}` to `{dest}`.", store.location());
        return Ok(());
    }
    if let StateCommand::Unlock { id } = &cmd {
        let holder = block_on(store.unlock(id))??;
        say!("Released the lock of `{}` held by {holder}.", store.location());
        return Ok(());
    }
    let read = if matches!(cmd, StateCommand::Export { .. }) {
        // An export is the ledger at one instant: read under the lock, not beside a writer.
        block_on(async {
            let held = store.lock(timeout, "reconcile state export", None).await?;
            let ledger = held.ledger().clone();
            held.commit().await?;
            Ok::<_, crate::ledger::StateError>(ledger)
        })?
    } else {
        block_on(store.load_existing())?
    };
    let ledger = match read {
        Err(crate::ledger::StateError::Missing { path }) => {
            return Err(missing(&settings, args.simulate, &path, cmd.name()).into());
        }
        other => other?,
    };
    let mut out = std::io::BufWriter::new(crate::diag::safe::stdout());
    match cmd {
        StateCommand::List { format: StateFormat::Text, archived } => {
            render::state::list_text(&mut out, &only_archived(ledger, archived))
        }
        StateCommand::List { format: StateFormat::Json, archived } => {
            render::state::list_json(&mut out, &only_archived(ledger, archived))
        }
        StateCommand::Export { format: ExportFormat::Csv } => render::state::export_csv(&mut out, &ledger),
        StateCommand::Export { format: ExportFormat::Json } => render::state::list_json(&mut out, &ledger),
        StateCommand::Show { key, format } => {
            let record = ledger.find(&key)?;
            match format {
                StateFormat::Text => render::state::show_text(&mut out, record),
                StateFormat::Json => render::state::show_json(&mut out, record),
            }
        }
        StateCommand::Resolve { .. }
        | StateCommand::Retry { .. }
        | StateCommand::Adopt { .. }
        | StateCommand::Archive { .. }
        | StateCommand::Push { .. }
        | StateCommand::Pull { .. }
        | StateCommand::Unlock { .. } => unreachable!("handled above"),
    }
    .and_then(|()| out.flush())
    .context("cannot write to stdout")?;
    Ok(())
}

impl StateCommand {
    /// The subcommand as typed (`list`, `show`, …).
    fn name(&self) -> &'static str {
        match self {
            StateCommand::List { .. } => "list",
            StateCommand::Show { .. } => "show",
            StateCommand::Export { .. } => "export",
            StateCommand::Resolve { .. } => "resolve",
            StateCommand::Retry { .. } => "retry",
            StateCommand::Adopt { .. } => "adopt",
            StateCommand::Archive { .. } => "archive",
            StateCommand::Push { .. } => "push",
            StateCommand::Pull { .. } => "pull",
            StateCommand::Unlock { .. } => "unlock",
        }
    }
}

/// No ledger to read at `path`: what creates it. A newcomer who has only tried `--simulate` has a
/// simulated ledger and no real one; `reconcile init` alone would send them the wrong way.
fn missing(settings: &settings::Settings, simulate: bool, path: &Location, verb: &str) -> anyhow::Error {
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
    crate::ledger::StateError::Missing { path: path.clone() }.into()
}

/// The ledger, or only its archived records (`state list --archived`).
fn only_archived(mut ledger: crate::ledger::Ledger, only: bool) -> crate::ledger::Ledger {
    if only {
        ledger.records.retain(|_, r| r.archived.is_some());
    }
    ledger
}

/// `state adopt`: the manifests say which action, Intune says which reset.
#[allow(clippy::print_stdout)]
fn adopt(g: &GlobalArgs, simulate: bool, key: &str, reason: Option<&str>, within: std::time::Duration) -> CmdResult {
    let project = crate::app::project::load(&g.overrides(), &[], &env).map_err(Failure::Invalid)?;
    super::print_diagnostics(&project.diagnostics);
    let request = crate::app::adopt::AdoptRequest {
        key: key.to_owned(),
        reason: reason.unwrap_or("adopted by hand").to_owned(),
        within,
        simulate,
        lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default(),
    };
    let (record, evidence) = crate::app::adopt::adopt(&mut crate::app::Session::new()?, &project, &request, &env)
        .map_err(anyhow::Error::from)?;
    let line = format!(
        "{} {} {} is now `done`: adopted the {}; nothing was sent.",
        record.key.short(),
        record.manifest,
        record.selector,
        evidence.describe(jiff::Timestamp::now())
    );
    say!("{}", crate::diag::safe::text(&line));
    Ok(())
}
