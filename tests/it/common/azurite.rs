//! The Azurite storage emulator (blob service only, always with `--disableTelemetry`: it must
//! never reach an outside host).
//!
//! One in-memory Azurite serves the whole test binary ([`Azurite::shared`]); each test works in a
//! container of its own ([`Azurite::container`]), so tests never see each other's blobs. Tests
//! that stop and restart the store start their own, on disk ([`Azurite::start_persistent`]).
//!
//! Azurite binds a port of its choosing (`--blobPort 0`) and says which; it is ready when it has
//! answered a request. Nothing waits for a port to be free. It runs under a watchdog shell that
//! kills it as soon as the pipe from this process closes — when this process exits, however it
//! exits — so no Azurite outlives the tests.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use super::http::{self, Answer};

/// Azurite's documented well-known account and key.
pub(crate) const ACCOUNT: &str = "devstoreaccount1";
pub(crate) const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to start (Node loading its modules on a busy machine).
const START: Duration = Duration::from_secs(60);

/// Runs Azurite (`$0 "$@"`) in the background and waits on it, printing its pid and its end; a
/// watchdog reads this shell's stdin, the pipe from the test process, and kills Azurite when it
/// closes. (An asynchronous list reads /dev/null unless redirected: hence fd 3.)
const WATCHDOG: &str = r#"exec 3<&0 0</dev/null
"$0" "$@" &
pid=$!
echo "azurite-pid $pid"
(cat <&3; kill -KILL "$pid") >/dev/null 2>&1 &
exec 3<&-
wait "$pid"
echo "azurite-exited"
"#;

/// A running Azurite; killed when dropped (the shared one when the test binary exits).
#[derive(Debug)]
pub(crate) struct Azurite {
    port: u16,
    /// Where blobs persist across a restart; `None`: in memory.
    location: Option<tempfile::TempDir>,
    running: Option<Running>,
}

/// One Azurite process, under its watchdog shell.
#[derive(Debug)]
struct Running {
    shell: Child,
    /// The watchdog's pipe: Azurite is killed when it closes.
    _lifeline: ChildStdin,
    pid: u32,
    /// The shell's and Azurite's stdout, line by line (`azurite-exited` once Azurite has exited).
    lines: std::sync::Mutex<Receiver<String>>,
}

#[allow(clippy::disallowed_methods)] // the test harness's own setting, not the tool's
fn launcher() -> PathBuf {
    if let Some(p) = std::env::var_os("AZURITE_BLOB") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".azurite/node_modules/.bin/azurite-blob");
    assert!(
        p.exists(),
        "Azurite is not installed: run `scripts/azurite` (scripts/test does) — looked for {}",
        p.display()
    );
    p
}

impl Azurite {
    /// The test binary's one in-memory Azurite, started on first use.
    pub(crate) fn shared() -> &'static Azurite {
        static SHARED: OnceLock<Azurite> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut a = Azurite { port: 0, location: None, running: None };
            a.spawn();
            a
        })
    }

    /// On disk, so [`restart`](Self::restart) keeps every blob; the test's own.
    pub(crate) fn start_persistent() -> Azurite {
        let mut a = Azurite { port: 0, location: Some(tempfile::tempdir().expect("temp dir")), running: None };
        a.spawn();
        a
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A new container with a name no other test uses.
    pub(crate) fn container(&self) -> Container {
        let c = Container { port: self.port, name: format!("t{}", uuid::Uuid::new_v4().simple()) };
        let answer = c.request("PUT", "", &[("restype", "container")], &[], &[]);
        assert_eq!(answer.status, 201, "create container {}: {answer:?}", c.name);
        c
    }

    /// Starts Azurite on a port it picks and returns once it has answered a request.
    #[allow(clippy::disallowed_methods)] // the test harness's own setting, not the tool's
    fn spawn(&mut self) {
        let mut c = Command::new("sh");
        c.arg("-c").arg(WATCHDOG).arg(launcher());
        c.args(["--disableTelemetry", "--skipApiVersionCheck", "--silent", "--blobHost", "127.0.0.1"])
            .args(["--blobPort", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(log) = std::env::var_os("AZURITE_DEBUG_LOG") {
            c.arg("--debug").arg(log);
        }
        match &self.location {
            Some(dir) => c.args(["--location", &dir.path().display().to_string()]),
            None => c.arg("--inMemoryPersistence"),
        };
        let mut shell = c.spawn().expect("start Azurite (sh)");
        let lifeline = shell.stdin.take().expect("stdin");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = shell.stdout.take().expect("stdout");
        // Reads to the end, so Azurite never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START;
        let mut pid = None;
        let port = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with("azurite-pid ") => pid = l[12..].trim().parse().ok(),
                Ok(l) if l.contains("listens on http://127.0.0.1:") => {
                    break l.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok()).expect("a port");
                }
                Ok(l) if l == "azurite-exited" => panic!("Azurite exited before it listened"),
                Ok(_) => {}
                Err(e) => panic!("Azurite did not say it listens within {START:?}: {e}"),
            }
        };
        self.port = port;
        self.running =
            Some(Running { shell, _lifeline: lifeline, pid: pid.expect("Azurite's pid"), lines: lines.into() });
        // Listening is not serving: ready once it answers a signed request.
        let probe = Container { port: self.port, name: String::new() };
        let answer = probe.request("GET", "", &[("comp", "list")], &[], &[]);
        assert_eq!(answer.status, 200, "Azurite's first answer: {answer:?}");
    }

    /// Stops it (SIGTERM, so a persistent Azurite saves what it acknowledged: its metadata store
    /// is not durable under SIGKILL, unlike Azure Storage) and waits until it has exited — the
    /// outage tests.
    pub(crate) fn stop(&mut self) {
        self.end("-TERM");
    }

    /// Kills it (SIGKILL) and waits until it has exited.
    pub(crate) fn kill(&mut self) {
        self.end("-KILL");
    }

    fn end(&mut self, signal: &str) {
        let Some(mut r) = self.running.take() else { return };
        let lines = r.lines.get_mut().expect("lines");
        let _ = Command::new("kill").args([signal, &r.pid.to_string()]).status();
        // The shell says when Azurite has exited, then ends its stdout.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l == "azurite-exited" => break,
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = Command::new("kill").args(["-KILL", &r.pid.to_string()]).status();
                }
            }
        }
        let _ = r.shell.wait();
    }

    /// Starts it again (same folder, so every acknowledged blob is there), on a new port: a
    /// [`Proxy`](super::proxy::Proxy) in front keeps the address the tool uses.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One container of an Azurite, read and written with the account key.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    port: u16,
    pub name: String,
}

