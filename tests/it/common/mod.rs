//! Helpers shared by the end-to-end tests: temp repositories, the real binary, ledgers.

pub(crate) mod azurite;
pub(crate) mod proxy;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use intune_reconcile::action::Action;
use intune_reconcile::manifest::{self, ManifestInput};
use intune_reconcile::state::{LocalStore, Record, Status};

/// The variables a child process may inherit: what a shell needs to find programs and temp
/// folders. Nothing of the CI system that runs the tests (`GITHUB_*`, `TF_BUILD`, `SYSTEM_*`),
/// no credential (`AZURE_*`, `RECONCILE_*`) and no output setting (`RUST_LOG`, `NO_COLOR`)
/// leaks into a test; each test sets what it means.
const INHERITED: [&str; 8] = ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "USER", "TZ"];

/// A child environment built from an allow-list ([`INHERITED`]).
// The tests' own environment, not the tool's: `crate::env` is the binary's one reader.
#[allow(clippy::disallowed_methods)]
pub(crate) fn hermetic(c: &mut std::process::Command) -> &mut std::process::Command {
    c.env_clear();
    for var in INHERITED {
        if let Some(v) = std::env::var_os(var) {
            c.env(var, v);
        }
    }
    c
}

/// Every POST the simulator received had its intent durable in the probed ledger when it arrived
/// (and there was at least one): the intent-before-request rule, checked at the moment it matters
/// rather than after the run.
pub(crate) fn assert_intents_durable(sim: &intune_reconcile::sim::SimHandle) {
    let probed: Vec<_> = sim.requests().into_iter().filter(|r| r.intent_durable.is_some()).collect();
    assert!(!probed.is_empty(), "no POST was probed");
    let early: Vec<_> = probed.iter().filter(|r| r.intent_durable == Some(false)).map(|r| &r.path).collect();
    assert!(early.is_empty(), "{} POSTs left before their intent was durable: {early:?}", early.len());
}

