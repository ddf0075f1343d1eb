//! What the repository may say, and what only the operator may say: a pull request
//! cannot decide where credentials go.

use crate::common::{Repo, android_devices, android_id, manifest_for, posts, sim, stderr};
use intune_reconcile::sim::SimConfig;

fn setup() -> (Repo, intune_reconcile::sim::SimHandle) {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0)]));
    (repo, sim(SimConfig { devices: android_devices(1), ..SimConfig::default() }))
}

// `graph.cloud` from a pull request moved the login host and the Graph root, so the
// client secret went to another cloud's token endpoint. The environment pins the cloud.
#[test]
fn graph_cloud_in_the_repository_must_match_the_environments_pin() {
    let (repo, sim) = setup();
    repo.write("reconcile.yaml", format!("{}  cloud: usgov\n", repo.read("reconcile.yaml")));
    for args in [&["apply", "--auto-approve"][..], &["plan"], &["validate"], &["plan", "--offline"]] {
        let out = repo.cmd_on(&sim).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("graph.cloud is `usgov`") && err.contains("AZURE_CLOUD=`global`"), "{args:?}: {err}");
    }
    assert!(sim.requests().is_empty(), "no request at all, not even for a token");
    let out = repo.cmd_on(&sim).env("AZURE_CLOUD", "gcc-high").arg("validate").output().expect("run");
    assert!(stderr(&out).contains("AZURE_CLOUD `gcc-high` is not a cloud"), "{}", stderr(&out));
}

