//! GitHub: one plan comment per pull request, created once and updated after, through the REST
//! API (`GITHUB_TOKEN`, `GITHUB_REPOSITORY`, `GITHUB_API_URL`).
//!
//! Only a comment written by the identity the token acts as is ever adopted: anyone on a pull
//! request can post a comment that starts with the marker, and editing *their* comment would let
//! them turn it back into a fake plan. The identity is `GET /user`'s login when it answers (a
//! personal or app-user token), else, inside GitHub Actions, the `github-actions[bot]` user that
//! the workflow's `GITHUB_TOKEN` posts as. When neither is known, a new comment is created.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::BodyError;
use crate::render::markdown::MARKER;

/// Where and as whom to comment.
pub(crate) struct GithubTarget {
    pub api: String,
    pub repository: String,
    pub pr: u64,
    pub token: SecretString,
    /// Running inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub actions: bool,
}

/// The longest answer read from the GitHub API: 16 MiB. The largest legitimate one is a page of
/// 100 comments, each up to GitHub's 65,536 characters (6.4 MiB of ASCII text, more for
/// multi-byte text and JSON escapes); a longer answer is refused, never buffered whole.
pub(crate) const GITHUB_ANSWER_CAP: usize = 16 * crate::http::MIB;

/// The login of the Actions token's bot user.
pub(crate) const ACTIONS_BOT: &str = "github-actions[bot]";

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
pub(crate) enum Upserted {
    Created(u64),
    Updated(u64),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GithubError {
    #[error("GitHub API {what} failed: {reason}")]
    Api { what: &'static str, reason: String },
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Whether `c` is our plan comment: it starts with the marker and was written by `me`.
fn ours(c: &Comment, me: &User) -> bool {
    let author_is_me = c
        .user
        .as_ref()
        .is_some_and(|u| u.login.eq_ignore_ascii_case(&me.login) && (me.kind.is_none() || u.kind == me.kind));
    author_is_me && c.body.as_deref().is_some_and(|b| b.trim_start().starts_with(MARKER))
}

/// The pull request number of the event that started the workflow (`GITHUB_EVENT_PATH`).
pub(crate) fn pr_from_event(event: &serde_json::Value) -> Option<u64> {
    event["pull_request"]["number"]
        .as_u64()
        .or_else(|| event["issue"]["number"].as_u64())
        .or_else(|| event["number"].as_u64())
}

/// Creates the plan comment, or updates the one that carries [`MARKER`]: never a second one.
pub(crate) async fn upsert_comment(t: &GithubTarget, body: &str) -> Result<Upserted, GithubError> {
    let http = crate::graph::http_client(std::time::Duration::from_secs(30));
    let req = |m: reqwest::Method, url: String| {
        http.request(m, url)
            .header("Authorization", format!("Bearer {}", t.token.expose_secret()))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    };
    let api_err =
        |what: &'static str| move |e: reqwest::Error| GithubError::Api { what, reason: crate::graph::error_chain(&e) };
    // Who the token acts as: `GET /user`; in Actions, a 403 there is the workflow's own token
    // (an integration may not read `/user`), which writes as the Actions bot. Any other failure
    // leaves it unknown: a new comment, and nobody's comment edited on a guess.
    let bot = || t.actions.then(|| User { login: ACTIONS_BOT.into(), kind: Some("Bot".into()) });
    let me = match req(reqwest::Method::GET, format!("{}/user", t.api)).send().await {
        Ok(r) if r.status().is_success() => match crate::http::read_capped(r, GITHUB_ANSWER_CAP).await {
            Ok(b) => serde_json::from_slice::<User>(&b).ok().map(|u| User { login: u.login, kind: None }),
            Err(BodyError::TooLarge(e)) => {
                return Err(GithubError::Api { what: "reading the token's user", reason: e.to_string() });
            }
            Err(BodyError::Read(_)) => None,
        },
        Ok(r) if r.status() == reqwest::StatusCode::FORBIDDEN => bot(),
        _ => None,
    };
    if me.is_none() {
        tracing::warn!("cannot tell which GitHub user the token acts as: creating a new plan comment");
    }
    let mut existing = None;
    for page in 1..=50 {
        let url = format!("{}/repos/{}/issues/{}/comments?per_page=100&page={page}", t.api, t.repository, t.pr);
        let resp = req(reqwest::Method::GET, url).send().await.map_err(api_err("listing comments"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(GithubError::Api { what: "listing comments", reason: format!("HTTP {status}") });
        }
        let comments: Vec<Comment> = json(resp, "listing comments").await?;
        // Ours starts with the marker and is written by us; anyone else's is never touched.
        if let Some(c) = me.as_ref().and_then(|me| comments.iter().find(|c| ours(c, me))) {
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
    let c: Comment = json(resp, "reading the answer").await?;
    Ok(match existing {
        Some(_) => Upserted::Updated(c.id),
        None => Upserted::Created(c.id),
    })
}

/// The body of `resp` read with [`GITHUB_ANSWER_CAP`], as JSON.
async fn json<T: serde::de::DeserializeOwned>(resp: reqwest::Response, what: &'static str) -> Result<T, GithubError> {
    let body = crate::http::read_capped(resp, GITHUB_ANSWER_CAP).await.map_err(|e| GithubError::Api {
        what,
        reason: match e {
            BodyError::TooLarge(e) => e.to_string(),
            BodyError::Read(e) => crate::graph::error_chain(&e),
        },
    })?;
    serde_json::from_slice(&body).map_err(|e| GithubError::Api { what, reason: format!("unexpected answer: {e}") })
}
