//! The one place that reads `reconcile.yaml` and the environment.
//!
//! Precedence: command-line flag > environment > `reconcile.yaml` > default. Everything else in the
//! crate receives a [`Settings`] value and never looks at files or variables itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::duration::HumanDuration;
use crate::manifest::ManifestInput;
use crate::manifest::source::{self, duration, pos_of};

/// The config file looked for in the working directory when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "reconcile.yaml";
/// The local ledger used when neither `--state` nor `state:` says otherwise.
pub(crate) const DEFAULT_STATE: &str = ".reconcile/state.json";
/// Intune's documented write limit per app and tenant: 200 requests per 20 seconds.
pub(crate) const INTUNE_WRITE_LIMIT: (u32, Duration) = (200, Duration::from_secs(20));
/// Intune's documented limit of all requests per app and tenant: 2,000 per 20 seconds.
pub(crate) const INTUNE_READ_LIMIT: (u32, Duration) = (2_000, Duration::from_secs(20));

pub use crate::cloud::Cloud;
pub use crate::graph::{ApiVersion, Budget};

/// `reconcile.yaml` as written. Every key is optional.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "intune-reconcile config (reconcile.yaml)")]
pub(crate) struct RawConfig {
    /// Manifest files, folders or globs, relative to this file. Default `[manifests]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub manifests: Option<Vec<Spanned<String>>>,
    /// The ledger path, relative to this file. Default `.reconcile/state.json`.
    #[schemars(with = "Option<String>")]
    pub state: Option<Spanned<String>>,
    /// How to talk to Microsoft Graph.
    pub graph: Option<RawGraph>,
    /// The built-in simulator used by `--simulate`.
    pub simulator: Option<RawSimulator>,
    /// Guard rails enforced by `validate`, `plan` and `apply` (apply refuses on any violation).
    pub policy: Option<crate::core::policy::RawPolicy>,
    /// What plans show.
    pub plan: Option<RawPlan>,
}

/// The `plan:` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawPlan {
    /// Show each device's primary user (its UPN in Intune) on every plan line: text, Markdown,
    /// JSON and saved plans. Default `false`: a plan names no person the manifest did not name.
    pub show_user: Option<bool>,
}

/// The `simulator:` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSimulator {
    /// A JSON array of managedDevice objects to seed the simulator with, relative to this file.
    /// Default: the examples' fixture, built in.
    #[schemars(with = "Option<String>")]
    pub devices: Option<Spanned<String>>,
}

/// The `graph:` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawGraph {
    /// `global` (default), `usgov`, `usgov-dod` or `china`.
    #[schemars(with = "Option<Cloud>")]
    pub cloud: Option<Spanned<String>>,
    /// `v1.0` (default) or `beta`.
    pub api_version: Option<ApiVersion>,
    /// Requests in flight at most. Default 4.
    #[schemars(with = "Option<u32>", range(min = 1, max = 64))]
    pub concurrency: Option<Spanned<i64>>,
    /// Client-side pacing of POSTs. Default 150 requests per 20s.
    pub write_budget: Option<RawBudget>,
    /// Client-side pacing of GETs (device lookups, refresh). Default 1900 requests per 20s.
    pub read_budget: Option<RawBudget>,
    /// One request's deadline; a POST past it becomes `unknown`. Default `30s`.
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<Spanned<String>>,
    /// How much of Intune's time must pass after an intent before "no trace in Intune" may make
    /// an unknown action sendable again. Default `15m`; `never`: only a person decides (`reconcile
    /// state resolve`).
    #[schemars(with = "Option<String>", regex(pattern = r"^([0-9]+(ms|s|m|h)|never)$"))]
    pub unknown_grace: Option<Spanned<String>>,
    /// Waits after a 429 that carries no `Retry-After`: exponential with jitter from `initial`
    /// (default `3s`) up to `max` (default `3m`).
    pub backoff: Option<RawBackoff>,
}

/// The `graph.backoff:` section.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackoff {
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub initial: Option<Spanned<String>>,
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub max: Option<Spanned<String>>,
}

