//! GitHub: one plan comment per pull request, created once and updated after, through the REST
//! API (`GITHUB_TOKEN`, `GITHUB_REPOSITORY`, `GITHUB_API_URL`).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::render::markdown::MARKER;

/// Where and as whom to comment.
pub struct GithubTarget {
    pub api: String,
    pub repository: String,
    pub pr: u64,
    pub token: SecretString,
}

impl std::fmt::Debug for GithubTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubTarget")
            .field("api", &self.api)
            .field("repository", &self.repository)
            .field("pr", &self.pr)
            .finish()
    }
}

/// What the comment step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created(u64),
    Updated(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub API {what} failed: {reason}")]
    Api { what: &'static str, reason: String },
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

/// The pull request number of the event that started the workflow (`GITHUB_EVENT_PATH`).
pub fn pr_from_event(event: &serde_json::Value) -> Option<u64> {
    event["pull_request"]["number"]
        .as_u64()
        .or_else(|| event["issue"]["number"].as_u64())
        .or_else(|| event["number"].as_u64())
}

/// Creates the plan comment, or updates the one that carries [`MARKER`]: never a second one.
pub async fn upsert_comment(t: &GithubTarget, body: &str) -> Result<Upserted, GithubError> {
    let http = crate::graph::http_client(std::time::Duration::from_secs(30));
    let req = |m: reqwest::Method, url: String| {
        http.request(m, url)
            .header("Authorization", format!("Bearer {}", t.token.expose_secret()))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    };
    let api_err =
        |what: &'static str| move |e: reqwest::Error| GithubError::Api { what, reason: crate::graph::error_chain(&e) };
    let mut existing = None;
    for page in 1..=50 {
        let url = format!("{}/repos/{}/issues/{}/comments?per_page=100&page={page}", t.api, t.repository, t.pr);
        let resp = req(reqwest::Method::GET, url).send().await.map_err(api_err("listing comments"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(GithubError::Api { what: "listing comments", reason: format!("HTTP {status}") });
        }
        let comments: Vec<Comment> = resp.json().await.map_err(api_err("listing comments"))?;
        // Ours starts with the marker; a person quoting it elsewhere in a comment is not us.
        if let Some(c) = comments.iter().find(|c| c.body.as_deref().is_some_and(|b| b.trim_start().starts_with(MARKER)))
        {
            existing = Some(c.id);
            break;
        }
        if comments.len() < 100 {
            break;
        }
    }
    let payload = serde_json::json!({ "body": body });
    let (what, resp) = match existing {
        Some(id) => {
            let url = format!("{}/repos/{}/issues/comments/{id}", t.api, t.repository);
            (
                "updating the comment",
                req(reqwest::Method::PATCH, url)
                    .json(&payload)
                    .send()
                    .await
                    .map_err(api_err("updating the comment"))?,
            )
        }
        None => {
            let url = format!("{}/repos/{}/issues/{}/comments", t.api, t.repository, t.pr);
            (
                "creating the comment",
                req(reqwest::Method::POST, url).json(&payload).send().await.map_err(api_err("creating the comment"))?,
            )
        }
    };
    let status = resp.status();
    if !status.is_success() {
        return Err(GithubError::Api { what, reason: format!("HTTP {status}") });
    }
    let c: Comment = resp.json().await.map_err(api_err("reading the answer"))?;
    Ok(match existing {
        Some(_) => Upserted::Updated(c.id),
        None => Upserted::Created(c.id),
    })
}
