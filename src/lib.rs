//! intune-reconcile: pull-request change control for Intune device actions.
//!
//! Code map (data flows top to bottom):
//!
//! - [`cli`] — argument parsing and one file per subcommand; turns flags into options and calls
//!   the core. The only place with `anyhow`, exit codes and stdout/stderr decisions.
//! - [`settings`] — the one place that reads `reconcile.yaml` and the environment.
//! - [`confine`] — paths the repository names stay inside it.
//! - [`manifest`] — finds, parses and validates manifests into [`action::Action`]s, with
//!   `file:line:column` [`diagnostic`]s for every problem.
//! - [`action`] — `Action` and `ActionKey` (the canonical form and its SHA-256).
//! - [`state`] — the ledger model and its local store (snapshot + journal + lock).
//! - [`plan`] — the pure diff `(actions, ledger) → Plan`.
//! - [`render`] — plans and ledger listings as text, JSON and Markdown, to any `io::Write`.
//! - [`schema`] — JSON Schemas generated from the manifest and config types.
//! - [`duration`] — `500ms` / `20s` / `5m` / `1h`.
//!
//! `manifest`, `action`, `plan` and `render` do no I/O beyond reading the manifest files they are
//! given, and never read the clock or the environment.

#![forbid(unsafe_code)]

pub mod action;
pub mod apply;
pub mod audit;
pub mod azure_devops;
pub mod cli;
pub mod cloud;
pub mod confine;
pub mod device;
pub mod diagnostic;
pub mod duration;
pub mod env;
pub mod git;
pub mod github;
pub mod graph;
pub mod manifest;
pub mod ops;
pub mod out_of_band;
pub mod plan;
pub mod policy;
pub mod project;
pub mod refresh;
pub mod render;
pub mod resolve;
pub mod retry;
pub mod safe;
pub mod saved;
pub mod schema;
pub mod settings;
pub mod sim;
pub mod state;
pub mod violation;