/// A number of requests per time window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    #[schemars(with = "u32", range(min = 1))]
    pub requests: Spanned<i64>,
    #[schemars(with = "String", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub window: Spanned<String>,
}

/// The `graph:` settings after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphSettings {
    pub cloud: Cloud,
    pub api_version: ApiVersion,
    pub concurrency: u32,
    pub write_budget: Budget,
    pub read_budget: Budget,
    pub timeout: Duration,
    /// `None`: `never`.
    pub unknown_grace: Option<Duration>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for GraphSettings {
    fn default() -> Self {
        GraphSettings {
            cloud: Cloud::Global,
            api_version: ApiVersion::V1,
            concurrency: 4,
            write_budget: Budget { requests: 150, window: Duration::from_secs(20) },
            read_budget: Budget { requests: 1_900, window: Duration::from_secs(20) },
            timeout: Duration::from_secs(30),
            unknown_grace: Some(Duration::from_secs(15 * 60)),
            backoff_initial: Duration::from_secs(3),
            backoff_max: Duration::from_secs(180),
        }
    }
}

/// Everything a command needs to know about where things are and how to behave.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub manifests: Vec<ManifestInput>,
    /// The ledger: a path, or an Azure Blob Storage URL (docs/contract.md, Ledger).
    pub state: crate::ledger::Location,
    /// The ledger `--simulate` uses (always local).
    pub sim_state: PathBuf,
    /// The repository, when the ledger is a file the repository named (not the operator): the
    /// ledger's real location, resolved when it is opened, must stay inside it.
    pub state_root: Option<PathBuf>,
    pub graph: GraphSettings,
    /// `AZURE_TENANT_ID`, which binds the ledger.
    pub tenant: Option<String>,
    /// `RECONCILE_GRAPH_URL`: replaces the cloud's Graph root.
    pub graph_url: Option<String>,
    /// `AZURE_AUTHORITY_HOST`: replaces the cloud's login host.
    pub authority_host: Option<String>,
    /// The device fixture for `--simulate`, if the config names one.
    pub sim_devices: Option<PathBuf>,
    /// The policy in effect: the stricter of the operator's floor, the repository's `policy:`
    /// section and, for a change under review, the same section before it.
    pub policy: crate::core::policy::Policy,
    /// The repository's own `policy:` section, validated.
    pub repo_policy: crate::core::policy::Policy,
    /// The operator's policy (`RECONCILE_POLICY` / `--policy`), if any.
    pub floor: Option<crate::core::policy::Floor>,
    /// Plans show each device's primary user (`plan.showUser`, `--show-user`).
    pub show_user: bool,
}

impl Settings {
    /// The ledger `--simulate` uses: always a separate file beside the real one
    /// (`state.json` → `state.simulated.json`), so a simulated run can never touch a real ledger.
    pub(crate) fn simulated_state(&self) -> PathBuf {
        self.sim_state.clone()
    }
}

/// `state.json` → `state.simulated.json`: a simulated run can never touch a real ledger.
fn simulated_path(state: PathBuf) -> PathBuf {
    if state.file_name().is_some_and(|n| n.to_string_lossy().contains(".simulated")) {
        return state;
    }
    let stem = state.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let ext = state.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    state.with_file_name(format!("{stem}.simulated{ext}"))
}

/// What the command line says about settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub config: Option<PathBuf>,
    pub state: Option<PathBuf>,
    /// `--policy`: the operator's policy file.
    pub policy: Option<PathBuf>,
    /// The policy before the change under review, which the change's actions are judged by too.
    pub base: Base,
    /// `plan --show-user`: plans show each device's primary user, whatever `plan.showUser` says.
    pub show_user: bool,
}

/// Which revision's `reconcile.yaml` holds the policy before the change under review: a change
/// may loosen the policy or rely on a loosening, never both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Base {
    /// No change under review (validate, state, refresh …).
    #[default]
    None,
    /// `plan --base REF`: where the pull request forks from `REF`.
    ForkFrom(String),
    /// `apply` after a merge: the first parent of `HEAD`, when there is one.
    FirstParent,
    /// A commit named elsewhere (a saved plan's base, `watch --apply`'s previous cycle).
    Commit(String),
}

