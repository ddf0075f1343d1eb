//! `reconcile state list` and `reconcile state show KEY`.

use std::io::Write;

use anyhow::Context as _;
use clap::Subcommand;

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::render;
use crate::settings;
use crate::state::{LocalStore, PersonDecision};

/// Who is deciding: the CI actor or the local user, and the host.
fn person() -> String {
    let user = ["GITHUB_ACTOR", "BUILD_REQUESTEDFOREMAIL", "USER", "USERNAME"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", crate::state::hostname())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List every action in the ledger.
    List {
        #[arg(long, value_enum, default_value_t = StateFormat::Text)]
        format: StateFormat,
    },
    /// Show one action and all its attempts (a unique key prefix is enough).
    Show {
        key: String,
        #[arg(long, value_enum, default_value_t = StateFormat::Text)]
        format: StateFormat,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResolveAs {
    Done,
    NotExecuted,
}

#[allow(clippy::print_stdout)]
pub fn run(g: &GlobalArgs, cmd: StateCommand) -> CmdResult {
    let mut diags = crate::diagnostic::Diagnostics::default();
    let settings = settings::load(&g.overrides(), &env, &mut diags);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let store = LocalStore::new(&settings.state);
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
        let r = store.decide_by_person(timeout, key, decision, &person(), reason)?;
        say!(
            "{} {} {} {} is now `{}` (recorded with your reason).",
            r.key.short(),
            r.manifest,
            r.selector,
            r.managed_device_id.as_deref().unwrap_or("-"),
            r.status
        );
        if r.status == crate::state::Status::NotExecuted {
            say!("The next `reconcile apply` sends it.");
        }
        return Ok(());
    }
    let ledger = store.load_existing()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match cmd {
        StateCommand::List { format: StateFormat::Text } => render::state::list_text(&mut out, &ledger),
        StateCommand::List { format: StateFormat::Json } => render::state::list_json(&mut out, &ledger),
        StateCommand::Show { key, format } => {
            let record = ledger.find(&key)?;
            match format {
                StateFormat::Text => render::state::show_text(&mut out, record),
                StateFormat::Json => render::state::show_json(&mut out, record),
            }
        }
        StateCommand::Resolve { .. } | StateCommand::Retry { .. } => unreachable!("handled above"),
    }
    .and_then(|()| out.flush())
    .context("cannot write to stdout")?;
    Ok(())
}
