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

//!
//! **Visibility.** Everything is `pub(crate)` unless something outside the crate needs it (the
//! `unreachable_pub` lint keeps it so): the binary calls [`main`]; the integration tests and
//! benchmarks drive the [`sim`]ulator, build ledgers through [`state`] and [`action`], load
//! manifests through [`manifest`], and name a few settings, Graph credentials and the comment
//! marker. A module left `pub` here exports only those items; the rest of it is `pub(crate)`.

#![forbid(unsafe_code)]

pub mod action;
mod apply;
mod audit;
mod azure_devops;
mod cli;
mod cloud;
mod confine;
mod device;
pub mod diagnostic;
mod duration;
mod env;
mod git;
mod github;
pub mod graph;
mod http;
pub mod manifest;
mod ops;
mod out_of_band;
mod plan;
mod policy;
mod project;
mod refresh;
pub mod render;
mod resolve;
mod retry;
mod safe;
mod saved;
mod schema;
pub mod settings;
pub mod sim;
pub mod state;
mod violation;

pub use cli::main;
