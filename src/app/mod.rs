//! Operations: what `plan`, `apply` and `refresh` do, with every check and refusal, whoever asks
//! (cargo's `commands/` → `ops/` split). `cli/` turns flags into a request and renders what comes
//! back, and the [`event::Event`]s an operation emits while it runs; `watch` calls the same
//! operations through one [`Session`] and renders the same events its own way. The session also
//! carries the one [`Clock`] every operation reads the time from.
//!
//! The engines below them are pure or nearly so: [`crate::core::plan`] diffs, [`crate::core::policy`] judges,
//! [`crate::exec`] executes, [`crate::core::refresh`] settles. An operation wires them to the
//! settings, the ledger and Graph, in the order the guarantees need (every refusal before the
//! first request).

pub(crate) mod adopt;
pub(crate) mod apply;
pub(crate) mod comment;
pub(crate) mod connect;
pub(crate) mod doctor;
pub(crate) mod event;
pub(crate) mod init;
pub(crate) mod plan;
pub(crate) mod project;
pub(crate) mod refresh;
pub(crate) mod state;
pub(crate) mod watch;

use std::path::PathBuf;

use crate::diag::Diagnostics;
use crate::settings::Overrides;
use project::Project;

use crate::clock::{Clock, SharedClock};
use crate::settings::Settings;
use connect::Connection;

/// Why an operation did nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The config or the manifests are wrong (every problem, with file and line).
    #[error("the config or the manifests are invalid")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What a command (or every cycle of `watch`) works with: one async runtime, and one Graph
/// connection per configuration, kept so that its pacer's learned slow-down and its token last
/// as long as the session.
#[derive(Debug)]
pub(crate) struct Session {
    runtime: tokio::runtime::Runtime,
    connection: Option<(String, Connection)>,
    /// Where every operation of the session reads the time.
    clock: SharedClock,
}

impl Session {
    /// A session on this machine's clock.
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Session { runtime: connect::runtime()?, connection: None, clock: crate::clock::system() })
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The runtime, and the connection `settings` describe: the one already made when they describe the same one
    /// (same cloud, endpoints, budgets, ledger, simulator), else a new one.
    pub(crate) fn connect(
        &mut self,
        settings: &Settings,
        simulate: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(&tokio::runtime::Runtime, &Connection)> {
        let id = format!(
            "{simulate} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            settings.graph,
            settings.state,
            settings.sim_state,
            settings.graph_url,
            settings.authority_host,
            settings.sim_devices,
            settings.tenant
        );
        if self.connection.as_ref().is_none_or(|(known, _)| *known != id) {
            // The old one goes first: a simulator keeps its state for the next.
            self.connection = None;
            let conn = connect::connect(settings, simulate, env)?;
            self.connection = Some((id, conn));
        }
        Ok((&self.runtime, &self.connection.as_ref().expect("set above").1))
    }
}

/// `validate`: the config and the manifests, with the policy rules the manifests alone can
/// break. Every problem (and warning) is in the `Err`; no network.
pub(crate) fn validate(
    overrides: &Overrides,
    paths: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, Diagnostics> {
    let mut p = project::load(overrides, paths, env)?;
    let violations = p.settings.policy.check_manifests(&p.manifests);
    if violations.is_empty() {
        return Ok(p);
    }
    for v in violations {
        p.diagnostics.push(v.diagnostic);
    }
    p.diagnostics.sort();
    Err(p.diagnostics)
}