impl Container {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/PATH`
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}/{}/{path}", self.port, self.name)
    }

    /// The names of every blob (sorted).
    pub(crate) fn list(&self) -> Vec<String> {
        let answer = self.request("GET", "", &[("comp", "list"), ("restype", "container")], &[], &[]);
        assert_eq!(answer.status, 200, "list {}: {}", self.name, answer.body);
        let mut names: Vec<String> =
            answer.body.split("<Name>").skip(1).filter_map(|s| s.split("</Name>").next()).map(str::to_owned).collect();
        names.sort();
        names
    }

    /// A blob's content, or `None` (404).
    pub(crate) fn get(&self, path: &str) -> Option<String> {
        let answer = self.request("GET", &format!("/{path}"), &[], &[], &[]);
        match answer.status {
            200 => Some(answer.body),
            404 => None,
            s => panic!("get {}/{path}: HTTP {s}: {}", self.name, answer.body),
        }
    }

    /// Writes a block blob, replacing any.
    pub(crate) fn put(&self, path: &str, content: &[u8]) {
        let answer = self.request("PUT", &format!("/{path}"), &[], &[("x-ms-blob-type", "BlockBlob")], content);
        assert_eq!(answer.status, 201, "put {}/{path}: {}", self.name, answer.body);
    }

    /// A service SAS for this container (read, add, create, write, delete, list), signed with the
    /// account key as Azure documents it, valid for an hour.
    pub(crate) fn sas(&self) -> String {
        let version = "2021-08-06";
        let expiry = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).strftime("%Y-%m-%dT%H:%M:%SZ");
        let permissions = "racwdl";
        let resource = format!("/blob/{ACCOUNT}/{}", self.name);
        let expiry = expiry.to_string();
        // Permissions, start, expiry, resource, identifier, IP, protocol, version, resource type
        // (c: a container), snapshot time, encryption scope, and five response headers.
        let fields = [permissions, "", &expiry, &resource, "", "", "", version, "c", "", "", "", "", "", "", ""];
        let to_sign = fields.join("\n");
        let sig = sign(&to_sign);
        let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        format!("sv={version}&sr=c&sp={permissions}&se={}&sig={}", encode(&expiry), encode(&sig))
    }

    /// A SharedKey-signed request (the Blob service's documented string-to-sign) to the
    /// container (`path` after its name, from `/`); `headers` are `x-ms-` headers, in order. An
    /// empty container name addresses the account.
    fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        content: &[u8],
    ) -> Answer {
        let path = if self.name.is_empty() { path.to_owned() } else { format!("/{}{path}", self.name) };
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let version = "2021-08-06";
        let mut canon_query: Vec<String> = query.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        canon_query.sort();
        let length = if content.is_empty() { String::new() } else { content.len().to_string() };
        let extra: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{extra}x-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}{path}{}",
            canon_query.concat()
        );
        let auth = format!("SharedKey {ACCOUNT}:{}", sign(&to_sign));
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target =
            if q.is_empty() { format!("/{ACCOUNT}{path}") } else { format!("/{ACCOUNT}{path}?{}", q.join("&")) };
        let mut all = vec![("x-ms-date", date.as_str()), ("x-ms-version", version)];
        all.extend_from_slice(headers);
        all.push(("Authorization", &auth));
        http::call(&format!("127.0.0.1:{}", self.port), method, &target, &all, content)
    }
}

/// HMAC-SHA256 of `text` with the account key, in base64: a SharedKey or SAS signature.
fn sign(text: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(KEY).expect("key");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, text.as_bytes()))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = sha2::Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    sha2::Sha256::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
}
