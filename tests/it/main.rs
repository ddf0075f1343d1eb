//! Every integration test in one binary: the real `reconcile` binary against the simulator (and
//! Azurite) on loopback, real files in temporary directories. One binary links once and shares
//! `common` (cargo's own test suite is laid out the same way).

mod common;

mod apply;
mod architecture;
mod auth;
mod blob;
mod crash;
mod exactly_once;
mod guard_rails;
mod hostile;
mod kinds;
mod kinds_plan;
mod kinds_policy;
mod ledger_backends;
mod ledger_paths;
mod maa;
mod out_of_band;
mod plan;
mod policy;
mod resolve;
mod review;
mod schema;
mod setup;
mod sim;
mod simulate;
mod state;
mod trust;
mod validate;
mod walk;
mod watch;
mod workflow;