// The operator pins usgov; a token for the global cloud's Graph is refused before any request.
#[test]
fn a_token_for_another_clouds_graph_is_refused() {
    let (repo, sim) = setup();
    repo.write("reconcile.yaml", format!("{}  cloud: usgov\n", repo.read("reconcile.yaml")));
    let token = sim
        .state()
        .mint_token_for("test-tenant", vec!["DeviceManagementManagedDevices.PrivilegedOperations.All".into()]);
    let out = repo
        .cmd_on(&sim)
        .env("AZURE_CLOUD", "usgov")
        .env("RECONCILE_GRAPH_TOKEN", &token)
        .args(["apply", "--auto-approve"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not Microsoft Graph of the `usgov` cloud"), "{err}");
    assert!(sim.requests().is_empty());
    assert!(posts(&sim).is_empty());
}

/// A repository whose config and links try to reach `secret`, a file outside it.
fn hostile_repo() -> (Repo, tempfile::TempDir, std::path::PathBuf) {
    let repo = Repo::empty();
    repo.write("manifests/ok.yaml", manifest_for("ok", &[&android_id(0)]));
    let outside = tempfile::tempdir().expect("tmp");
    let secret = outside.path().join("token.yaml");
    std::fs::write(&secret, "ghp_SECRET_FIRST_LINE: leaked\n").expect("secret");
    (repo, outside, secret)
}

fn assert_not_leaked(out: &std::process::Output) {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("SECRET_FIRST_LINE"), "the file outside was read into the output: {all}");
}

// `manifests:` accepted absolute paths, `..`, hidden files of any extension and
// symlinks out of the repository; a parse error then printed the first line of the file.
#[test]
fn manifests_named_by_the_repository_stay_inside_it() {
    let (repo, _outside, secret) = hostile_repo();
    std::os::unix::fs::symlink(&secret, repo.path().join("manifests/evil.yaml")).expect("symlink");
    repo.write(".git/config", "[http]\n\textraheader = AUTHORIZATION: basic SECRET_FIRST_LINE\n");
    let rel_secret =
        format!("../{}/token.yaml", secret.parent().and_then(|p| p.file_name()).expect("dir").to_string_lossy());
    for entry in [secret.display().to_string(), rel_secret, ".git/config".into(), "manifests/evil.yaml".into()] {
        repo.write("reconcile.yaml", format!("manifests: [manifests/ok.yaml, '{entry}']\n"));
        let out = repo.cmd().arg("validate").output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{entry}: {}", stderr(&out));
        assert!(stderr(&out).contains("refused"), "{entry}: {}", stderr(&out));
        assert_not_leaked(&out);
    }
    // The default `manifests` folder is the repository's too: the symlink in it is refused.
    std::fs::remove_file(repo.path().join("reconcile.yaml")).expect("rm");
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("leads outside the repository"), "{}", stderr(&out));
    assert_not_leaked(&out);
    // The operator may name any file on the command line.
    std::fs::remove_file(repo.path().join("manifests/evil.yaml")).expect("rm");
    let elsewhere = tempfile::tempdir().expect("tmp");
    let op = elsewhere.path().join("op-owned.yaml");
    std::fs::write(&op, manifest_for("op", &[&android_id(1)])).expect("write");
    let out = repo.cmd().args(["validate", op.to_str().expect("utf8")]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}

// `state:` could point anywhere, so a pull request could divert the ledger out of the
// uploaded location (records lost, devices re-sent next run), also through a committed symlink.
#[test]
fn the_ledger_named_by_the_repository_stays_inside_it() {
    let (repo, outside, _) = hostile_repo();
    for state in [format!("{}/state.json", outside.path().display()), "../state.json".into()] {
        repo.write("reconcile.yaml", format!("state: '{state}'\n"));
        let out = repo.cmd().args(["plan", "--offline"]).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{state}");
        assert!(
            stderr(&out).contains("state: ") && stderr(&out).contains("outside the repository"),
            "{}",
            stderr(&out)
        );
    }
    std::fs::remove_file(repo.path().join("reconcile.yaml")).expect("rm");
    std::os::unix::fs::symlink(outside.path(), repo.path().join(".reconcile")).expect("symlink");
    let out = repo.cmd().args(["init", "--tenant", "5b0e6c3d-2a4f-4e8b-9c1d-7f6a5e4d3c2b"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("outside the repository"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(outside.path()).expect("dir").count(), 1, "nothing written outside");
    // The operator's --state may be anywhere.
    let elsewhere = outside.path().join("operator.json");
    repo.cmd()
        .args([
            "init",
            "--tenant",
            "5b0e6c3d-2a4f-4e8b-9c1d-7f6a5e4d3c2b",
            "--state",
            elsewhere.to_str().expect("utf8"),
        ])
        .assert()
        .success();
    assert!(elsewhere.exists());
}

// A pull request could write the ledger into `.git` (`state: .git/hooks/pre-commit`: code git
// runs) or another hidden folder; only `.reconcile/` and visible folders are a ledger's place.
#[test]
fn the_ledger_named_by_the_repository_is_never_inside_git() {
    let (repo, _outside, _) = hostile_repo();
    for state in [".git/hooks/pre-commit", ".github/state.json", "a/.hidden/state.json"] {
        repo.write("reconcile.yaml", format!("state: {state}\n"));
        let out = repo.cmd().args(["init", "--tenant", "5b0e6c3d-2a4f-4e8b-9c1d-7f6a5e4d3c2b"]).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{state}");
        assert!(stderr(&out).contains("reconcile.yaml:1:8: error: state:"), "{state}: {}", stderr(&out));
        assert!(stderr(&out).contains("hidden folder"), "{}", stderr(&out));
        assert!(!repo.path().join(state).exists(), "{state} was written");
    }
    repo.write("reconcile.yaml", "state: .reconcile/team.json\n");
    repo.cmd().args(["init", "--tenant", "5b0e6c3d-2a4f-4e8b-9c1d-7f6a5e4d3c2b"]).assert().success();
}

// A Blob URL in reconcile.yaml chose the storage account, and so where the operator's storage
// credential went. Only the operator names a Blob ledger; the repository may repeat it.
#[test]
fn a_blob_ledger_is_the_operators_to_name() {
    let (repo, sim) = setup();
    let theirs = "https://attackeracct.blob.core.windows.net/ledger/state.json";
    let ours = "https://contoso.blob.core.windows.net/ledgers/state.json";
    repo.write("reconcile.yaml", format!("{}state: {theirs}\n", repo.read("reconcile.yaml")));
    let line = repo.read("reconcile.yaml").lines().position(|l| l.starts_with("state:")).expect("line") + 1;
    for (operator, says) in
        [(None, "the operator named none"), (Some(ours), "the operator's ledger is `https://contoso")]
    {
        for args in [&["apply", "--auto-approve"][..], &["plan"], &["validate"], &["state", "list"]] {
            let mut c = repo.cmd_on(&sim);
            c.env("AZURE_STORAGE_KEY", "c2VjcmV0");
            if let Some(o) = operator {
                c.env("RECONCILE_STATE", o);
            }
            let out = c.args(args).output().expect("run");
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(err.contains(&format!("reconcile.yaml:{line}:8: error: state: the Blob URL")), "{args:?}: {err}");
            assert!(err.contains("is not the operator's") && err.contains(says), "{args:?}: {err}");
        }
    }
    assert!(sim.requests().is_empty(), "no request at all, not even for a token");
    // Repeating the operator's own URL is fine (validate reads no ledger).
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace(theirs, ours));
    let out = repo.cmd().env("RECONCILE_STATE", ours).arg("validate").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = repo.cmd().args(["--state", ours, "validate"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A repository and a fleet carrying hostile values: `fields` (device, field, value) set on two
/// Android devices, manifest `manifests/a.yaml` holding `manifest`, and a manifest `b` for device 1
/// in a file named `file`.
fn hostile_fleet(
    fields: &[(usize, &str, &str)],
    manifest: &str,
    file: &str,
) -> (Repo, intune_reconcile::sim::SimHandle) {
    let repo = Repo::empty();
    repo.fast_config("");
    let mut devices = android_devices(2);
    for (i, field, value) in fields {
        devices[*i].insert((*field).into(), (*value).into());
    }
    let sim = sim(SimConfig { devices, ..SimConfig::default() });
    repo.write("manifests/a.yaml", manifest);
    repo.write(file, manifest_for("b", &[&android_id(1)]));
    (repo, sim)
}

/// Runs each of `commands` in GitHub Actions (its step summary `summary.md`) against `sim`,
/// appending everything it printed to `all`.
fn through_every_sink(repo: &Repo, sim: &intune_reconcile::sim::SimHandle, commands: &[&[&str]], all: &mut String) {
    for args in commands {
        let out = repo
            .cmd_on(sim)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", repo.path().join("summary.md"))
            .args(*args)
            .output()
            .expect("run");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
}

/// Every line GitHub would read as a workflow command: after leading whitespace, `::` or `##[`.
fn workflow_commands(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("::") || l.starts_with("##[") || l.starts_with("##vso["))
        .map(str::to_owned)
        .collect()
}

// ticket, reason, selectors, file names and Intune device names reached stdout
// and stderr raw, so a newline followed by `::add-mask::`, `::stop-commands::` or `::error` became
// a GitHub workflow command. Every output of every command is searched: the only commands are the
// tool's own annotations (`::error ` / `::warning ` with a space, data escaped).
#[test]
fn hostile_values_never_become_workflow_commands() {
    let (repo, sim) = hostile_fleet(
        &[
            (0, "deviceName", "PHONE\n::add-mask::PWNED-NAME"),
            (0, "operatingSystem", "Android\r\n::stop-commands::PWNED-OS"),
            (1, "managedDeviceOwnerType", "company\n##[error]PWNED-OWNER"),
        ],
        &format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\nspec:\n  devices:\n    - id: {}\n    - id: {}\n    - deviceName: \"PWNED-SELECTOR @contoso/admins [x](https://evil.example) <img src=x>\"\n",
            android_id(0),
            android_id(1)
        ),
        "manifests/evil\n::warning::PWNED-FILE.yaml",
    );
    let mut all = String::new();
    through_every_sink(
        &repo,
        &sim,
        &[
            &["plan"],
            &["plan", "--format", "markdown"],
            &["plan", "--format", "json"],
            &["apply", "--auto-approve"],
            &["refresh"],
            &["state", "list"],
        ],
        &mut all,
    );
    let key = repo.ledger_json()["records"]
        .as_object()
        .expect("records")
        .keys()
        .next()
        .unwrap_or_else(|| panic!("{all}"))
        .clone();
    let out = repo.cmd().args(["state", "show", &key]).output().expect("run");
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    // A ticket with a control character is a validation error, shown escaped.
    let bad = Repo::empty();
    bad.write(
        "manifests/t.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: t\n  ticket: \"INC-1\\n::set-output name=x::PWNED-TICKET\"\nspec:\n  devices:\n    - serialNumber: \"S1\\n::error::PWNED-SERIAL\"\n",
    );
    let out = bad.cmd().env("GITHUB_ACTIONS", "true").arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("metadata.ticket contains a control character"), "{}", stderr(&out));
    assert!(stderr(&out).contains("`serialNumber` contains a control character"), "{}", stderr(&out));
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    all.push_str(&String::from_utf8_lossy(&out.stderr));

    for what in ["PWNED-NAME", "PWNED-OS", "PWNED-OWNER", "PWNED-SELECTOR", "PWNED-FILE", "PWNED-TICKET"] {
        assert!(all.contains(what), "{what} was shown somewhere (escaped): the test exercised it");
    }
    let commands = workflow_commands(&all);
    assert!(!commands.is_empty(), "the tool's own annotations are there");
    for c in &commands {
        assert!(c.starts_with("::error ") || c.starts_with("::warning "), "a workflow command from data: {c}");
    }
    assert!(!all.contains('\r') && !all.contains('\u{1b}'), "no raw control characters");
    // The job summary holds the values only in code spans or <code>.
    let md = repo.read("summary.md");
    assert!(!md.contains('\r'));
    // Outside code spans (split on backticks, even pieces) and <code> elements (HTML-escaped), no
    // structure from data.
    for line in md.lines() {
        let mut rest = line.to_owned();
        while let (Some(a), Some(b)) = (rest.find("<code>"), rest.find("</code>")) {
            rest.replace_range(a..b + "</code>".len(), "");
        }
        let outside: String = rest.split('`').step_by(2).collect();
        for bad in ["PWNED", "<img", "](https", "@contoso"] {
            assert!(!outside.contains(bad), "`{bad}` outside a code span: {line}");
        }
    }
    assert!(md.contains("PWNED-SELECTOR"), "the summary was written");
}

// the simulator answered whatever `Host` a request named (DNS rebinding).
#[test]
fn the_simulator_answers_only_loopback_host_names() {
    let sim = sim(SimConfig::default());
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let status = |host: &str| crate::common::http::call(&addr, "GET", "/_sim/requests", &[("Host", host)], &[]).status;
    assert_eq!(status(&addr), 200);
    assert_eq!(status("localhost"), 200);
    assert_eq!(status("rebind.evil.example:80"), 421);
}

// `\r` broke out of `<details>`, and links, images and mentions from manifest fields
// or Intune device names rendered live. The comment is rendered as GitHub would (CommonMark + GFM)
// and its structure asserted.
#[test]
fn the_plan_comment_keeps_its_structure_whatever_the_values() {
    let repo = Repo::empty();
    repo.fast_config("");
    let mut devices = android_devices(2);
    devices[0].insert("deviceName".into(), "PHONE</summary></details><img src=x onerror=alert(1)>".into());
    devices[1].insert(
        "operatingSystem".into(),
        "Android\r</details>\r\n[click](https://evil.example) @contoso/admins".into(),
    );
    let sim = sim(SimConfig { devices, ..SimConfig::default() });
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0)]));
    repo.write(
        "manifests/b.yaml",
        format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: b\nspec:\n  devices:\n    - id: {}\n    - deviceName: \"![img](https://evil.example/x.png) **bold** <b>@contoso/admins</b> https://evil.example\"\n",
            android_id(1)
        ),
    );
    let out = repo.cmd_on(&sim).args(["plan", "--format", "markdown"]).output().expect("run");
    let md = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(md.starts_with(intune_reconcile::render::markdown::MARKER), "{md}");
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.autolink = true;
    options.extension.strikethrough = true;
    options.render.r#unsafe = true; // GitHub keeps <details>/<summary>
    let html = comrak::markdown_to_html(&md, &options);
    assert_eq!(html.matches("<details>").count(), 2, "one <details> per manifest: {html}");
    assert_eq!(html.matches("</details>").count(), 2, "{html}");
    assert!(!html.contains("<a "), "no link from data: {html}");
    assert!(!html.contains("<img"), "no image from data: {html}");
    assert!(!html.contains("<b>") && !html.contains("<strong>bold"), "no emphasis or HTML from data: {html}");
    // Mentions: every `@contoso` is inside <code>, where GitHub links no mention.
    for (i, _) in html.match_indices("@contoso") {
        let before = &html[..i];
        assert!(before.rfind("<code>") > before.rfind("</code>"), "a mention outside code: {html}");
    }
    // The summary line is outside every <details> block.
    let summary = html.find("Plan: ").expect("summary line");
    let before = &html[..summary];
    assert_eq!(before.matches("<details>").count(), before.matches("</details>").count(), "{html}");
}

