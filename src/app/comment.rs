//! `comment`: post or update the single plan comment on a pull request: a GitHub issue comment,
//! or inside Azure Pipelines (`TF_BUILD`) an Azure DevOps pull-request thread. Where it goes is
//! read from the CI's environment.

use std::path::Path;

use anyhow::Context as _;
use secrecy::SecretString;

use crate::ci::github::{self, GithubTarget, Upserted};
use crate::core::saved::{Restored, SavedPlan};
use crate::render::PlanContext;

/// Where the plan was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// A GitHub issue comment.
    Github,
    /// An Azure DevOps pull-request thread.
    AzureDevops,
}

/// The comment (or thread) written, on pull request `pr`.
#[derive(Debug)]
pub(crate) struct Posted {
    pub host: Host,
    pub upserted: Upserted,
    pub pr: u64,
}

/// Posts the saved plan at `plan` on pull request `pr` (default: the one the CI run is for).
pub(crate) fn post(plan: &Path, pr: Option<u64>, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Posted> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let body = body_of(plan, env)?;
    if get(crate::env::TF_BUILD).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return azure_devops(pr, &body, &get);
    }
    let token = get(crate::env::GITHUB_TOKEN).context("GITHUB_TOKEN is not set\nhint: pass `env: GITHUB_TOKEN: ${{ github.token }}` with `permissions: pull-requests: write`")?;
    let repository = get(crate::env::GITHUB_REPOSITORY).context("GITHUB_REPOSITORY is not set (owner/name)")?;
    let api = crate::graph::endpoints::checked(
        crate::env::GITHUB_API_URL,
        &get(crate::env::GITHUB_API_URL).unwrap_or_else(|| "https://api.github.com".into()),
    )?;
    let pr = match pr {
        Some(n) => n,
        None => {
            let path = get(crate::env::GITHUB_EVENT_PATH)
                .context("no --pr and no GITHUB_EVENT_PATH to find the pull request in")?;
            let text = std::fs::read(&path).with_context(|| format!("cannot read GITHUB_EVENT_PATH `{path}`"))?;
            let event: serde_json::Value =
                serde_json::from_slice(&text).with_context(|| format!("`{path}` is not JSON"))?;
            github::pr_from_event(&event)
                .context("the event is not about a pull request\nhint: run this on `pull_request`, or pass --pr")?
        }
    };
    let actions = get(crate::env::GITHUB_ACTIONS).as_deref() == Some("true");
    let target = GithubTarget { api, repository, pr, token: SecretString::from(token), actions };
    let upserted = super::connect::runtime()?.block_on(github::upsert_comment(&target, &body))?;
    Ok(Posted { host: Host::Github, upserted, pr })
}

/// The Markdown comment of the saved plan at `path`.
fn body_of(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let saved = SavedPlan::read(path)?;
    let ctx = PlanContext::new(saved.offline, saved.simulated);
    let restored = Restored::new(saved);
    let mut plan = restored.plan();
    plan.context = Some(restored.context(env));
    Ok(crate::render::markdown::render(&plan, ctx))
}

/// Inside Azure Pipelines: the plan thread of the pull request that triggered the build.
fn azure_devops(pr: Option<u64>, body: &str, get: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Posted> {
    let need = |k: &'static str, hint: &'static str| {
        get(k).filter(|v| !crate::env::unexpanded(v)).with_context(|| format!("{k} is not set\nhint: {hint}"))
    };
    let token = need(
        crate::env::SYSTEM_ACCESSTOKEN,
        "map it into the step: `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`, and allow the build service to contribute to pull requests",
    )?;
    let collection = crate::graph::endpoints::checked(
        crate::env::SYSTEM_COLLECTIONURI,
        &need(crate::env::SYSTEM_COLLECTIONURI, "run this inside Azure Pipelines")?,
    )?;
    let project = need(crate::env::SYSTEM_TEAMPROJECTID, "run this inside Azure Pipelines")?;
    let repository = need(crate::env::BUILD_REPOSITORY_ID, "run this inside Azure Pipelines")?;
    let pr = match pr {
        Some(n) => n,
        None => need(
            crate::env::SYSTEM_PULLREQUEST_PULLREQUESTID,
            "the build was not started for a pull request (on Azure Repos, a build-validation branch policy runs it), or pass --pr",
        )?
        .trim()
        .parse()
        .context("SYSTEM_PULLREQUEST_PULLREQUESTID is not a number")?,
    };
    let target = crate::ci::azure_devops::AzureDevopsTarget {
        collection,
        project,
        repository,
        pr,
        token: SecretString::from(token),
    };
    let upserted = super::connect::runtime()?.block_on(crate::ci::azure_devops::upsert_thread(&target, body))?;
    Ok(Posted { host: Host::AzureDevops, upserted, pr })
}
