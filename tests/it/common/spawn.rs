//! Running the real binary: a hermetic environment, signed in to the simulator or not, waited
//! for, spawned, or on a pseudo-terminal.

use std::process::{Child, Command, Stdio};

use assert_cmd::Command as Assert;
use intune_reconcile::sim::SimHandle;

use super::Repo;

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

/// `c` with its output piped, started.
pub(crate) fn spawn_piped(c: &mut Command) -> Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn reconcile")
}

/// What signs `reconcile` in to `sim` with a client secret ([`super::SECRET`]).
pub(crate) fn sim_env(sim: &SimHandle) -> Vec<(&'static str, String)> {
    vec![
        ("RECONCILE_GRAPH_URL", sim.url()),
        ("AZURE_AUTHORITY_HOST", sim.url()),
        ("AZURE_TENANT_ID", "test-tenant".into()),
        ("AZURE_CLIENT_ID", "test-client".into()),
        ("AZURE_CLIENT_SECRET", super::SECRET.into()),
    ]
}

impl Repo {
    /// `reconcile` in this repository, with a clean environment, to spawn.
    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin!("reconcile"));
        hermetic(&mut c).current_dir(self.path());
        c
    }

    /// [`command`](Self::command) signed in to `sim` with a client secret.
    pub(crate) fn command_on(&self, sim: &SimHandle) -> Command {
        self.probe(sim);
        let mut c = self.command();
        c.envs(sim_env(sim));
        c
    }

    /// `reconcile` run in this repository, with a clean environment.
    pub(crate) fn cmd(&self) -> Assert {
        Assert::from_std(self.command())
    }

    /// `reconcile` pointed at `sim` with a client secret.
    pub(crate) fn cmd_on(&self, sim: &SimHandle) -> Assert {
        Assert::from_std(self.command_on(sim))
    }

    /// `reconcile ARGS` pointed at `sim`, spawned with its output piped (tests that kill it, or
    /// run something beside it).
    pub(crate) fn spawn_on(&self, sim: &SimHandle, args: &[&str]) -> Child {
        spawn_piped(self.command_on(sim).args(args))
    }

    /// Has `sim` read this repository's default ledger as each POST arrives (unless a test
    /// pointed it elsewhere): [`assert_intents_durable`](super::assert_intents_durable) then says whether every request's intent
    /// was on disk before the request left.
    pub(crate) fn probe(&self, sim: &SimHandle) {
        sim.state().config.intent_probe.get_or_insert_with(|| self.path().join(".reconcile/state.json"));
    }

    /// `reconcile ARGS` on a pseudo-terminal (`script`), as a person at a terminal runs it, with
    /// `env` and typing `input`: everything it showed.
    pub(crate) fn on_a_terminal(&self, args: &str, env: &[(&str, String)], input: &str) -> String {
        use std::io::Write as _;
        let bin = assert_cmd::cargo::cargo_bin!("reconcile");
        let mut c = Command::new("script");
        hermetic(&mut c)
            .current_dir(self.path())
            .args(["-q", "-e", "-c", &format!("'{}' {args}", bin.display()), "/dev/null"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn().expect("script(1)");
        let _ = child.stdin.take().expect("stdin").write_all(input.as_bytes());
        let out = child.wait_with_output().expect("wait");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
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
