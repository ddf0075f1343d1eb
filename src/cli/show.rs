//! `reconcile show FILE`: render a saved plan.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::CmdResult;
use crate::core::saved::{Restored, SavedPlan};
use crate::render::{self, Format, PlanContext};

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// A saved plan (from `reconcile plan --out FILE`).
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List every action, the already done and orphaned ones too (by default they are counted
    /// in one line). JSON always lists every action.
    #[arg(long)]
    pub show_done: bool,
}

pub(super) fn run(args: ShowArgs) -> CmdResult {
    let saved = SavedPlan::read(&args.file)?;
    let ctx = PlanContext { show_done: args.show_done, ..PlanContext::new(saved.offline, saved.simulated) };
    let restored = Restored::new(saved);
    if args.format == Format::Text && super::colour() {
        return Ok(super::print_text_plan(&restored.plan(), ctx).context("cannot write to stdout")?);
    }
    let mut plan = restored.plan();
    plan.context = Some(restored.context(&super::env));
    let mut out = std::io::BufWriter::new(crate::diag::safe::stdout());
    render::plan(&mut out, &plan, ctx, args.format).and_then(|()| out.flush()).context("cannot write to stdout")?;
    Ok(())
}
