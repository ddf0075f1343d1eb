//! A fault-injecting HTTP/1.1 proxy on loopback, put between the tool and Azurite: it forwards
//! each request on a fresh upstream connection and can, for the Nth request of a kind (method and
//! path), lose the answer (forward it, then close the connection without answering), answer 500
//! after forwarding, or hold the request until the test releases it. Every answer it gives closes
//! its connection (`Connection: close`), so no request is ever retried by a client on its own.
//! It can also move the store's clock (the `Date` of every answer) forward, and keeps its address
//! while the store behind it restarts elsewhere ([`Proxy::set_upstream`]).

use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What happens to a request a rule picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forwarded; its answer is lost (the connection is closed without one).
    LoseAnswer,
    /// Forwarded; the client is answered 500 instead of the store's answer.
    Fail500,
    /// Held until [`Proxy::release`], then forwarded and answered.
    Hold,
    /// Never forwarded: the client is answered 500 and the store never sees the request.
    Refuse500,
}

type PathMatch = Box<dyn Fn(&str) -> bool + Send + Sync>;

struct Rule {
    method: &'static str,
    path: PathMatch,
    /// The first matching request it applies to (1-based), and how many in a row.
    nth: usize,
    times: usize,
    fault: Fault,
    seen: usize,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    /// The store's answer (`None`: not forwarded, the store was unreachable, or no answer).
    pub status: Option<u16>,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Seen>>,
    held: Mutex<usize>,
    upstream: AtomicU16,
    /// Seconds added to the `Date` of every answer.
    clock_ahead: AtomicI64,
}

/// The proxy; stopped when dropped.
pub(crate) struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    release: tokio::sync::watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of `127.0.0.1:upstream`.
    pub(crate) fn start(upstream: u16) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared { upstream: upstream.into(), ..Shared::default() });
        let (release, released) = tokio::sync::watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else { continue };
                        let (s, released) = (s.clone(), released.clone());
                        tokio::spawn(async move {
                            let _ = serve(client, s, released).await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Proxy { port, shared, release, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/PATH`, through the proxy.
    pub(crate) fn url(&self, container: &super::azurite::Container, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}/{}/{path}", self.port, super::azurite::ACCOUNT, container.name)
    }

    /// Applies `fault` to the `nth` (1-based) request with `method` whose path (without query)
    /// satisfies `path`, and to the `times - 1` matching ones after it. Counting starts now.
    pub(crate) fn fault(
        &self,
        method: &'static str,
        path: impl Fn(&str) -> bool + Send + Sync + 'static,
        nth: usize,
        times: usize,
        fault: Fault,
    ) {
        self.shared.rules.lock().expect("rules").push(Rule {
            method,
            path: Box::new(path),
            nth,
            times,
            fault,
            seen: 0,
        });
    }

    /// Forwards from now on to `127.0.0.1:upstream` (the store, restarted on another port).
    pub(crate) fn set_upstream(&self, upstream: u16) {
        self.shared.upstream.store(upstream, Ordering::SeqCst);
    }

    /// Moves the store's clock, as the tool sees it in the `Date` of every answer, `ahead` later.
    pub(crate) fn move_clock(&self, ahead: std::time::Duration) {
        self.shared.clock_ahead.store(i64::try_from(ahead.as_secs()).expect("seconds"), Ordering::SeqCst);
    }

    /// Lets every held request (and any later one a `Hold` rule picks) through.
    pub(crate) fn release(&self) {
        let _ = self.release.send(true);
    }

    /// How many requests are held now.
    pub(crate) fn held(&self) -> usize {
        *self.shared.held.lock().expect("held")
    }

    /// Waits until `n` requests are held.
    pub(crate) fn wait_held(&self, n: usize) {
        super::wait_until(&format!("{n} held requests"), || self.held() >= n);
    }

    /// Every request seen so far, in the order they were answered (or not).
    pub(crate) fn log(&self) -> Vec<Seen> {
        self.shared.log.lock().expect("log").clone()
    }

    /// The requests a fault was applied to.
    pub(crate) fn faulted(&self) -> Vec<Seen> {
        self.log().into_iter().filter(|s| s.fault.is_some()).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request from the client, read whole.
struct Request {
    method: String,
    path: String,
    head: Vec<String>,
    body: Vec<u8>,
}

async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = text.split("\r\n").map(str::to_owned);
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let head: Vec<String> = std::iter::once(first.clone()).chain(lines).collect();
    let length = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
        })
        .unwrap_or(0);
    assert!(
        !head.iter().any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding")),
        "the proxy reads bodies by Content-Length only: {head:?}"
    );
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(1 << 16)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Some(Request { method, path, head, body }))
}

/// `head` with its `Connection` header replaced by `Connection: close`, and its `Date` moved
/// `ahead` seconds.
fn closing(head: &[String], ahead: i64) -> String {
    let mut out = String::new();
    for h in head.iter().filter(|h| !h.to_ascii_lowercase().starts_with("connection:")) {
        let moved = h
            .split_once(':')
            .filter(|(k, _)| ahead != 0 && k.trim().eq_ignore_ascii_case("date"))
            .and_then(|(_, v)| jiff::fmt::rfc2822::parse(v.trim()).ok())
            .map(|d| {
                let later = d.timestamp() + jiff::SignedDuration::from_secs(ahead);
                format!("Date: {}", later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
            });
        out.push_str(moved.as_deref().unwrap_or(h));
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn serve(
    mut client: TcpStream,
    shared: Arc<Shared>,
    mut released: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut client).await? else { return Ok(()) };
    let fault = {
        let mut rules = shared.rules.lock().expect("rules");
        let mut picked = None;
        for r in rules.iter_mut().filter(|r| r.method == req.method && (r.path)(&req.path)) {
            r.seen += 1;
            if picked.is_none() && r.seen >= r.nth && r.seen < r.nth + r.times {
                picked = Some(r.fault);
            }
        }
        picked
    };
    if fault == Some(Fault::Hold) {
        *shared.held.lock().expect("held") += 1;
        let _ = released.wait_for(|r| *r).await;
        *shared.held.lock().expect("held") -= 1;
    }
    if fault == Some(Fault::Refuse500) {
        shared.log.lock().expect("log").push(Seen { method: req.method, path: req.path, status: None, fault });
        client
            .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return client.shutdown().await;
    }
    let upstream = shared.upstream.load(Ordering::SeqCst);
    let mut up = match TcpStream::connect(("127.0.0.1", upstream)).await {
        Ok(up) => up,
        Err(e) => {
            // The store is down: the client's connection is closed unanswered, as a network would.
            shared.log.lock().expect("log").push(Seen { method: req.method, path: req.path, status: None, fault });
            return Err(e);
        }
    };
    up.write_all(closing(&req.head, 0).as_bytes()).await?;
    up.write_all(&req.body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer[..answer.len().min(64)])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    shared.log.lock().expect("log").push(Seen { method: req.method, path: req.path, status, fault });
    match fault {
        Some(Fault::LoseAnswer) => return Ok(()),
        Some(Fault::Fail500) => {
            client
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
        }
        Some(Fault::Hold | Fault::Refuse500) | None => {
            let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(answer.len());
            let head: Vec<String> = String::from_utf8_lossy(&answer[..end]).split("\r\n").map(str::to_owned).collect();
            client.write_all(closing(&head, shared.clock_ahead.load(Ordering::SeqCst)).as_bytes()).await?;
            client.write_all(answer.get(end + 4..).unwrap_or_default()).await?;
        }
    }
    client.shutdown().await
}
