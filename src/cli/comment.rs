//! `reconcile comment`: post or update the single plan comment on a pull request.

use std::path::PathBuf;

use anyhow::Context as _;
use secrecy::SecretString;

use super::{CmdResult, env};
use crate::github::{self, GithubTarget, Upserted};
use crate::render::PlanContext;
use crate::saved::{Restored, SavedPlan};

#[derive(Debug, clap::Args)]
pub struct CommentArgs {
    /// The saved plan to post (from `reconcile plan --out FILE`).
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// The pull request number [default: from GITHUB_EVENT_PATH].
    #[arg(long)]
    pub pr: Option<u64>,
}

pub fn run(args: CommentArgs) -> CmdResult {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let token = get("GITHUB_TOKEN").context("GITHUB_TOKEN is not set\nhint: pass `env: GITHUB_TOKEN: ${{ github.token }}` with `permissions: pull-requests: write`")?;
    let repository = get("GITHUB_REPOSITORY").context("GITHUB_REPOSITORY is not set (owner/name)")?;
    let api = crate::graph::endpoints::checked(
        "GITHUB_API_URL",
        &get("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
    )?;
    let pr = match args.pr {
        Some(n) => n,
        None => {
            let path =
                get("GITHUB_EVENT_PATH").context("no --pr and no GITHUB_EVENT_PATH to find the pull request in")?;
            let text = std::fs::read(&path).with_context(|| format!("cannot read GITHUB_EVENT_PATH `{path}`"))?;
            let event: serde_json::Value =
                serde_json::from_slice(&text).with_context(|| format!("`{path}` is not JSON"))?;
            github::pr_from_event(&event)
                .context("the event is not about a pull request\nhint: run this on `pull_request`, or pass --pr")?
        }
    };
    let saved = SavedPlan::read(&args.plan)?;
    let ctx = PlanContext { offline: saved.offline, simulated: saved.simulated };
    let restored = Restored::new(saved);
    let body = crate::render::markdown::render(&restored.plan(), ctx);
    let actions = get("GITHUB_ACTIONS").as_deref() == Some("true");
    let target = GithubTarget { api, repository, pr, token: SecretString::from(token), actions };
    let done = crate::ops::connect::runtime()?.block_on(github::upsert_comment(&target, &body))?;
    match done {
        Upserted::Created(id) => say!("created plan comment {id} on pull request #{pr}"),
        Upserted::Updated(id) => say!("updated plan comment {id} on pull request #{pr}"),
    }
    Ok(())
}
