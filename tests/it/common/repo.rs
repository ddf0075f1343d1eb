//! Temp repositories: files, git, the ledger a test starts from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use intune_reconcile::core::action::Action;
use intune_reconcile::ledger::{LocalStore, Record, Status};
use intune_reconcile::manifest::{self, ManifestInput};

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

    /// The ledger's record of the device with id `id` (its JSON).
    pub(crate) fn record_of_device(&self, id: &str) -> serde_json::Value {
        let ledger = self.ledger_json();
        ledger["records"]
            .as_object()
            .expect("records")
            .values()
            .find(|r| r["managedDeviceId"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no record of {id}: {ledger}"))
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
