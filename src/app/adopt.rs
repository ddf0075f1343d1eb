//! `state adopt KEY`: a person records, as one manifest action's, a passcode reset made outside
//! this tool (the Intune portal, a script), after Intune confirms there is one. Nothing is sent.
//!
//! # Expected flow
//! 1. Find the action among the manifests by key (or unique prefix), as `plan` shows it.
//! 2. Look its device up, and read the audit log since `within` (who started each reset).
//! 3. Take the latest reset of the device that no ledger record accounts for
//!    ([`crate::core::out_of_band::latest`]); none: refuse, nothing recorded.
//! 4. Under the ledger lock, and only if the action is still not recorded as (possibly) executed,
//!    record it `done` with the evidence, who adopted it and why.

use std::time::Duration;

use super::Session;
use crate::app::project::Project;
use crate::core::action::Action;
use crate::core::out_of_band::{Claims, OutOfBand};
use crate::core::plan::Resolution;
use crate::ledger::{Adoption, Record, Status};

/// What was asked for.
#[derive(Debug, Clone)]
pub(crate) struct AdoptRequest {
    pub key: String,
    pub reason: String,
    /// How far back a reset may be adopted.
    pub within: Duration,
    pub simulate: bool,
    pub lock_timeout: Duration,
}

/// Why nothing was adopted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdoptError {
    #[error("no manifest action has the key `{0}`\nhint: copy the key from `reconcile plan` (at least 4 hex digits)")]
    NoSuchAction(String),
    #[error("the key `{0}` matches {1} actions: give more of it")]
    Ambiguous(String, usize),
    #[error("{key} {selector} is already recorded as `{status}`: there is nothing to adopt")]
    Recorded { key: String, selector: String, status: Status },
    #[error("{selector} cannot be looked up: {why}")]
    NoDevice { selector: String, why: String },
    #[error(
        "Intune shows no {} of device {device} within the last {within} that the ledger does not already account for: nothing was recorded\nhint: check the device in the Intune portal (Device actions status); a {} older than that can be adopted with a longer --within",
        wording.noun,
        wording.short
    )]
    NoEvidence { wording: crate::core::kinds::Wording, device: String, within: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Finds `key` among the project's actions, checks Intune for a reset made outside this tool, and
/// records it. Returns the record written and the evidence.
pub(crate) fn adopt(
    session: &mut Session,
    project: &Project,
    request: &AdoptRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Record, OutOfBand), AdoptError> {
    let actions = project.actions();
    let action = find(&actions, &request.key)?;
    let clock = session.clock.clone();
    let (runtime, conn) = session.connect(&project.settings, request.simulate, env)?;
    let person = crate::ci::provenance::person(env);
    let mut provenance = crate::ci::provenance::run_provenance(env, std::path::Path::new("."));
    provenance.manifest = project.manifest_infos().get(&action.manifest).cloned().unwrap_or_default();
    runtime.block_on(async {
        let ledger = conn.store.load_existing().await.map_err(anyhow::Error::from)?;
        let tenant = conn.tenant().await?;
        conn.store.check_tenant(&ledger, Some(&tenant)).map_err(anyhow::Error::from)?;
        conn.require(crate::graph::auth::Need::Read, "state adopt").await?;
        refuse_recorded(&ledger, action)?;
        let now = clock.now();
        let since = now - jiff::SignedDuration::try_from(request.within).unwrap_or(jiff::SignedDuration::MAX);
        let one = [action];
        let (resolved, audits) = crate::exec::resolve::with_audit_log(&conn.graph, &one, &ledger, since)
            .await
            .map_err(anyhow::Error::from)?;
        let device = match resolved.get(&action.key) {
            Some(Resolution::Device(d) | Resolution::SameDevice(d, _)) => d.clone(),
            Some(Resolution::Blocked(_, why)) => {
                return Err(AdoptError::NoDevice { selector: action.selector.to_string(), why: why.clone() });
            }
            None => {
                return Err(AdoptError::NoDevice { selector: action.selector.to_string(), why: "no answer".into() });
            }
        };
        let evidence =
            crate::core::out_of_band::latest(action.kind.spec(), &device, &audits, &Claims::new(&ledger), since)
                .ok_or_else(|| AdoptError::NoEvidence {
                    wording: action.kind.spec().wording,
                    device: format!("{} ({})", device.id, action.selector),
                    within: crate::duration::HumanDuration(request.within).to_string(),
                })?;
        let mut w = conn
            .store
            .lock(request.lock_timeout, "reconcile state adopt", Some(&tenant))
            .await
            .map_err(anyhow::Error::from)?;
        // Decided on the ledger as it is now, under the lock.
        if let Err(e) = refuse_recorded(w.ledger(), action) {
            w.commit().await.map_err(anyhow::Error::from)?;
            return Err(e);
        }
        let now = clock.now();
        let mut record = crate::core::plan::record_of(w.ledger(), action)
            .cloned()
            .unwrap_or_else(|| Record::new(action, Some(device.id.clone()), now));
        record.managed_device_id = Some(device.id.clone());
        let adoption = Adoption::of(&evidence, now, person.clone(), request.reason.clone(), provenance.clone());
        record.adopt(device.device_name.clone(), adoption);
        w.record_all(vec![record.clone()]).await.map_err(anyhow::Error::from)?;
        w.commit().await.map_err(anyhow::Error::from)?;
        Ok((record, evidence))
    })
}

/// The action whose key is `key` or starts with it (at least 4 hex digits).
fn find<'a>(actions: &'a [Action], key: &str) -> Result<&'a Action, AdoptError> {
    use crate::core::action::KeyMatch;
    match crate::core::action::match_key_prefix(actions, |a| &a.key, key) {
        (_, KeyMatch::One(one)) => Ok(one),
        (prefix, KeyMatch::TooShort | KeyMatch::None) => {
            Err(AdoptError::NoSuchAction(crate::diag::safe::text(&prefix).into_owned()))
        }
        (prefix, KeyMatch::Many(many)) => Err(AdoptError::Ambiguous(prefix, many.len())),
    }
}

/// Refuses an action the ledger records as (possibly) executed: adopting it would hide that.
fn refuse_recorded(ledger: &crate::ledger::Ledger, action: &Action) -> Result<(), AdoptError> {
    match crate::core::plan::record_of(ledger, action) {
        Some(r) if r.status.blocks_sending() => Err(AdoptError::Recorded {
            key: r.key.short().to_owned(),
            selector: r.selector.to_string(),
            status: r.status,
        }),
        _ => Ok(()),
    }
}
