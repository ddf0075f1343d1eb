//! `reconcile state list` and `reconcile state show KEY`.

use std::io::Write;

use anyhow::Context as _;
use clap::Subcommand;

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::render;
use crate::settings;
use crate::state::LocalStore;

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
}

pub fn run(g: &GlobalArgs, cmd: StateCommand) -> CmdResult {
    let mut diags = crate::diagnostic::Diagnostics::default();
    let settings = settings::load(&g.overrides(), &env, &mut diags);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let ledger = LocalStore::new(&settings.state).load()?;
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
    }
    .and_then(|()| out.flush())
    .context("cannot write to stdout")?;
    Ok(())
}
