//! `reconcile plan [PATH...]`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};
use crate::app::plan::{PlanRequest, Planned};
use crate::app::{self, Session};
use crate::render::{self, Format, PlanContext};

#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// Limit the plan to these manifest files or folders (nothing is reported as orphaned).
    pub paths: Vec<PathBuf>,
    /// Do not contact Intune: devices are not looked up.
    #[arg(long)]
    pub offline: bool,
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when there is nothing to do, 2 when resets are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan to FILE, for `reconcile apply --plan FILE` and `reconcile show FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Detail only the manifests that differ between git REF (where this change forks from it)
    /// and the working tree: a pull request's own change. The rest is one summary line; the exit
    /// code, the comment and a saved plan speak for the change only.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// List every action, the already done and orphaned ones too (by default they are counted
    /// in one line). JSON always lists every action.
    #[arg(long)]
    pub show_done: bool,
    /// Show each device's primary user (its UPN in Intune) on every plan line, as
    /// `plan.showUser: true` in reconcile.yaml does. Off by default: plans name no person the
    /// manifests did not name.
    #[arg(long)]
    pub show_user: bool,
}

pub(super) fn run(g: &GlobalArgs, args: PlanArgs) -> CmdResult {
    let mut session = Session::new()?;
    let request = PlanRequest {
        paths: args.paths.clone(),
        offline: args.offline,
        simulate: args.simulate,
        base: args.base.clone(),
    };
    let overrides = crate::settings::Overrides { show_user: args.show_user, ..g.overrides() };
    let planned = app::plan::prepare(&mut session, &overrides, &request, &env).map_err(super::failure)?;
    print_diagnostics(&planned.project.diagnostics);
    let plan = planned.reviewed(args.out.as_deref(), &env)?;
    let ctx = PlanContext { show_done: args.show_done, ..PlanContext::new(args.offline, args.simulate) };
    let mut out = std::io::BufWriter::new(crate::diag::safe::stdout());
    missing_note(&mut out, &planned, args.format).context("cannot write the plan to stdout")?;
    if args.format == Format::Text && super::colour() {
        out.flush().context("cannot write the plan to stdout")?;
        drop(out);
        super::print_text_plan(&plan, ctx).context("cannot write the plan to stdout")?;
    } else {
        render::plan(&mut out, &plan, ctx, args.format).context("cannot write the plan to stdout")?;
        out.flush().context("cannot write the plan to stdout")?;
        drop(out);
    }
    github_outputs(&plan, ctx)?;
    if plan.summary.blocked > 0 || plan.summary.violations > 0 {
        return Err(Failure::Exit(1));
    }
    if args.detailed_exitcode && plan.has_changes() {
        return Err(Failure::Exit(2));
    }
    Ok(())
}

/// No ledger (an offline plan): the plan assumes nothing was ever sent. Logged, and said above a
/// text plan.
pub(super) fn missing_note(out: &mut impl Write, planned: &Planned, format: Format) -> std::io::Result<()> {
    if let Some(location) = &planned.missing {
        let note = format!(
            "No ledger at `{location}`: this plan assumes nothing was ever sent. Run `reconcile init` to create it, or find out why it is missing."
        );
        tracing::warn!("{note}");
        if format == Format::Text {
            writeln!(out, "{note}\n")?;
        }
    }
    Ok(())
}

/// Inside GitHub Actions: the Markdown plan appended to the job summary, and a warning
/// annotation on the manifest line of every blocked device.
pub(super) fn github_outputs(plan: &crate::core::plan::Plan<'_>, ctx: PlanContext) -> anyhow::Result<()> {
    if let Some(summary) = env(crate::env::GITHUB_STEP_SUMMARY).filter(|s| !s.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&summary)
            .with_context(|| format!("cannot open GITHUB_STEP_SUMMARY `{summary}`"))?;
        f.write_all(render::markdown::render(plan, ctx).as_bytes())
            .with_context(|| format!("cannot write `{summary}`"))?;
    }
    if env(crate::env::GITHUB_ACTIONS).as_deref() == Some("true") {
        let mut diags = crate::diag::Diagnostics::default();
        for v in &plan.violations {
            diags.push(v.diagnostic.clone());
        }
        for e in plan.entries.iter().filter(|e| e.change == crate::core::plan::Change::Blocked) {
            if let Some(a) = e.action {
                diags.push(crate::diag::Diagnostic::warning(
                    &a.file,
                    Some(a.pos),
                    format!("{} is blocked: {}", a.selector, e.reason),
                ));
            }
        }
        if plan.summary.to_send > render::markdown::LARGE_CHANGE {
            diags.push(crate::diag::Diagnostic::plain_warning(format!(
                "large change: {} passcodes will be reset",
                plan.summary.to_send
            )));
        }
        for e in plan.entries.iter().filter(|e| e.change == crate::core::plan::Change::Attention) {
            if let Some(a) = e.action {
                diags.push(crate::diag::Diagnostic::warning(
                    &a.file,
                    Some(a.pos),
                    format!("{} needs attention: {}", a.selector, e.reason),
                ));
            }
        }
        // Resets made outside reconcile, adopted or sent again (blocked ones are above).
        for e in
            plan.entries.iter().filter(|e| e.out_of_band.is_some() && e.change != crate::core::plan::Change::Blocked)
        {
            if let Some(a) = e.action {
                diags.push(crate::diag::Diagnostic::warning(
                    &a.file,
                    Some(a.pos),
                    format!("{}: {}", a.selector, e.reason),
                ));
            }
        }
        let _ = diags.render_github(&mut crate::diag::safe::stderr());
    }
    Ok(())
}
