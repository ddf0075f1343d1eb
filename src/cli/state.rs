//! `reconcile state …`: inspect the ledger, decide about one action by hand, move the ledger
//! between a file and a blob, release a blob ledger's lock.

use std::io::Write;

use anyhow::Context as _;
use clap::Subcommand;

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::app;
use crate::ledger::{Location, PersonDecision, Record};
use crate::render;

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
        /// Only actions of these kinds (`PasscodeReset` or a Graph action name such as `wipe`;
        /// repeat or separate with commas).
        #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
        kind: Vec<crate::core::action::ActionKind>,
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
    let timeout = g.lock_timeout.map(|d| d.0).unwrap_or_default();
    let state = app::state::open(&g.overrides(), args.simulate, timeout, &env).map_err(super::failure)?;
    let read = match &cmd {
        StateCommand::Resolve { key, outcome, reason } => {
            let decision = match outcome {
                ResolveAs::Done => PersonDecision::ResolveDone,
                ResolveAs::NotExecuted => PersonDecision::ResolveNotExecuted,
            };
            return decided(&state.decide(key, decision, reason, &env)?);
        }
        StateCommand::Retry { key, reason } => {
            return decided(&state.decide(key, PersonDecision::Retry, reason, &env)?);
        }
        StateCommand::Archive { keys, reason } => {
            for (r, changed) in &state.archive(keys, reason, &env)? {
                say!("{}", crate::diag::safe::text(&archived(r, *changed)));
            }
            return Ok(());
        }
        StateCommand::Push { dest } => return copied(&state, state.destination(dest)?, "reconcile state push"),
        StateCommand::Pull { file } => return copied(&state, Location::Local(file.clone()), "reconcile state pull"),
        StateCommand::Unlock { id } => {
            say!("Released the lock of `{}` held by {}.", state.location(), state.unlock(id)?);
            return Ok(());
        }
        // An export is the ledger at one instant: read under the lock, not beside a writer.
        StateCommand::Export { .. } => state.read(true, cmd.name())?,
        StateCommand::List { .. } | StateCommand::Show { .. } | StateCommand::Adopt { .. } => {
            state.read(false, cmd.name())?
        }
    };
    let mut out = std::io::BufWriter::new(crate::diag::safe::stdout());
    match cmd {
        StateCommand::List { format: StateFormat::Text, archived, kind } => {
            render::state::list_text(&mut out, &only(read, archived, &kind))
        }
        StateCommand::List { format: StateFormat::Json, archived, kind } => {
            render::state::list_json(&mut out, &only(read, archived, &kind))
        }
        StateCommand::Export { format: ExportFormat::Csv } => render::state::export_csv(&mut out, &read),
        StateCommand::Export { format: ExportFormat::Json } => render::state::list_json(&mut out, &read),
        StateCommand::Show { key, format } => {
            let record = read.find(&key)?;
            match format {
                StateFormat::Text => render::state::show_text(&mut out, record),
                StateFormat::Json => render::state::show_json(&mut out, record),
            }
        }
        _ => unreachable!("handled above"),
    }
    .and_then(|()| out.flush())
    .context("cannot write to stdout")?;
    Ok(())
}

/// A person's decision, as recorded.
fn decided(r: &Record) -> CmdResult {
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
    Ok(())
}

/// One action archived by `state archive` (`changed`: by this call).
fn archived(r: &Record, changed: bool) -> String {
    let what = if changed {
        "is archived (recorded with your reason): plans no longer show it".to_owned()
    } else {
        let a = r.archived.as_ref().map(|a| format!(" by {} at {}", a.by, crate::duration::at_second(a.at)));
        format!("was archived already{}; left as it was", a.unwrap_or_default())
    };
    format!("{} {} {} ({}) {what}.", r.key.short(), r.manifest, r.selector, r.status)
}

/// `state push` and `state pull`.
fn copied(state: &app::state::Opened, dest: Location, verb: &str) -> CmdResult {
    let n = state.copy_to(&dest, verb, &env)?;
    say!("Copied {n} records from `{}` to `{dest}`.", state.location());
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

/// The ledger, or only its archived records (`state list --archived`).
/// The ledger's archived actions only (`--archived`), of the given kinds only (`--kind`, none: all).
fn only(
    mut ledger: crate::ledger::Ledger,
    archived: bool,
    kinds: &[crate::core::action::ActionKind],
) -> crate::ledger::Ledger {
    ledger.records.retain(|_, r| (!archived || r.archived.is_some()) && (kinds.is_empty() || kinds.contains(&r.kind)));
    ledger
}

/// `--kind`: `PasscodeReset`, or any kind's Graph name (`resetPasscode`, `wipe`).
fn parse_kind(name: &str) -> Result<crate::core::action::ActionKind, String> {
    use crate::core::action::ActionKind;
    ActionKind::from_name(name).or_else(|| ActionKind::from_graph_name(name)).ok_or_else(|| {
        let known: Vec<&str> = crate::core::kinds::ALL.iter().map(|k| k.spec().graph_name).collect();
        format!("unknown kind `{}`: PasscodeReset or one of {}", name.escape_debug(), known.join(", "))
    })
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
    let mut session = crate::app::Session::new()?;
    let (record, evidence) =
        crate::app::adopt::adopt(&mut session, &project, &request, &env).map_err(anyhow::Error::from)?;
    let line = format!(
        "{} {} {} is now `done`: adopted the {}; nothing was sent.",
        record.key.short(),
        record.manifest,
        record.selector,
        evidence.describe(session.clock().now(), record.kind.spec().wording.short)
    );
    say!("{}", crate::diag::safe::text(&line));
    Ok(())
}