/// Reads the config (if any) and environment. Problems in the config become diagnostics with
/// positions; the settings returned are usable only when `diags` has no errors.
pub(crate) fn load(overrides: &Overrides, env: &dyn Fn(&str) -> Option<String>, diags: &mut Diagnostics) -> Settings {
    let (config_file, raw, base) = read_config(overrides, diags);
    let mut graph = GraphSettings::default();
    let file = config_file.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    // Where credentials may go is the environment's decision, never the repository's.
    let pinned = match env(crate::env::AZURE_CLOUD).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        None => Cloud::Global,
        Some(v) => match Cloud::parse_or_hint(&v) {
            Ok(c) => c,
            Err(hint) => {
                diags.push(
                    Diagnostic::plain_error(format!("AZURE_CLOUD `{}` is not a cloud", v.escape_debug()))
                        .with_hint(hint),
                );
                Cloud::Global
            }
        },
    };
    graph.cloud = pinned;
    if let Some(mut g) = raw.graph {
        let written = g.cloud.take();
        let cloud = written.as_ref().and_then(|c| match Cloud::parse_or_hint(c.value.trim()) {
            Ok(cloud) => Some(cloud),
            Err(hint) => {
                diags.push(
                    Diagnostic::error(
                        &file,
                        pos_of(c, 0),
                        format!("graph.cloud `{}` is not a cloud", c.value.escape_debug()),
                    )
                    .with_hint(hint),
                );
                None
            }
        });
        if let Some(c) = cloud
            && c != pinned
        {
            diags.push(
                Diagnostic::error(
                    &file,
                    None,
                    format!(
                        "graph.cloud is `{}`, but this environment pins AZURE_CLOUD=`{}`: credentials go only where the environment says",
                        c.as_str(),
                        pinned.as_str()
                    ),
                )
                .with_hint("set AZURE_CLOUD in the CI environment (not in the repository) to the tenant's cloud, or fix graph.cloud"),
            );
        }
        apply_graph(g, &file, &mut graph, diags);
        graph.cloud = pinned;
    }
    let manifests = match raw.manifests {
        Some(list) => list
            .into_iter()
            .map(|m| ManifestInput {
                base: base.clone(),
                pos: pos_of(&m, 0),
                pattern: m.value,
                origin: Some(file.clone()),
                confine_to: Some(base.clone()),
            })
            .collect(),
        None => vec![ManifestInput {
            base: base.clone(),
            pattern: "manifests".into(),
            origin: None,
            pos: None,
            confine_to: Some(base.clone()),
        }],
    };
    // The repository may name the ledger only inside itself (`state:`, or the default through a
    // committed symlink); `--state` is the operator's.
    // A Blob URL is fine from either, but only to the pinned cloud's storage (or loopback).
    // The operator's choice: `--state`, else RECONCILE_STATE.
    let operator = overrides.state.clone().map(|s| (s, "--state")).or_else(|| {
        env(crate::env::RECONCILE_STATE)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (PathBuf::from(v.trim()), crate::env::RECONCILE_STATE))
    });
    // A Blob URL in the repository only repeats the operator's: where storage credentials go is
    // never the repository's to say.
    if let Some(named) = &raw.state
        && let Ok(Some(url)) = crate::ledger::Location::parse(&named.value, pinned)
    {
        let operators = operator.as_ref().map(|(s, _)| crate::ledger::Location::parse(&s.to_string_lossy(), pinned));
        if !matches!(&operators, Some(Ok(Some(o))) if *o == url) {
            let theirs = match &operator {
                Some((s, from)) => {
                    format!("the operator's ledger is `{}` ({from})", crate::diag::safe::text(&s.to_string_lossy()))
                }
                None => "the operator named none (--state or RECONCILE_STATE)".to_owned(),
            };
            diags.push(
                Diagnostic::error(
                    &file,
                    pos_of(named, 0),
                    format!("state: the Blob URL `{}` is not the operator's: {theirs}", crate::diag::safe::text(&url.to_string())),
                )
                .with_hint("a Blob ledger is chosen by the operator with RECONCILE_STATE or --state; reconcile.yaml may only repeat it"),
            );
        }
    }
    let mut state_root = None;
    let state = match (&operator, raw.state) {
        (Some((s, from)), _) => match crate::ledger::Location::parse(&s.to_string_lossy(), pinned) {
            Ok(Some(url)) => crate::ledger::Location::Blob(Box::new(url)),
            Ok(None) => crate::ledger::Location::Local(s.clone()),
            Err(e) => {
                diags.push(Diagnostic::plain_error(format!("{from}: {e}")));
                crate::ledger::Location::Local(s.clone())
            }
        },
        (None, named) => {
            let text = named.as_ref().map_or(DEFAULT_STATE, |s| s.value.as_str());
            match crate::ledger::Location::parse(text, pinned) {
                Ok(Some(url)) => crate::ledger::Location::Blob(Box::new(url)),
                Ok(None) => {
                    let path = join(&base, Path::new(text));
                    let at = named.as_ref().and_then(|s| pos_of(s, 0));
                    match crate::confine::inside(&base, &path) {
                        Err(e) => diags.push(Diagnostic::error(&file, at, format!("state: {e}")).with_hint(
                            "the ledger the repository names must be inside it; the operator may pass --state or set RECONCILE_STATE",
                        )),
                        Ok(resolved) if crate::confine::in_hidden_folder(&base, &resolved) => diags.push(
                            Diagnostic::error(
                                &file,
                                at,
                                format!("state: `{}` is inside a hidden folder (such as .git)", crate::diag::safe::text(text)),
                            )
                            .with_hint("keep the ledger in .reconcile/ or a visible folder of the repository"),
                        ),
                        Ok(_) => {}
                    }
                    state_root = Some(base.clone());
                    crate::ledger::Location::Local(path)
                }
                Err(e) => {
                    diags.push(Diagnostic::error(
                        &file,
                        named.as_ref().and_then(|s| pos_of(s, 0)),
                        format!("state: {e}"),
                    ));
                    crate::ledger::Location::Local(join(&base, Path::new(DEFAULT_STATE)))
                }
            }
        }
    };
    let sim_state = simulated_path(match &state {
        crate::ledger::Location::Local(p) => p.clone(),
        crate::ledger::Location::Blob(_) | crate::ledger::Location::Memory(_) => join(&base, Path::new(DEFAULT_STATE)),
    });
    let nonempty = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let mut settings = Settings {
        manifests,
        state,
        sim_state,
        state_root,
        graph,
        tenant: nonempty(crate::env::AZURE_TENANT_ID),
        graph_url: nonempty(crate::env::RECONCILE_GRAPH_URL),
        authority_host: nonempty(crate::env::AZURE_AUTHORITY_HOST),
        sim_devices: raw.simulator.and_then(|s| s.devices).map(|d| {
            let path = join(&base, Path::new(&d.value));
            if let Err(e) = crate::confine::inside(&base, &path) {
                diags.push(Diagnostic::error(&file, pos_of(&d, 0), format!("simulator.devices: {e}")));
            }
            path
        }),
        policy: crate::core::policy::Policy::default(),
        repo_policy: raw.policy.map(|p| crate::core::policy::Policy::from_raw(p, &file, diags)).unwrap_or_default(),
        floor: None,
        show_user: overrides.show_user || raw.plan.as_ref().and_then(|p| p.show_user).unwrap_or(false),
    };
    // The operator's floor: a file the repository cannot change.
    let floor_path = overrides.policy.clone().or_else(|| nonempty(crate::env::RECONCILE_POLICY).map(PathBuf::from));
    settings.floor = floor_path.and_then(|p| crate::core::policy::Floor::load(&p, diags));
    if let Some(f) = &settings.floor {
        for w in f.warnings(&settings.repo_policy) {
            diags.push(w);
        }
    }
    let base = base_policy(&overrides.base, overrides.config.as_deref(), diags);
    settings.policy = crate::core::policy::effective(settings.floor.as_ref(), &settings.repo_policy, base);
    settings
}

