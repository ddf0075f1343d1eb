//! Where an attempt comes from: the commit, pull request, CI system and run, and the person,
//! as the CI system (or the local machine) says. Recorded with every attempt
//! ([`Provenance`]) so an auditor can follow a reset back to its review.
//!
//! Read once per run from the environment (GitHub Actions, Azure Pipelines) and, for the commit
//! and a pull request merged into it, from `git` in the project directory. Every value is cut to
//! a sane length and stripped of control characters: it is shown to people later.

use std::path::Path;
use std::process::Command;

/// At most this many characters of any value.
const MAX_LEN: usize = 300;

/// The run's part of every attempt's provenance (the manifest's part is added per action).
pub(crate) fn run_provenance(env: &dyn Fn(&str) -> Option<String>, project_dir: &Path) -> Provenance {
    let var = |k: &str| env(k).map(|v| clean(&v)).filter(|v| !v.is_empty());
    let mut p = Provenance::default();
    match ci(env) {
        Some(run) if run.system == GITHUB => {
            p.commit = var(crate::env::GITHUB_SHA);
            p.actor = var(crate::env::GITHUB_TRIGGERING_ACTOR).or_else(|| var(crate::env::GITHUB_ACTOR));
            p.pull_request = var(crate::env::GITHUB_REF).and_then(|r| {
                let n = r.strip_prefix("refs/pull/")?.split('/').next()?;
                n.bytes().all(|b| b.is_ascii_digit()).then(|| n.to_owned())
            });
            (p.ci, p.run_id, p.run_url) = (Some(run.system.into()), Some(run.id), run.url);
        }
        Some(run) => {
            p.commit = var(crate::env::BUILD_SOURCEVERSION);
            p.actor = var(crate::env::BUILD_REQUESTEDFOREMAIL).or_else(|| var(crate::env::BUILD_REQUESTEDFOR));
            p.pull_request = var(crate::env::SYSTEM_PULLREQUEST_PULLREQUESTNUMBER)
                .or_else(|| var(crate::env::SYSTEM_PULLREQUEST_PULLREQUESTID));
            (p.ci, p.run_id, p.run_url) = (Some(run.system.into()), Some(run.id), run.url);
        }
        None => {
            p.ci = Some("local".into());
            p.actor = Some(person(env));
        }
    }
    if p.commit.is_none() {
        p.commit = git(project_dir, &["rev-parse", "HEAD"]);
    }
    if p.pull_request.is_none() {
        // After the merge, the pull request is named by the merge commit's subject.
        p.pull_request = git(project_dir, &["log", "-1", "--format=%s"]).and_then(|s| pull_request_of(&s));
    }
    p
}

const GITHUB: &str = "github-actions";
const AZURE: &str = "azure-pipelines";

/// A CI run, as its system's variables name it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CiRun {
    system: &'static str,
    id: String,
    url: Option<String>,
}

/// The CI run this process belongs to (GitHub Actions or Azure Pipelines), if any.
fn ci(env: &dyn Fn(&str) -> Option<String>) -> Option<CiRun> {
    let var = |k: &str| env(k).map(|v| clean(&v)).filter(|v| !v.is_empty());
    if var(crate::env::GITHUB_ACTIONS).as_deref() == Some("true") {
        let id = var(crate::env::GITHUB_RUN_ID)?;
        let url = github_page(env, &format!("actions/runs/{}", digits(&id)?));
        let id = match var(crate::env::GITHUB_RUN_ATTEMPT) {
            Some(n) if n != "1" => format!("{id} (attempt {n})"),
            _ => id,
        };
        return Some(CiRun { system: GITHUB, id, url });
    }
    if var(crate::env::TF_BUILD).is_some() || var(crate::env::BUILD_BUILDID).is_some() {
        let id = var(crate::env::BUILD_BUILDID)?;
        let url = match (var(crate::env::SYSTEM_COLLECTIONURI), var(crate::env::SYSTEM_TEAMPROJECT)) {
            (Some(collection), Some(project)) => {
                page(&collection, &[&project], &format!("_build/results?buildId={}", digits(&id)?))
            }
            _ => None,
        };
        return Some(CiRun { system: AZURE, id, url });
    }
    None
}

/// `s` when it is a number (a run or build id), for a URL.
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// A page of the repository on GitHub: `{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/{rest}`.
fn github_page(env: &dyn Fn(&str) -> Option<String>, rest: &str) -> Option<String> {
    let server = env(crate::env::GITHUB_SERVER_URL)?;
    let repository = env(crate::env::GITHUB_REPOSITORY)?;
    let (owner, name) = repository.trim().split_once('/')?;
    page(&server, &[owner, name], rest)
}

