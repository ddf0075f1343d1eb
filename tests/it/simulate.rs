//! `--simulate`: the README's main job, on a copy of the examples.

use crate::common::{Repo, stderr, stdout};

#[test]
fn simulated_apply_twice_then_refresh() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["apply", "--simulate", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("SIMULATED"), "{text}");
    // The fixture's device R58M12345AB was reset in the portal 40 minutes before: adopted.
    assert!(
        text.contains("SIMULATED: Apply complete: 6 accepted, 0 rejected, 0 unknown, 0 not executed, 0 blocked. 1 reset made outside reconcile adopted (nothing sent)."),
        "{text}"
    );
    assert!(
        text.contains("* adopt           serialNumber=R58M12345AB")
            && text.contains("\n      reset outside reconcile 40 min ago by helpdesk.lead@contoso.com (done) — adopted, nothing will be sent\n"),
        "{text}"
    );
    assert!(repo.path().join(".reconcile/state.simulated.json").exists());
    assert!(!repo.path().join(".reconcile/state.json").exists(), "the real ledger is never touched");

    let again = repo.cmd().args(["apply", "--simulate", "--auto-approve"]).output().expect("run");
    assert!(again.status.success());
    assert!(stdout(&again).contains("SIMULATED: Nothing to do."), "{}", stdout(&again));

    let refresh = repo.cmd().args(["refresh", "--simulate"]).output().expect("run");
    assert!(refresh.status.success(), "{}", stderr(&refresh));
    assert!(stdout(&refresh).contains("SIMULATED: Refresh: 6 checked, 6 changed"), "{}", stdout(&refresh));

    let plan = repo.cmd().args(["plan", "--simulate", "--detailed-exitcode", "--show-done"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    assert!(stdout(&plan).contains("Plan: 0 to reset, 7 already done, 0 orphaned."));
    assert!(stdout(&plan).contains("= done            serialNumber=R58M12345AB"), "{}", stdout(&plan));
    assert!(stdout(&plan).contains("\n      adopted: reset outside reconcile at "), "{}", stdout(&plan));
}

// A simulated ledger is bound to the simulator's tenant: a real run refuses it.
#[test]
fn a_simulated_ledger_is_refused_for_a_real_tenant() {
    let repo = Repo::from_examples();
    repo.cmd().args(["apply", "--simulate", "--auto-approve"]).assert().success();
    let out = repo
        .cmd()
        .args(["plan", "--offline", "--state", ".reconcile/state.simulated.json"])
        .env("AZURE_TENANT_ID", "contoso-tenant")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("belongs to tenant `simulated-tenant`"), "{}", stderr(&out));
}

// `reconcile sim` is a real server another process can use, as the README shows.
#[test]
fn the_standalone_simulator_serves_another_process() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = crate::common::StandaloneSim::start(&["--complete-after", "0s"]);
    let out = repo.cmd().envs(sim.env("s")).args(["apply", "--auto-approve"]).output().expect("run");
    // SIGTERM (as a harness or a service manager stops it): a clean stop, exit 0.
    let status = sim.stop();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(out.status.success(), "{}", stderr(&out));
    // The standalone simulator makes the fixture's portal reset too.
    assert!(stdout(&out).contains("Apply complete: 6 accepted"), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 reset made outside reconcile adopted"), "{}", stdout(&out));
}

// `--simulate --state X` still writes a separate ledger: X is never touched.
#[test]
fn simulate_never_writes_the_named_real_ledger() {
    let repo = Repo::from_examples();
    repo.cmd().args(["apply", "--simulate", "--auto-approve", "--state", "real.json"]).assert().success();
    assert!(!repo.path().join("real.json").exists());
    assert!(repo.path().join("real.simulated.json").exists());
}
