//! Helpers shared by the end-to-end tests: temp repositories, the real binary, ledgers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use intune_reconcile::action::Action;
use intune_reconcile::manifest::{self, ManifestInput};
use intune_reconcile::settings::ApiVersion;
use intune_reconcile::state::{LocalStore, Record, Status};

/// The repository's `examples/` folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A temp folder that holds a copy of `examples/` (without any ledger).
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn empty() -> Self {
        Repo { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn from_examples() -> Self {
        let repo = Repo::empty();
        copy_dir(&examples(), repo.path());
        let _ = std::fs::remove_dir_all(repo.path().join(".reconcile"));
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// `reconcile` run in this repository, with a clean environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("reconcile").expect("binary built");
        c.current_dir(self.path());
        for var in ["AZURE_TENANT_ID", "GITHUB_ACTIONS", "RUST_LOG", "NO_COLOR"] {
            c.env_remove(var);
        }
        c
    }

    /// The actions the manifests of this repository ask for.
    pub fn actions(&self) -> Vec<Action> {
        let mut diags = Default::default();
        let input = ManifestInput { base: self.path().to_path_buf(), pattern: "manifests".into(), origin: None };
        let files = manifest::discover(&[input], &mut diags);
        let loaded = manifest::load(&files, manifest::validate::Context { api_version: ApiVersion::Beta });
        assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
        loaded.actions()
    }

    pub fn store(&self) -> LocalStore {
        LocalStore::new(self.path().join(".reconcile/state.json"))
    }

    /// Records `actions` in the ledger with `status`, as an apply would have.
    pub fn record(&self, actions: &[&Action], status: Status, tenant: Option<&str>) {
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

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