/// `base/segment/…/rest` as a link target, or `None`: `base` must be an `https://` URL (or
/// `http://` on loopback) without query or fragment, each segment a name (percent-encoded, never
/// `.` or `..`), and `rest` is ours. Parentheses and anything else a Markdown link destination
/// could end at are percent-encoded, so the link is one link whatever the variables hold.
fn page(base: &str, segments: &[&str], rest: &str) -> Option<String> {
    let base = crate::graph::endpoints::checked(crate::env::GITHUB_SERVER_URL, base.trim()).ok()?;
    let parsed = url::Url::parse(&base).ok()?;
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return None;
    }
    let mut url = parsed.as_str().trim_end_matches('/').to_owned();
    for s in segments {
        if s.is_empty() || *s == "." || *s == ".." {
            return None;
        }
        url.push('/');
        url.push_str(&crate::graph::endpoints::path_segment(s));
    }
    url.push('/');
    url.push_str(rest);
    let url = url.replace('(', "%28").replace(')', "%29");
    url.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '`' | '\\' | '"' | ' ')).then_some(url)
}

/// The commit this run works at, as the CI system says (`GITHUB_SHA`, `BUILD_SOURCEVERSION`),
/// else `git rev-parse HEAD` in `dir`: a commit id (hex digits) or nothing.
pub(crate) fn commit(env: &dyn Fn(&str) -> Option<String>, dir: &Path) -> Option<String> {
    let from_ci = match ci(env) {
        Some(run) if run.system == GITHUB => env(crate::env::GITHUB_SHA),
        Some(_) => env(crate::env::BUILD_SOURCEVERSION),
        None => None,
    };
    from_ci.map(|c| c.trim().to_owned()).or_else(|| git(dir, &["rev-parse", "HEAD"])).filter(|c| is_commit_id(c))
}