/// The repository's policy before the change under review (`None`: no change under review, or
/// nothing in git to compare with), named by its short commit.
fn base_policy(
    base: &Base,
    config: Option<&Path>,
    diags: &mut Diagnostics,
) -> Option<(String, crate::core::policy::Policy)> {
    let commit = match base {
        Base::None => return None,
        Base::FirstParent => match crate::ci::git::first_parent() {
            Some(c) => c,
            // A shallow clone has cut the parent off: judging without it would let a merged
            // change rely on its own loosening.
            None if crate::ci::git::is_shallow() => {
                diags.push(
                    Diagnostic::plain_error(
                        "cannot judge this change by the policy before it: the clone is shallow and HEAD's first parent is missing",
                    )
                    .with_hint("fetch the history: actions/checkout `fetch-depth: 0`, Azure Pipelines `fetchDepth: 0` (or at least 2)"),
                );
                return None;
            }
            None => return None,
        },
        Base::ForkFrom(rev) => match crate::ci::git::fork_point(rev) {
            Ok(c) => c,
            Err(e) => {
                diags.push(Diagnostic::plain_error(e.to_string()));
                return None;
            }
        },
        Base::Commit(rev) => match crate::ci::git::commit(rev) {
            Ok(c) => c,
            Err(e) => {
                diags.push(Diagnostic::plain_error(format!("the policy before this change: {e}")));
                return None;
            }
        },
    };
    let short: String = commit.chars().take(12).collect();
    // The config as the working directory names it; one outside the working tree is the
    // operator's, not the change's.
    let path = config.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf);
    let rel = match std::env::current_dir() {
        Ok(cwd) if path.is_absolute() => path.strip_prefix(&cwd).ok()?.to_path_buf(),
        _ => path.clone(),
    };
    let text = match crate::ci::git::file_at(&commit, &rel) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            diags.push(Diagnostic::plain_error(format!("the policy before this change: {e}")));
            return None;
        }
    };
    let mut found = Diagnostics::default();
    let raw = match source::split_documents(&text).as_slice() {
        [] => Some(RawConfig::default()),
        [doc] => source::parse_document::<RawConfig>(&rel, doc, &mut found),
        _ => None,
    };
    let policy = raw.map(|r| {
        r.policy
            .map(|p| {
                crate::core::policy::Policy::from_raw_as(
                    p,
                    &rel,
                    crate::core::policy::Origin::Base(short.clone()),
                    &mut found,
                )
            })
            .unwrap_or_default()
    });
    match policy {
        Some(p) if !found.has_errors() => Some((short, p)),
        _ => {
            diags.push(Diagnostic::warning(
                &rel,
                None,
                format!("the policy at {short} cannot be read, so this change is judged by its own policy only"),
            ));
            None
        }
    }
}

