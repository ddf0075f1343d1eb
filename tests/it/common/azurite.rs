//! The Azurite storage emulator, started per test on a free loopback port (always with
//! `--disableTelemetry`: it must never reach an outside host).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

/// Azurite's documented well-known account and key.
pub(crate) const ACCOUNT: &str = "devstoreaccount1";
pub(crate) const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite (blob service only); killed when dropped.
pub(crate) struct Azurite {
    child: Option<Child>,
    pub port: u16,
    /// Where blobs persist across a restart; `None`: in memory.
    location: Option<tempfile::TempDir>,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Azurite {
    /// In memory: fastest, lost when stopped.
    pub(crate) fn start() -> Azurite {
        let mut a = Azurite { child: None, port: free_port(), location: None };
        a.spawn();
        a
    }

    /// On disk, so [`restart`](Self::restart) keeps every blob.
    pub(crate) fn start_persistent() -> Azurite {
        let mut a = Azurite { child: None, port: free_port(), location: Some(tempfile::tempdir().expect("temp dir")) };
        a.spawn();
        a
    }

    #[allow(clippy::disallowed_methods)] // the test harness's own setting, not the tool's
    fn spawn(&mut self) {
        let mut c = Command::new(launcher());
        c.args(["--disableTelemetry", "--skipApiVersionCheck", "--silent", "--blobHost", "127.0.0.1"])
            .args(["--blobPort", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(log) = std::env::var_os("AZURITE_DEBUG_LOG") {
            c.arg("--debug").arg(log);
        }
        match &self.location {
            Some(dir) => c.args(["--location", &dir.path().display().to_string()]),
            None => c.arg("--inMemoryPersistence"),
        };
        self.child = Some(c.spawn().expect("start Azurite"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (SIGTERM, so a persistent Azurite saves what it acknowledged: its metadata store
    /// is not durable under SIGKILL, unlike Azure Storage) — the outage tests.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills it (SIGKILL).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (and folder).
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/PATH`
    pub(crate) fn url(&self, container: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}/{container}/{path}", self.port)
    }

    /// Creates a container (the ledger's container must exist).
    pub(crate) fn create_container(&self, name: &str) {
        let (status, body) = self.request_body("PUT", &format!("/{name}"), &[("restype", "container")]);
        assert!(status == 201 || status == 409, "create container {name}: HTTP {status}: {body}");
    }

    /// The names of every blob in `container` (sorted).
    pub(crate) fn list(&self, container: &str) -> Vec<String> {
        let (status, body) =
            self.request_body("GET", &format!("/{container}"), &[("comp", "list"), ("restype", "container")]);
        assert_eq!(status, 200, "list {container}: {body}");
        let mut names: Vec<String> =
            body.split("<Name>").skip(1).filter_map(|s| s.split("</Name>").next()).map(str::to_owned).collect();
        names.sort();
        names
    }

    /// A blob's content, or `None` (404).
    pub(crate) fn get(&self, container: &str, path: &str) -> Option<String> {
        let (status, body) = self.request_body("GET", &format!("/{container}/{path}"), &[]);
        match status {
            200 => Some(body),
            404 => None,
            s => panic!("get {container}/{path}: HTTP {s}: {body}"),
        }
    }

    /// Writes a block blob, replacing any.
    pub(crate) fn put(&self, container: &str, path: &str, content: &[u8]) {
        let (status, body) =
            self.request("PUT", &format!("/{container}/{path}"), &[], &[("x-ms-blob-type", "BlockBlob")], content);
        assert_eq!(status, 201, "put {container}/{path}: {body}");
    }

    fn request_body(&self, method: &str, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        self.request(method, path, query, &[], &[])
    }

    /// A SharedKey-signed request (the Blob service's documented string-to-sign); `headers` are
    /// `x-ms-` headers, in order.
    fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        content: &[u8],
    ) -> (u16, String) {
        let date = httpdate();
        let version = "2021-08-06";
        let mut canon_query: Vec<String> = query.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        canon_query.sort();
        let length = if content.is_empty() { String::new() } else { content.len().to_string() };
        let extra: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{extra}x-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}{path}{}",
            canon_query.concat()
        );
        let key = base64::engine::general_purpose::STANDARD.decode(KEY).expect("key");
        let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target =
            if q.is_empty() { format!("/{ACCOUNT}{path}") } else { format!("/{ACCOUNT}{path}?{}", q.join("&")) };
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to Azurite");
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\n{}Authorization: SharedKey {ACCOUNT}:{sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect::<String>(),
            content.len(),
        )
        .expect("send");
        s.write_all(content).expect("send");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn httpdate() -> String {
    jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
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