/// A commit id: 7 to 64 hex digits (SHA-1 or SHA-256, maybe abbreviated).
pub(crate) fn is_commit_id(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where a plan comes from, as its reviewer sees it at the top of the Markdown plan (the pull
/// request comment, the job summary): the tenant, the commit and the CI run. The links are built
/// from the CI system's own variables only, never from what the repository or the plan says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReviewContext {
    pub tenant: Option<String>,
    /// A commit id ([`is_commit_id`]).
    pub commit: Option<String>,
    /// The commit's page (GitHub).
    pub commit_url: Option<String>,
    /// The CI run: what to call it (`GitHub Actions run 9001`) and its page.
    pub run: Option<(String, String)>,
}

impl ReviewContext {
    /// The context of a plan of `tenant` made at `commit`, shown by this CI run (if any).
    pub(crate) fn new(env: &dyn Fn(&str) -> Option<String>, tenant: Option<&str>, commit: Option<&str>) -> Self {
        let commit = commit.filter(|c| is_commit_id(c)).map(str::to_ascii_lowercase);
        let run = ci(env).and_then(|run| {
            let url = run.url?;
            let name = if run.system == GITHUB { "GitHub Actions run" } else { "Azure Pipelines build" };
            // The id is the CI system's (digits, maybe ` (attempt 2)`): nothing in it is markup.
            let id: String = run.id.chars().filter(|c| c.is_ascii_alphanumeric() || " ()".contains(*c)).collect();
            Some((format!("{name} {id}"), url))
        });
        let github = ci(env).is_some_and(|run| run.system == GITHUB);
        let commit_url = commit.as_deref().filter(|_| github).and_then(|c| github_page(env, &format!("commit/{c}")));
        ReviewContext { tenant: tenant.map(str::to_owned).filter(|t| !t.is_empty()), commit, commit_url, run }
    }
}

/// The CI run holding a ledger lock, for the message naming the holder:
/// `github-actions run 9001 https://github.com/…/actions/runs/9001`.
pub(crate) fn ci_run(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ci(env).map(|run| match run.url {
        Some(url) => format!("{} run {} {url}", run.system, run.id),
        None => format!("{} run {}", run.system, run.id),
    })
}

/// Who is acting: the CI actor or the local user, at this host.
pub(crate) fn person(env: &dyn Fn(&str) -> Option<String>) -> String {
    let user = [crate::env::GITHUB_ACTOR, crate::env::BUILD_REQUESTEDFOREMAIL, crate::env::USER, crate::env::USERNAME]
        .iter()
        .find_map(|k| env(k).map(|v| clean(&v)).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", hostname())
}

/// The pull request a merge commit's subject names: GitHub's `Merge pull request #12 from …`
/// and squash `Title (#12)`, Azure Repos' `Merged PR 12: …`.
pub(crate) fn pull_request_of(subject: &str) -> Option<String> {
    let digits = |s: &str| {
        let n: String = s.chars().take_while(char::is_ascii_digit).collect();
        (!n.is_empty()).then_some(n)
    };
    if let Some(rest) = subject.strip_prefix("Merge pull request #") {
        return digits(rest);
    }
    if let Some(rest) = subject.strip_prefix("Merged PR ") {
        return digits(rest);
    }
    let open = subject.trim_end().strip_suffix(')')?.rfind("(#")?;
    let inner = &subject.trim_end()[open + 2..subject.trim_end().len() - 1];
    digits(inner).filter(|n| n.len() == inner.len())
}

/// One line of `git` output in `dir`, or `None` (no git, not a repository, no commit).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| clean(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("")))
        .filter(|s| !s.is_empty())
}

/// No control characters, at most [`MAX_LEN`] characters.
fn clean(s: &str) -> String {
    s.trim().chars().filter(|c| !c.is_control()).take(MAX_LEN).collect()
}

/// Where an attempt came from. Every field is optional: a local run has
/// no CI run, a run outside git no commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    /// The commit the manifests were read at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The pull request (number) the change came from, where the CI system or the merge commit says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
    /// `github-actions`, `azure-pipelines` or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    /// Who ran it: the CI actor, or `user@host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The manifest's `metadata.ticket`, `reason` and `requestedBy` when it was sent.
    #[serde(default, skip_serializing_if = "crate::manifest::ManifestInfo::is_empty")]
    pub manifest: crate::manifest::ManifestInfo,
    /// The id of the saved plan it executed (`apply --plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// This machine's name.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| crate::env::var(crate::env::HOSTNAME))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_subjects_name_their_pull_request() {
        assert_eq!(pull_request_of("Merge pull request #42 from contoso/inc-4711").as_deref(), Some("42"));
        assert_eq!(pull_request_of("Reset INC-4711 phones (#7)").as_deref(), Some("7"));
        assert_eq!(pull_request_of("Merged PR 318: reset the lost phone").as_deref(), Some("318"));
        assert_eq!(pull_request_of("fix (#abc)"), None);
        assert_eq!(pull_request_of("plain commit"), None);
    }

    #[test]
    fn github_actions_variables_make_the_provenance() {
        let vars = [
            (crate::env::GITHUB_ACTIONS, "true"),
            (crate::env::GITHUB_SHA, "0123456789abcdef0123456789abcdef01234567"),
            (crate::env::GITHUB_REF, "refs/pull/42/merge"),
            (crate::env::GITHUB_RUN_ID, "9001"),
            (crate::env::GITHUB_RUN_ATTEMPT, "2"),
            (crate::env::GITHUB_SERVER_URL, "https://github.com"),
            (crate::env::GITHUB_REPOSITORY, "contoso/devices"),
            (crate::env::GITHUB_ACTOR, "octocat\u{1b}[31m"),
        ];
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
        let p = run_provenance(&env, Path::new("/nonexistent"));
        assert_eq!(p.ci.as_deref(), Some("github-actions"));
        assert_eq!(p.pull_request.as_deref(), Some("42"));
        assert_eq!(p.run_id.as_deref(), Some("9001 (attempt 2)"));
        assert_eq!(p.run_url.as_deref(), Some("https://github.com/contoso/devices/actions/runs/9001"));
        assert_eq!(p.actor.as_deref(), Some("octocat[31m"), "control characters are dropped");
        assert_eq!(
            ci_run(&env).as_deref(),
            Some("github-actions run 9001 (attempt 2) https://github.com/contoso/devices/actions/runs/9001"),
            "a lock names the run holding it"
        );
    }

    #[test]
    fn azure_pipelines_variables_make_the_provenance_and_values_are_cut() {
        let long = "a".repeat(400);
        let vars = [
            (crate::env::TF_BUILD, "True"),
            (crate::env::BUILD_SOURCEVERSION, "89abcdef"),
            (crate::env::BUILD_BUILDID, "318"),
            (crate::env::SYSTEM_COLLECTIONURI, "https://dev.azure.com/contoso/"),
            (crate::env::SYSTEM_TEAMPROJECT, "Intune Ops"),
            (crate::env::SYSTEM_PULLREQUEST_PULLREQUESTID, "77"),
            (crate::env::BUILD_REQUESTEDFOREMAIL, long.as_str()),
        ];
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
        let p = run_provenance(&env, Path::new("/nonexistent"));
        assert_eq!(
            (p.ci.as_deref(), p.commit.as_deref(), p.pull_request.as_deref()),
            (Some("azure-pipelines"), Some("89abcdef"), Some("77"))
        );
        assert_eq!(p.run_url.as_deref(), Some("https://dev.azure.com/contoso/Intune%20Ops/_build/results?buildId=318"));
        assert_eq!(p.actor.map(|a| a.len()), Some(MAX_LEN), "values are cut");
        assert_eq!(ci_run(&|_| None), None, "outside CI no run is named");
    }
}