/// Waits until `happened` (an event the simulator, a file or the binary's output shows), and fails
/// the test after 20 s: the tests synchronise on what happened, never on how long it took.
pub(crate) fn wait_until(what: &str, happened: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !happened() {
        assert!(start.elapsed() < Duration::from_secs(20), "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The repository's `examples/` folder.
pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A temp folder that holds a copy of `examples/` (without any ledger).
pub(crate) struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub(crate) fn empty() -> Self {
        Repo { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub(crate) fn from_examples() -> Self {
        let repo = Repo::empty();
        copy_dir(&examples(), repo.path());
        let _ = std::fs::remove_dir_all(repo.path().join(".reconcile"));
        repo
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// Runs git in the repository (as a CI identity), failing the test if git fails.
    pub(crate) fn git(&self, args: &[&str]) {
        let out = std::process::Command::new("git")
            .current_dir(self.path())
            .args(["-c", "user.email=ci@contoso.com", "-c", "user.name=CI", "-c", "init.defaultBranch=main"])
            .args(args)
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `reconcile` run in this repository, with a clean environment.
    pub(crate) fn cmd(&self) -> Command {
        let mut std = std::process::Command::new(assert_cmd::cargo::cargo_bin!("reconcile"));
        hermetic(&mut std).current_dir(self.path());
        Command::from_std(std)
    }

    /// The actions the manifests of this repository ask for.
    pub(crate) fn actions(&self) -> Vec<Action> {
        let mut diags = Default::default();
        let input = ManifestInput {
            base: self.path().to_path_buf(),
            pattern: "manifests".into(),
            origin: None,
            pos: None,
            confine_to: None,
        };
        let files = manifest::discover(&[input], &mut diags);
        let loaded = manifest::load(&files, manifest::validate::Context { beta_api: true });
        assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
        loaded.actions()
    }

    /// The repository's ledger, for setting up what a test starts from (changes go to the journal
    /// and are folded in at `commit`, however small the ledger: the end state is the same).
    pub(crate) fn store(&self) -> LocalStore {
        LocalStore::new(self.path().join(".reconcile/state.json")).journal_only()
    }

    /// `reconcile init` for the tests' tenant (`test-tenant`), as a new user does once. A no-op
    /// when the ledger exists.
    pub(crate) fn init(&self) {
        self.store().create(Duration::ZERO, "test-tenant").expect("init");
    }

    /// Records `actions` in the ledger with `status`, as an apply would have.
    pub(crate) fn record(&self, actions: &[&Action], status: Status, tenant: Option<&str>) {
        self.store().create(Duration::ZERO, tenant.unwrap_or("test-tenant")).expect("init");
        let mut w = self.store().lock(Duration::ZERO, "test", tenant).expect("lock");
        for a in actions {
            let mut r = Record::new(a, None, jiff::Timestamp::UNIX_EPOCH);
            r.status = status;
            w.record(r).expect("record");
        }
        w.commit().expect("commit");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(from).expect("below");
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

pub(crate) fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The simulator, started in this test process, with the examples' devices unless told otherwise.
pub(crate) fn sim(config: intune_reconcile::sim::SimConfig) -> intune_reconcile::sim::SimHandle {
    intune_reconcile::sim::SimHandle::start(config, 0).expect("simulator starts")
}

/// A simulator config seeded with the examples' fixture and generous limits.
pub(crate) fn sim_config() -> intune_reconcile::sim::SimConfig {
    let mut devices =
        intune_reconcile::sim::fixture::parse_devices(intune_reconcile::sim::BUILTIN_DEVICES).expect("fixture");
    // The fixture's portal resets are for the `--simulate` demo; tests make their own.
    for d in &mut devices {
        d.remove("_portalResets");
    }
    intune_reconcile::sim::SimConfig { devices, ..Default::default() }
}

fn sim_env(sim: &intune_reconcile::sim::SimHandle) -> Vec<(&'static str, String)> {
    vec![
        ("RECONCILE_GRAPH_URL", sim.url()),
        ("AZURE_AUTHORITY_HOST", sim.url()),
        ("AZURE_TENANT_ID", "test-tenant".into()),
        ("AZURE_CLIENT_ID", "test-client".into()),
        ("AZURE_CLIENT_SECRET", SECRET.into()),
    ]
}

/// A client secret distinctive enough to grep for.
pub(crate) const SECRET: &str = "S3cret-Value-That-Must-Never-Leak-7f3a";

impl Repo {
    /// `reconcile` pointed at `sim` with a client secret.
    pub(crate) fn cmd_on(&self, sim: &intune_reconcile::sim::SimHandle) -> Command {
        self.probe(sim);
        let mut c = self.cmd();
        for (k, v) in sim_env(sim) {
            c.env(k, v);
        }
        c
    }

    /// The same as a `std::process::Command`, for tests that spawn and kill.
    pub(crate) fn spawn_on(&self, sim: &intune_reconcile::sim::SimHandle, args: &[&str]) -> std::process::Child {
        self.probe(sim);
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin!("reconcile"));
        hermetic(&mut c)
            .current_dir(self.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in sim_env(sim) {
            c.env(k, v);
        }
        c.spawn().expect("spawn reconcile")
    }

    /// Has `sim` read this repository's default ledger as each POST arrives (unless a test
    /// pointed it elsewhere): [`assert_intents_durable`] then says whether every request's intent
    /// was on disk before the request left.
    pub(crate) fn probe(&self, sim: &intune_reconcile::sim::SimHandle) {
        sim.state().config.intent_probe.get_or_insert_with(|| self.path().join(".reconcile/state.json"));
    }

    /// A `reconcile.yaml` tuned for tests (zero backoff, short timeout and grace, a large write
    /// budget), and the ledger created as a new user does once (`reconcile init`).
    pub(crate) fn fast_config(&self, extra: &str) {
        self.init();
        self.write(
            "reconcile.yaml",
            format!(
                "manifests: [manifests]\ngraph:\n  concurrency: 4\n  writeBudget: {{ requests: 1000, window: 1s }}\n  timeout: 2s\n  unknownGrace: 0s\n  backoff: {{ initial: 10ms, max: 200ms }}\n{extra}"
            ),
        );
    }

    /// Every file under the repository, as bytes (for leak checks).
    pub(crate) fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        walkdir::WalkDir::new(self.path())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap_or_default()))
            .collect()
    }

    pub(crate) fn ledger_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.read(".reconcile/state.json")).expect("ledger JSON")
    }
}

/// A manifest resetting the given device ids.
pub(crate) fn manifest_for(name: &str, ids: &[&str]) -> String {
    let mut s =
        format!("apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: {name}\nspec:\n  devices:\n");
    for id in ids {
        s.push_str(&format!("    - id: {id}\n"));
    }
    s
}

/// `n` Android devices with ids `00000000-0000-4000-8000-{i:012}`.
pub(crate) fn android_devices(n: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    (0..n)
        .map(|i| {
            let v = serde_json::json!({
                "id": android_id(i),
                "deviceName": format!("ANDROID-{i:05}"),
                "serialNumber": format!("SN{i:08}"),
                "imei": format!("35{i:013}"),
                "operatingSystem": "Android",
                "osVersion": "14",
                "managedDeviceOwnerType": "company",
                "deviceEnrollmentType": "androidEnterpriseFullyManaged",
                "managementState": "managed",
                "lastSyncDateTime": "2026-11-27T08:00:00Z"
            });
            v.as_object().expect("object").clone()
        })
        .collect()
}

pub(crate) fn android_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// The `resetPasscode` POSTs the simulator received from Graph clients (not its portal route).
pub(crate) fn posts(sim: &intune_reconcile::sim::SimHandle) -> Vec<intune_reconcile::sim::RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/resetPasscode") && !r.path.starts_with("/_sim/"))
        .collect()
}

/// A bare `POST path` to the simulator (its test routes), returning the HTTP status.
pub(crate) fn http_post(sim: &intune_reconcile::sim::SimHandle, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect to the simulator");
    write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line")
}

/// `reconcile sim --port 0 ARGS…` as a child process (as a user runs it in another shell), its
/// URL read from its banner. Stopped with SIGTERM when dropped.
pub(crate) struct StandaloneSim {
    child: std::process::Child,
    pub url: String,
    /// The rest of the banner, read on as needed (kept open: the simulator writes to it).
    banner: std::io::BufReader<std::process::ChildStdout>,
}

impl StandaloneSim {
    pub(crate) fn start(args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = hermetic(&mut std::process::Command::new(assert_cmd::cargo::cargo_bin!("reconcile")))
            .args(["sim", "--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sim");
        let mut banner = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        banner.read_line(&mut first).expect("banner");
        let url =
            first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).expect("url in banner").to_owned();
        StandaloneSim { child, url, banner }
    }

    /// The banner's lines after the first, up to the first that contains `mark`.
    pub(crate) fn banner_until(&mut self, mark: &str) -> String {
        use std::io::BufRead as _;
        let mut text = String::new();
        while !text.lines().any(|l| l.contains(mark)) {
            assert!(self.banner.read_line(&mut text).expect("banner") > 0, "no `{mark}` in the banner: {text}");
        }
        text
    }

    /// The environment that points the tool at this simulator, with `secret`.
    pub(crate) fn env(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("RECONCILE_GRAPH_URL", self.url.clone()),
            ("AZURE_AUTHORITY_HOST", self.url.clone()),
            ("AZURE_TENANT_ID", "test-tenant".into()),
            ("AZURE_CLIENT_ID", "c".into()),
            ("AZURE_CLIENT_SECRET", secret.into()),
        ]
    }

    /// Stops it with SIGTERM (as a harness or a service manager does) and returns its exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        let term = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(term.is_ok_and(|s| s.success()), "kill -TERM the simulator");
        self.child.wait().expect("wait for the simulator")
    }
}

impl Drop for StandaloneSim {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.terminate();
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
