//! `reconcile show FILE`: render a saved plan.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::CmdResult;
use crate::render::{self, Format, PlanContext};
use crate::saved::{Restored, SavedPlan};

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// A saved plan (from `reconcile plan --out FILE`).
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub(super) fn run(args: ShowArgs) -> CmdResult {
    let saved = SavedPlan::read(&args.file)?;
    let ctx = PlanContext { offline: saved.offline, simulated: saved.simulated };
    let restored = Restored::new(saved);
    let mut out = std::io::BufWriter::new(crate::safe::stdout());
    render::plan(&mut out, &restored.plan(), ctx, args.format)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(())
}
