//! `reconcile completions SHELL` and `reconcile man`: generated from the same clap definitions
//! as the parser, so they can never disagree with it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{Cli, CmdResult};

#[derive(Debug, clap::Args)]
pub(super) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub(super) struct ManArgs {
    /// Write `reconcile.1` and one page per command (`reconcile-plan.1`, …) into DIR instead of
    /// printing `reconcile.1`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the completion script (install: see README "Install").
pub(super) fn completions(args: CompletionsArgs) -> CmdResult {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "reconcile", &mut out);
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

/// Prints the man page, or writes every page into a folder.
pub(super) fn man(args: ManArgs) -> CmdResult {
    let cmd = Cli::command();
    match args.out {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out).and_then(|()| out.flush()).context("cannot write to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages into `{}`", dir.display()))?;
        }
    }
    Ok(())
}
