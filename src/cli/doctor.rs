//! `reconcile doctor`: one line per check, ✓ or ✗ with the fix; exit 1 when any failed.

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::app::Session;
use crate::app::doctor::{self, DoctorRequest, Job, Mark};

#[derive(Debug, clap::Args)]
pub(super) struct DoctorArgs {
    /// Check for one job's identity only: `plan` (read devices and the ledger, comment) or
    /// `apply` (read and reset devices, lock the ledger) [default: both].
    #[arg(long = "for", value_enum, value_name = "JOB")]
    pub job: Option<Job>,
    /// Check against the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(g: &GlobalArgs, args: DoctorArgs) -> CmdResult {
    let request = DoctorRequest {
        simulate: args.simulate,
        job: args.job,
        lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default(),
    };
    let checks = doctor::doctor(&mut Session::new()?, &g.overrides(), &request, &env);
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    // Found values quote the environment, the ledger and Graph's answers: each is made safe.
    for c in &checks {
        let mark = match c.mark {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Skip => "-",
        };
        say!("{mark} {:<width$}  {}", c.what, crate::diag::safe::text(&c.found));
        if let Some(fix) = &c.fix {
            say!("  {:<width$}  fix: {}", "", crate::diag::safe::text(fix));
        }
    }
    let failed = checks.iter().filter(|c| c.mark == Mark::Fail).count();
    let sim = if args.simulate { "SIMULATED: " } else { "" };
    if failed == 0 {
        say!("{sim}All checks passed.");
        Ok(())
    } else {
        say!("{sim}{failed} check{} failed.", if failed == 1 { "" } else { "s" });
        Err(Failure::Exit(1))
    }
}
