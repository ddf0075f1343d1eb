//! The snapshot read as it is written, one record at a time, without the file in memory.
//!
//! [`super::write_snapshot`] writes pretty JSON: one item per line, each line indented by its
//! depth, and no line break inside a string (JSON has none). This reader takes the document line
//! by line, parses each record from its own lines, and hashes the compact JSON those lines
//! stand for (the line without its indent, and without the space after a key's colon), which is
//! the checksum's input. Anything it does not expect, a record that does not parse, or a checksum
//! that does not match makes it give up (`None`): the caller then reads the document whole
//! ([`super::parse_snapshot_at`]), which accepts and refuses exactly what it always did. What
//! this reader accepts, that one accepts too: its hash matching means the lines are the compact
//! JSON of the ledger as written, with whitespace between tokens only.

use std::collections::BTreeMap;
use std::io::BufRead;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::core::action::ActionKey;
use crate::ledger::{LEDGER_VERSION, Ledger, Record};

/// Reads a snapshot laid out as this build writes it: the ledger and its checksum, or `None`
/// when the document is laid out otherwise or does not verify.
pub(crate) fn read(input: impl BufRead) -> std::io::Result<Option<(Ledger, String)>> {
    crate::ledger::intern::reading(|| Reader { input, line: Vec::new(), hash: Sha256::new() }.document())
}

struct Reader<R> {
    input: R,
    line: Vec<u8>,
    hash: Sha256,
}

/// Gives up on the fast path: the caller reads the document whole.
macro_rules! expect {
    ($cond:expr) => {
        if !$cond {
            return Ok(None);
        }
    };
}

impl<R: BufRead> Reader<R> {
    /// The next line, without its line break (`false` at the end or on a line without one).
    fn next(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        self.input.read_until(b'\n', &mut self.line)?;
        Ok(self.line.pop() == Some(b'\n'))
    }

    /// The next line, hashed as compact JSON.
    fn hashed(&mut self) -> std::io::Result<bool> {
        let ok = self.next()?;
        if ok {
            hash_compact(&mut self.hash, &self.line);
        }
        Ok(ok)
    }

    /// The value of the header field `name` on the next line (`  "name": value,`), hashed.
    fn field(&mut self, name: &str) -> std::io::Result<Option<&[u8]>> {
        expect!(self.hashed()?);
        let value = self
            .line
            .strip_prefix(b"  \"")
            .and_then(|l| l.strip_prefix(name.as_bytes()))
            .and_then(|l| l.strip_prefix(b"\": "))
            .and_then(|l| l.strip_suffix(b","));
        Ok(value)
    }

    fn document(mut self) -> std::io::Result<Option<(Ledger, String)>> {
        expect!(self.hashed()? && self.line == b"{");
        let version = format!("{LEDGER_VERSION}");
        expect!(self.field("version")? == Some(version.as_bytes()));
        let Some(Ok(lineage)) = self.field("lineage")?.map(serde_json::from_slice::<Uuid>) else { return Ok(None) };
        let Some(Ok(serial)) = self.field("serial")?.map(serde_json::from_slice::<u64>) else { return Ok(None) };
        let Some(Ok(tenant)) = self.field("tenant")?.map(serde_json::from_slice::<Option<String>>) else {
            return Ok(None);
        };
        expect!(self.next()?);
        let records = match &self.line[..] {
            b"  \"records\": {}," => {
                self.hash.update(b"\"records\":{}");
                BTreeMap::new()
            }
            b"  \"records\": {" => {
                hash_compact(&mut self.hash, &self.line);
                let Some(records) = self.records()? else { return Ok(None) };
                records
            }
            _ => return Ok(None),
        };
        // The body closes here (the checksum is not part of it).
        self.hash.update(b"}");
        expect!(self.next()?);
        let Some(checksum) = self.line.strip_prefix(b"  \"checksum\": \"").and_then(|l| l.strip_suffix(b"\"")) else {
            return Ok(None);
        };
        let want = format!("sha256:{}", hex::encode(std::mem::take(&mut self.hash).finalize()));
        expect!(checksum == want.as_bytes());
        expect!(self.next()? && self.line == b"}");
        expect!(self.input.fill_buf()?.is_empty());
        Ok(Some((Ledger { lineage: Some(lineage), serial, tenant, records }, want)))
    }

    /// The records (at least one), each `    "KEY": {` … `    },`, up to the line closing them
    /// (`  },`), hashed.
    fn records(&mut self) -> std::io::Result<Option<BTreeMap<ActionKey, Record>>> {
        let mut records = BTreeMap::new();
        let mut chunk = Vec::new();
        loop {
            expect!(self.hashed()?);
            let Some(key) = self.line.strip_prefix(b"    ").and_then(|l| l.strip_suffix(b": {")) else {
                return Ok(None);
            };
            let Ok(key) = serde_json::from_slice::<ActionKey>(key) else { return Ok(None) };
            chunk.clear();
            chunk.push(b'{');
            let last = loop {
                expect!(self.hashed()?);
                chunk.extend_from_slice(&self.line);
                chunk.push(b'\n');
                match &self.line[..] {
                    b"    }," => break false,
                    b"    }" => break true,
                    _ => {}
                }
            };
            chunk.truncate(chunk.len() - if last { 1 } else { 2 });
            let Ok(record) = serde_json::from_slice::<Record>(&chunk) else { return Ok(None) };
            expect!(record.key == key);
            expect!(records.insert(key, record).is_none());
            if last {
                expect!(self.next()? && self.line == b"  },");
                // The records' object closes here; the comma after it is not the body's.
                self.hash.update(b"}");
                return Ok(Some(records));
            }
        }
    }
}

/// Feeds `line` (pretty JSON, one item) to `hash` as compact JSON: without its indent, and
/// without the space after a key's colon. A key is the string a line starts with when `: `
/// follows it; a string holds no line break, so what is before it on the line is indent.
fn hash_compact(hash: &mut Sha256, line: &[u8]) {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let line = &line[start..];
    if line.first() == Some(&b'"') {
        let mut i = 1;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let key = i + 1;
        if line.get(key..key + 2) == Some(b": ") {
            hash.update(&line[..=key]);
            hash.update(&line[key + 2..]);
            return;
        }
    }
    hash.update(line);
}

#[cfg(test)]
mod tests;
