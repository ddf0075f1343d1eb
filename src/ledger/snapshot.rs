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
/// memory (150 MB for 100,000 records).
pub(crate) fn write_snapshot(ledger: &Ledger, mut out: impl std::io::Write) -> std::io::Result<()> {
    let body = Body {
        version: LEDGER_VERSION,
        lineage: &ledger.lineage.expect("a locked ledger has a lineage"),
        serial: ledger.serial,
        tenant: &ledger.tenant,
        records: &ledger.records,
    };
    let doc = Document { body: &body, checksum: body.digest() };
    serde_json::to_writer_pretty(&mut out, &doc)?;
    out.write_all(b"\n")
}

/// The snapshot as written: [`Body`] and its checksum, in [`Snapshot`]'s field order.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    body: &'a Body<'a>,
    checksum: String,
}
