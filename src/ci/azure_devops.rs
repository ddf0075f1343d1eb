//! Azure DevOps: one plan thread per pull request, created once and its comment updated after,
//! through the REST API (`SYSTEM_COLLECTIONURI`, `SYSTEM_TEAMPROJECTID`, `BUILD_REPOSITORY_ID`,
//! `SYSTEM_PULLREQUEST_PULLREQUESTID`, `SYSTEM_ACCESSTOKEN`), api-version 7.1.
//!
//! The same ownership rule as on GitHub: only a thread whose first comment starts with the marker
//! **and** was written by the identity the token acts as (`_apis/connectionData`'s
//! `authenticatedUser`) is ever updated; anyone can post a comment starting with the marker.
//! When the identity cannot be read, a new thread is created.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::BodyError;
use crate::render::markdown::MARKER;

const API_VERSION: &str = "7.1";

/// The longest answer read from the Azure DevOps API: 16 MiB. The largest legitimate one is the
/// pull request's threads, listed whole in one answer (the API does not page them) with every
/// comment's text; a longer answer is refused, never buffered whole.
pub(crate) const AZURE_DEVOPS_ANSWER_CAP: usize = 16 * crate::http::MIB;

/// Where and as whom to comment.
pub(crate) struct AzureDevopsTarget {
    /// `SYSTEM_COLLECTIONURI`, e.g. `https://dev.azure.com/contoso/`.
    pub collection: String,
    pub project: String,
    pub repository: String,
    pub pr: u64,
    pub token: SecretString,
}

impl std::fmt::Debug for AzureDevopsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDevopsTarget")
            .field("collection", &self.collection)
            .field("project", &self.project)
            .field("repository", &self.repository)
            .field("pr", &self.pr)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AzureDevopsError {
    #[error("Azure DevOps API {what} failed: {reason}")]
    Api { what: &'static str, reason: String },
}

#[derive(Deserialize)]
struct Threads {
    value: Vec<Thread>,
}

#[derive(Deserialize)]
struct Thread {
    id: u64,
    #[serde(default)]
    comments: Vec<Comment>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    author: Option<Identity>,
}

#[derive(Deserialize)]
struct Identity {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionData {
    authenticated_user: Identity,
}

/// What the comment step did: the thread's id.
pub(crate) use crate::ci::github::Upserted;

/// One path segment, percent-encoded (ids come from the environment; never let one add a path).
use crate::graph::endpoints::path_segment as seg;

/// Creates the plan thread, or updates the comment of the one that is ours: never a second one.
pub(crate) async fn upsert_thread(t: &AzureDevopsTarget, body: &str) -> Result<Upserted, AzureDevopsError> {
    let http = crate::graph::http_client(std::time::Duration::from_secs(30));
    let req = |m: reqwest::Method, url: String| {
        http.request(m, url)
            .header("Authorization", format!("Bearer {}", t.token.expose_secret()))
            .header("Accept", "application/json")
    };
    let err = |what: &'static str| {
        move |e: reqwest::Error| AzureDevopsError::Api { what, reason: crate::graph::error_chain(&e) }
    };
    let collection = t.collection.trim_end_matches('/');
    let threads = format!(
        "{collection}/{}/_apis/git/repositories/{}/pullRequests/{}/threads",
        seg(&t.project),
        seg(&t.repository),
        t.pr
    );
    // Who the token acts as (the build service, for SYSTEM_ACCESSTOKEN).
    let me = match req(reqwest::Method::GET, format!("{collection}/_apis/connectionData")).send().await {
        Ok(r) if r.status().is_success() => match crate::http::read_capped(r, AZURE_DEVOPS_ANSWER_CAP).await {
            Ok(b) => serde_json::from_slice::<ConnectionData>(&b).ok().map(|c| c.authenticated_user.id),
            Err(BodyError::TooLarge(e)) => {
                return Err(AzureDevopsError::Api { what: "reading the token's identity", reason: e.to_string() });
            }
            Err(BodyError::Read(_)) => None,
        },
        _ => None,
    };
    if me.is_none() {
        tracing::warn!("cannot tell which Azure DevOps identity the token acts as: creating a new plan thread");
    }
    let resp = req(reqwest::Method::GET, format!("{threads}?api-version={API_VERSION}"))
        .send()
        .await
        .map_err(err("listing threads"))?;
    let list: Threads = json(success(resp, "listing threads")?, "listing threads").await?;
    // Ours: its first comment starts with the marker and is written by us.
    let existing = me.as_ref().and_then(|me| {
        list.value.iter().find_map(|th| {
            let first = th.comments.first()?;
            let mine = first.author.as_ref().is_some_and(|a| a.id.eq_ignore_ascii_case(me));
            let marked = first.content.as_deref().is_some_and(|c| c.trim_start().starts_with(MARKER));
            (mine && marked).then_some((th.id, first.id))
        })
    });
    match existing {
        Some((thread, comment)) => {
            let url = format!("{threads}/{thread}/comments/{comment}?api-version={API_VERSION}");
            let resp = req(reqwest::Method::PATCH, url)
                .json(&serde_json::json!({ "content": body }))
                .send()
                .await
                .map_err(err("updating the comment"))?;
            success(resp, "updating the comment")?;
            Ok(Upserted::Updated(thread))
        }
        None => {
            // commentType 1 is "text"; status 1 is "active".
            let payload = serde_json::json!({
                "comments": [{ "parentCommentId": 0, "content": body, "commentType": 1 }],
                "status": 1,
            });
            let resp = req(reqwest::Method::POST, format!("{threads}?api-version={API_VERSION}"))
                .json(&payload)
                .send()
                .await
                .map_err(err("creating the thread"))?;
            let created: Thread = json(success(resp, "creating the thread")?, "reading the answer").await?;
            Ok(Upserted::Created(created.id))
        }
    }
}

/// The body of `resp` read with [`AZURE_DEVOPS_ANSWER_CAP`], as JSON.
async fn json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &'static str,
) -> Result<T, AzureDevopsError> {
    let body = crate::http::read_capped(resp, AZURE_DEVOPS_ANSWER_CAP).await.map_err(|e| AzureDevopsError::Api {
        what,
        reason: match e {
            BodyError::TooLarge(e) => e.to_string(),
            BodyError::Read(e) => crate::graph::error_chain(&e),
        },
    })?;
    serde_json::from_slice(&body).map_err(|e| AzureDevopsError::Api { what, reason: format!("unexpected answer: {e}") })
}

/// `resp` when its status is a success, else why `what` failed.
fn success(resp: reqwest::Response, what: &'static str) -> Result<reqwest::Response, AzureDevopsError> {
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(AzureDevopsError::Api { what, reason: format!("HTTP {}", resp.status()) })
    }
}
