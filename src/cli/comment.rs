//! `reconcile comment`: post or update the single plan comment on a pull request: a GitHub issue
//! comment, or inside Azure Pipelines (`TF_BUILD`) an Azure DevOps pull-request thread.

use std::path::PathBuf;

use super::{CmdResult, env};
use crate::app::comment::{Host, Posted};
use crate::ci::github::Upserted;

#[derive(Debug, clap::Args)]
pub(super) struct CommentArgs {
    /// The saved plan to post (from `reconcile plan --out FILE`).
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// The pull request number [default: from GITHUB_EVENT_PATH, or
    /// SYSTEM_PULLREQUEST_PULLREQUESTID in Azure Pipelines].
    #[arg(long)]
    pub pr: Option<u64>,
}

pub(super) fn run(args: CommentArgs) -> CmdResult {
    let Posted { host, upserted, pr } = crate::app::comment::post(&args.plan, args.pr, &env)?;
    let (verb, id) = match upserted {
        Upserted::Created(id) => ("created", id),
        Upserted::Updated(id) => ("updated", id),
    };
    match host {
        Host::Github => say!("{verb} plan comment {id} on pull request #{pr}"),
        Host::AzureDevops => say!("{verb} plan thread {id} on pull request {pr}"),
    }
    Ok(())
}