fn join(base: &Path, p: &Path) -> PathBuf {
    if base.as_os_str().is_empty() || base == Path::new(".") || p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read_config(overrides: &Overrides, diags: &mut Diagnostics) -> (Option<PathBuf>, RawConfig, PathBuf) {
    let path = match &overrides.config {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return (None, RawConfig::default(), PathBuf::from(".")),
    };
    let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let Some(src) = source::read_text(&path, diags) else {
        return (Some(path), RawConfig::default(), base);
    };
    let docs = source::split_documents(&src.text);
    let raw = match docs.as_slice() {
        [] => Some(RawConfig::default()),
        [doc] => source::parse_document::<RawConfig>(&path, doc, diags),
        [_, second, ..] => {
            diags.push(Diagnostic::error(
                &path,
                Some(crate::diag::Pos::new(second.line_offset + 1, 1)),
                "the config holds more than one YAML document",
            ));
            None
        }
    };
    (Some(path), raw.unwrap_or_default(), base)
}

fn apply_graph(g: RawGraph, file: &Path, graph: &mut GraphSettings, diags: &mut Diagnostics) {
    if let Some(v) = g.api_version {
        graph.api_version = v;
    }
    if let Some(c) = g.concurrency {
        match u32::try_from(c.value) {
            Ok(n @ 1..=64) => graph.concurrency = n,
            _ => diags.push(Diagnostic::error(
                file,
                pos_of(&c, 0),
                format!("invalid graph.concurrency `{}`: must be from 1 to 64", c.value),
            )),
        }
    }
    if let Some(t) = g.timeout.and_then(|t| capped(&t, "graph.timeout", MAX_TIMEOUT, file, diags)) {
        graph.timeout = t;
    }
    if let Some(t) = g.unknown_grace {
        if t.value.trim() == "never" {
            graph.unknown_grace = None;
        } else if let Some(d) = capped(&t, "graph.unknownGrace", MAX_UNKNOWN_GRACE, file, diags) {
            graph.unknown_grace = Some(d);
        }
    }
    if let Some(b) = g.backoff {
        if let Some(t) = b.initial.and_then(|t| capped(&t, "graph.backoff.initial", MAX_BACKOFF, file, diags)) {
            graph.backoff_initial = t;
        }
        if let Some(t) = b.max.and_then(|t| capped(&t, "graph.backoff.max", MAX_BACKOFF, file, diags)) {
            graph.backoff_max = t;
        }
    }
    if let Some(b) = g.write_budget.and_then(|b| budget(&b, "writeBudget", INTUNE_WRITE_LIMIT, file, diags)) {
        graph.write_budget = b;
    }
    if let Some(b) = g.read_budget.and_then(|b| budget(&b, "readBudget", INTUNE_READ_LIMIT, file, diags)) {
        graph.read_budget = b;
    }
}

/// The longest `graph.timeout` the repository may set: one hung request must not hold a run
/// (and the ledger's lock) for longer.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest `graph.backoff.initial` / `graph.backoff.max`: a wait after a 429 the repository
/// chose must not park the run for hours.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// The longest `graph.unknownGrace` other than `never` (which says "only a person decides").
pub(crate) const MAX_UNKNOWN_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A duration from the repository, refused on its line when it is longer than `max`: the
/// repository may tune waits, not switch the run off.
fn capped(s: &Spanned<String>, key: &str, max: Duration, file: &Path, diags: &mut Diagnostics) -> Option<Duration> {
    let d = duration(s, key, file, diags)?;
    if d > max {
        diags.push(
            Diagnostic::error(
                file,
                pos_of(s, 0),
                format!("{key} `{}` is longer than the {} this setting allows", s.value.trim(), HumanDuration(max)),
            )
            .with_hint(format!("use at most {}", HumanDuration(max))),
        );
        return None;
    }
    Some(d)
}

/// A budget from the config; one above Intune's documented `limit` is kept with a warning.
fn budget(b: &RawBudget, key: &str, limit: (u32, Duration), file: &Path, diags: &mut Diagnostics) -> Option<Budget> {
    let requests = match u32::try_from(b.requests.value) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            diags.push(Diagnostic::error(
                file,
                pos_of(&b.requests, 0),
                format!("invalid graph.{key}.requests `{}`: must be at least 1", b.requests.value),
            ));
            None
        }
    };
    let window = duration(&b.window, &format!("graph.{key}.window"), file, diags);
    if window.is_some_and(|w| w.is_zero()) {
        diags.push(Diagnostic::error(file, pos_of(&b.window, 0), format!("graph.{key}.window must be longer than 0s")));
        return None;
    }
    let (requests, window) = (requests?, window?);
    let (max, max_window) = limit;
    if f64::from(requests) / window.as_secs_f64() > f64::from(max) / max_window.as_secs_f64() {
        let kind = if key == "readBudget" { "requests" } else { "writes" };
        diags.push(
            Diagnostic::warning(
                file,
                pos_of(&b.requests, 0),
                format!(
                    "graph.{key} of {requests} per {} is above Intune's documented limit of {max} {kind} per 20s per app",
                    HumanDuration(window)
                ),
            )
            .with_hint("expect 429 throttling unless your tenant has other limits"),
        );
    }
    Some(Budget { requests, window })
}
