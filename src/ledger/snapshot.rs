//! The snapshot document, byte for byte the same in every home: pretty JSON of `version`,
//! `lineage`, `serial`, `tenant`, `records`, and a `checksum` (`sha256:` of the compact JSON of
//! everything else, in that order). A snapshot that fails to parse, is of a newer version or fails
//! its checksum is refused, and nothing ever overwrites it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::location::Location;
use super::{LEDGER_VERSION, Ledger, Record, StateError};
use crate::core::action::{ActionKey, HashWriter};

pub(crate) mod streamed;

/// The snapshot as stored. Field order is the checksum's order: do not reorder.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot {
    pub(crate) version: u32,
    pub(crate) lineage: Uuid,
    pub(crate) serial: u64,
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    pub(crate) records: BTreeMap<ActionKey, Record>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checksum: Option<String>,
}

impl Snapshot {
    /// `sha256:` of the compact JSON of every field but the checksum, in declaration order.
    pub(crate) fn digest(&self) -> String {
        Body {
            version: self.version,
            lineage: &self.lineage,
            serial: self.serial,
            tenant: &self.tenant,
            records: &self.records,
        }
        .digest()
    }
}

impl Body<'_> {
    fn digest(&self) -> String {
        // Buffered: the serializer writes a few bytes at a time, the hash is fastest in blocks.
        let mut h = std::io::BufWriter::with_capacity(1 << 16, HashWriter(Sha256::new()));
        serde_json::to_writer(&mut h, self).expect("hashing into memory cannot fail");
        let h = h.into_inner().unwrap_or_else(|_| unreachable!("hashing into memory cannot fail"));
        format!("sha256:{}", hex::encode(h.0.finalize()))
    }
}

/// [`Snapshot`] without its checksum, borrowed: what the checksum covers.
#[derive(Serialize)]
struct Body<'a> {
    version: u32,
    lineage: &'a Uuid,
    serial: u64,
    tenant: &'a Option<String>,
    records: &'a BTreeMap<ActionKey, Record>,
}

/// Only the version, read first so a newer file is refused with the right message.
#[derive(Deserialize)]
struct VersionProbe {
    version: serde_json::Value,
}

/// Parses and verifies a snapshot read from `path`: [`streamed`] when it is laid out as this
/// build writes it, else whole.
pub(crate) fn parse_snapshot_at(path: &Location, bytes: &[u8]) -> Result<Ledger, StateError> {
    match streamed::read(bytes) {
        Ok(Some((ledger, _))) => Ok(ledger),
        _ => parse_whole_at(path, bytes),
    }
}

/// Parses and verifies a snapshot read from `path` as one document: what decides whether a
/// snapshot is accepted, and why not.
pub(crate) fn parse_whole_at(path: &Location, bytes: &[u8]) -> Result<Ledger, StateError> {
    let corrupt = |reason: String| StateError::Corrupt { path: path.clone(), reason };
    let version = |v: Option<u64>, shown: &dyn std::fmt::Display| match v {
        Some(v) if v == u64::from(LEDGER_VERSION) => Ok(()),
        Some(v) if v > u64::from(LEDGER_VERSION) => Err(StateError::NewerVersion { path: path.clone(), found: v }),
        _ => Err(corrupt(format!("unsupported version {shown}"))),
    };
    // One pass on the happy path; the version is probed alone only to explain a failure (a newer
    // ledger need not parse as this one).
    let snap: Snapshot = match super::intern::reading(|| serde_json::from_slice(bytes)) {
        Ok(snap) => snap,
        Err(e) => {
            let probe: VersionProbe =
                serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a ledger JSON document ({e})")))?;
            version(probe.version.as_u64(), &probe.version)?;
            return Err(corrupt(e.to_string()));
        }
    };
    let v = snap.version;
    version(Some(u64::from(v)), &v)?;
    let want = snap.digest();
    match &snap.checksum {
        Some(c) if *c == want => {}
        Some(_) => return Err(corrupt("checksum mismatch (was the file edited by hand?)".into())),
        None => return Err(corrupt("checksum missing".into())),
    }
    if let Some((k, r)) = snap.records.iter().find(|(k, r)| **k != r.key) {
        return Err(corrupt(format!("record `{k}` carries key `{}`", r.key)));
    }
    Ok(Ledger { lineage: Some(snap.lineage), serial: snap.serial, tenant: snap.tenant, records: snap.records })
}

/// The snapshot document of `ledger` (pretty JSON with its checksum, newline-terminated): the
/// same bytes for a local file and a blob.
pub(crate) fn snapshot_bytes(ledger: &Ledger) -> Vec<u8> {
    let mut out = Vec::new();
    write_snapshot(ledger, &mut out).expect("the ledger serializes");
    out
}

/// Writes [`snapshot_bytes`] of `ledger` to `out` as they are made, never the whole document in
/// memory (150 MB for 100,000 records). The checksum is the document's last field: a large
/// ledger is written while its checksum is computed on another core.
pub(crate) fn write_snapshot(ledger: &Ledger, out: impl std::io::Write) -> std::io::Result<()> {
    write_snapshot_with(ledger, out, ledger.records.len() >= PARALLEL_FROM)
}

/// From this many records a snapshot's checksum is computed on a thread of its own.
const PARALLEL_FROM: usize = 1_000;

fn write_snapshot_with(ledger: &Ledger, mut out: impl std::io::Write, parallel: bool) -> std::io::Result<()> {
    let body = Body {
        version: LEDGER_VERSION,
        lineage: &ledger.lineage.expect("a locked ledger has a lineage"),
        serial: ledger.serial,
        tenant: &ledger.tenant,
        records: &ledger.records,
    };
    if !parallel {
        let doc = Document { body: &body, checksum: body.digest() };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        return out.write_all(b"\n");
    }
    std::thread::scope(|s| {
        let digest = s.spawn(|| body.digest());
        // The body as a document of its own ends `\n}`: held back, the checksum goes before it.
        let mut w = std::io::BufWriter::with_capacity(1 << 16, HoldBack { out: &mut out, held: Vec::new() });
        serde_json::to_writer_pretty(&mut w, &body)?;
        let rest = w.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        let checksum = digest.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if rest.held != b"\n}" {
            return Err(std::io::Error::other("the snapshot's body did not end as a JSON object does"));
        }
        let end = format!(",\n  \"checksum\": {}\n}}\n", serde_json::to_string(&checksum)?);
        rest.out.write_all(end.as_bytes())
    })
}

/// Passes everything written on to `out` but the last two bytes, which it holds.
struct HoldBack<W: std::io::Write> {
    out: W,
    held: Vec<u8>,
}

impl<W: std::io::Write> std::io::Write for HoldBack<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() < 2 {
            self.held.extend_from_slice(buf);
            let pass = self.held.len().saturating_sub(2);
            self.out.write_all(&self.held[..pass])?;
            self.held.drain(..pass);
        } else {
            let (pass, hold) = buf.split_at(buf.len() - 2);
            self.out.write_all(&self.held)?;
            self.out.write_all(pass)?;
            self.held.clear();
            self.held.extend_from_slice(hold);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The snapshot as written: [`Body`] and its checksum, in [`Snapshot`]'s field order.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    body: &'a Body<'a>,
    checksum: String,
}