/// Whether `output` holds what the Azure Pipelines agent or GitHub's legacy syntax reads as a
/// logging command anywhere in a line: `##[` or `##vso[`, in any case.
fn logging_commands(output: &str) -> Vec<String> {
    let lower = output.to_ascii_lowercase();
    lower.lines().filter(|l| l.contains("##[") || l.contains("##vso[")).map(str::to_owned).collect()
}

// `##vso[` and `##[` are found anywhere in a line, not only at its start: a ticket, reason,
// requester, an Intune device name or a YAML line quoted in a diagnostic carried
// `##vso[task.setvariable variable=RECONCILE_GRAPH_URL]…` into plans, apply, state and validate.
// Every field a pull request or Intune controls goes through every sink, and the runners' own
// rule (a substring, any case) finds none; each value is still shown (escaped).
#[test]
fn no_sink_carries_a_logging_command_anywhere_in_a_line() {
    let (repo, sim) = hostile_fleet(
        &[
            (0, "deviceName", "PHONE ##vso[task.prependpath]/tmp/PWNED-NAME"),
            (0, "operatingSystem", "Android ##[add-mask]PWNED-OS"),
            (1, "serialNumber", "SER-##VSO[task.complete]PWNED-SERIAL"),
        ],
        &format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\n  ticket: 'INC-1 ##vso[task.setvariable variable=RECONCILE_GRAPH_URL]PWNED-TICKET'\n  reason: 'locked out ##[stop-commands]PWNED-REASON'\n  requestedBy: 'x@y ##Vso[build.addbuildtag]PWNED-REQUESTER'\nspec:\n  devices:\n    - id: {}\n    - id: {}\n    - deviceName: 'LOST ##vso[task.logissue]PWNED-SELECTOR'\n",
            android_id(0),
            android_id(1)
        ),
        "manifests/b ##vso[task.uploadfile]PWNED-FILE.yaml",
    );
    let mut all = String::new();
    let mut run = |args: &[&str]| through_every_sink(&repo, &sim, &[args], &mut all);
    for args in [
        &["plan"][..],
        &["plan", "--format", "markdown"],
        &["plan", "--format", "json"],
        &["plan", "--out", "saved.json"],
        &["show", "saved.json"],
        &["show", "saved.json", "--format", "json"],
        &["-v", "--log-format", "json", "plan"],
        &["apply", "--auto-approve", "--junit", "junit.xml"],
        &["refresh"],
        &["-v", "--log-format", "json", "refresh"],
        &["state", "list"],
        &["state", "list", "--format", "json"],
        &["state", "export", "--format", "csv"],
        &["state", "export", "--format", "json"],
    ] {
        run(args);
    }
    let keys: Vec<String> = repo.ledger_json()["records"].as_object().expect("records").keys().cloned().collect();
    assert!(!keys.is_empty(), "{all}");
    for key in &keys {
        run(&["state", "show", key]);
        run(&["state", "show", key, "--format", "json"]);
    }
    // A YAML line quoted in a diagnostic.
    repo.write("manifests/c.yaml", "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: c\n  '##vso[task.setvariable variable=X]PWNED-KEY': 1\nspec:\n  devices:\n    - id: x\n");
    run(&["validate"]);
    run(&["-v", "--log-format", "json", "validate"]);
    run(&["plan", "--offline"]);
    for file in ["summary.md", "saved.json", "junit.xml"] {
        all.push_str(&repo.read(file));
    }
    for what in [
        "PWNED-NAME",
        "PWNED-OS",
        "PWNED-SERIAL",
        "PWNED-TICKET",
        "PWNED-REASON",
        "PWNED-REQUESTER",
        "PWNED-SELECTOR",
        "PWNED-FILE",
        "PWNED-KEY",
    ] {
        assert!(all.contains(what), "{what} was shown somewhere (escaped): the test exercised it");
    }
    let found = logging_commands(&all);
    assert!(found.is_empty(), "logging commands in output: {found:#?}");
    // Saved plans and JSON still read back as the values written.
    let saved: serde_json::Value = serde_json::from_str(&repo.read("saved.json")).expect("saved plan is JSON");
    assert!(saved.to_string().contains("##vso[task.setvariable"), "the value itself is kept: {saved}");
}

// `simulator.devices` is a file the repository names: it stays inside the repository too.
#[test]
fn the_simulators_device_fixture_stays_inside_the_repository() {
    let (repo, outside, secret) = hostile_repo();
    std::fs::write(outside.path().join("devices.json"), "[]").expect("fixture");
    for devices in [outside.path().join("devices.json").display().to_string(), "../devices.json".into()] {
        repo.write("reconcile.yaml", format!("simulator:\n  devices: '{devices}'\n"));
        let out = repo.cmd().arg("validate").output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{devices}");
        assert!(
            stderr(&out).contains("simulator.devices: ") && stderr(&out).contains("outside the repository"),
            "{}",
            stderr(&out)
        );
        let out = repo.cmd().args(["plan", "--simulate"]).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{devices}");
        assert_not_leaked(&out);
    }
    let _ = secret;
}
