//! intune-reconcile: pull-request change control for Intune device actions.
//!
//! Layers (each depends only on those below it; ARCHITECTURE.md draws them):
//!
//! - [`cli`] — argument parsing, one file per subcommand: parse → call [`app`] → render; exit
//!   codes and where output goes.
//! - `app` — the operations (`plan`, `apply`, `refresh`, `adopt`, `doctor`): a session wires
//!   settings, the credential, the Graph client and the ledger, in the order the guarantees need.
//! - `exec` — the executor: look up while sending; intent → send → outcome for every attempt.
//! - [`core`] — pure: action identity, plan, policy, refresh decisions, out-of-band actions.
//! - [`ledger`] — the ledger's model, its engine (lock, append, compact) and its backends.
//! - [`graph`] — Microsoft Graph: credentials, pacing, requests, errors.
//! - [`render`] — plans, ledgers and reports as text, JSON and Markdown.
//! - `diag` — `file:line:column` diagnostics and untrusted text made safe for each sink.
//! - `ci` — provenance, the pull request comment on GitHub and Azure DevOps, `git`.
//! - [`manifest`], [`settings`], `schema`, `env`, `cloud`, `confine`, `duration`, `http`, `clock` —
//!   reading what the repository and the operator say.
//! - [`sim`] — the built-in simulator of Graph and Intune.
//!
//! **Visibility.** Everything is `pub(crate)` unless something outside the crate needs it (the
//! `unreachable_pub` lint keeps it so): the binary calls [`main`]; the integration tests and
//! benchmarks drive the [`sim`]ulator, build ledgers through [`ledger`] and [`core::action`], load
//! manifests through [`manifest`], and name a few settings, Graph credentials and the comment
//! marker. A module left `pub` here exports only those items; the rest of it is `pub(crate)`.

#![forbid(unsafe_code)]

mod app;
mod ci;
mod cli;
mod clock;
mod cloud;
mod confine;
pub mod core;
pub mod diag;
mod duration;
mod env;
mod exec;
pub mod graph;
mod http;
pub mod ledger;
pub mod manifest;
pub mod render;
mod schema;
pub mod settings;
pub mod sim;

pub use cli::main;
