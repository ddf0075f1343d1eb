//! The pure core: what an action is, what the plan says, what the policy allows, what a
//! recorded attempt means. Nothing here does I/O or reads the clock or the environment: time,
//! devices and the ledger come in as values, so every rule is a function a unit test can call.
//!
//! - [`action`] — an action's identity (the canonical form and its key);
//! - [`device`] — devices as plans show them, and their platform;
//! - [`kinds`] — each kind of device action as data: how it is sent, which devices can take
//!   it, the names Intune reports it under, its words;
//! - [`plan`] — the diff `(actions, ledger) → Plan`, with the devices and violations found;
//! - [`policy`] — guard rails: the rules, the stricter of several policies, change windows;
//! - [`out_of_band`] — actions made outside this tool, found in what Intune reports;
//! - [`refresh`] — what Intune's evidence says became of an attempt;
//! - [`release`] — which planned actions may leave while devices are still looked up;
//! - [`retry`] — one decision for every answer Graph gives;
//! - [`saved`] — saved plans and whether one still holds;
//! - [`violation`] — a policy violation and its rule code.

pub mod action;
pub(crate) mod approval;
pub(crate) mod device;
pub(crate) mod kinds;
pub(crate) mod out_of_band;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod refresh;
pub(crate) mod release;
pub(crate) mod retry;
pub(crate) mod saved;
pub(crate) mod violation;
