use super::*;
use crate::ledger::location::Location;
use crate::ledger::snapshot::{parse_whole_at, snapshot_bytes};
use crate::ledger::tests::record;
use crate::ledger::{Adoption, Archival, Attempt, Resolution, Status};

/// A ledger with what a line could trip on: quotes, backslashes, `": ` and `},` inside strings,
/// non-ASCII, an empty list, a boxed resolution, adoption and archival.
fn tricky() -> Ledger {
    let mut ledger = Ledger::empty();
    ledger.lineage = Some(Uuid::from_u128(7));
    ledger.serial = 3;
    ledger.tenant = Some("contoso".into());
    let mut a = record("m \"quoted\": {x}", "S\\1", Status::Unknown);
    a.attempts.push(Attempt {
        error_message: Some("said: \"no\",\n    },\\".into()),
        resolution: Some(Box::new(Resolution { note: "é ✓ \u{1}".into(), ..Resolution::default() })),
        ..Attempt::default()
    });
    let mut b = record("m", "S2", Status::Done);
    b.adopted = Some(Box::new(Adoption { reason: "    }".into(), ..Adoption::default() }));
    b.archived = Some(Box::new(Archival { reason: "a\": b".into(), ..Archival::default() }));
    let c = record("m", "S3", Status::Accepted);
    for r in [a, b, c] {
        ledger.records.insert(r.key.clone(), r);
    }
    ledger
}

fn whole(bytes: &[u8]) -> Result<Ledger, crate::ledger::StateError> {
    parse_whole_at(&Location::Memory("t".into()), bytes)
}

#[test]
fn reads_what_is_written_as_the_whole_document_does() {
    for ledger in [tricky(), Ledger { records: BTreeMap::new(), tenant: None, ..tricky() }] {
        let bytes = snapshot_bytes(&ledger);
        let (read, checksum) = read(&bytes[..]).expect("io").expect("laid out as written");
        assert_eq!(read, ledger);
        assert_eq!(read, whole(&bytes).expect("whole"));
        assert!(String::from_utf8_lossy(&bytes).contains(&format!("\"checksum\": \"{checksum}\"")));
    }
}

#[test]
fn gives_up_on_another_layout_and_the_whole_read_decides() {
    let ledger = tricky();
    let bytes = snapshot_bytes(&ledger);
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let crlf = String::from_utf8_lossy(&bytes).replace('\n', "\r\n").into_bytes();
    // Reformatted but the same content: the whole read accepts it, as it always did.
    for other in [serde_json::to_vec(&value).expect("compact"), crlf] {
        assert_eq!(read(&other[..]).expect("io"), None);
        assert_eq!(whole(&other).expect("accepted whole"), ledger);
    }
    // Edited (a status changed, the layout kept): not verified, and refused whole.
    let text = String::from_utf8(bytes.clone()).expect("utf8");
    let edited = text.replacen("\"status\": \"done\"", "\"status\": \"failed\"", 1).into_bytes();
    assert_ne!(edited, bytes);
    assert_eq!(read(&edited[..]).expect("io"), None);
    assert!(whole(&edited).is_err());
    // Cut short, or followed by anything: not this reader's.
    assert_eq!(read(&bytes[..bytes.len() - 1]).expect("io"), None);
    assert_eq!(read(&[&bytes[..], b"\n"].concat()[..]).expect("io"), None);
}

#[test]
fn a_large_ledger_is_written_the_same_while_its_checksum_is_computed_aside() {
    for ledger in [tricky(), Ledger { records: BTreeMap::new(), ..tricky() }] {
        let mut aside = Vec::new();
        crate::ledger::snapshot::write_snapshot_with(&ledger, &mut aside, true).expect("written");
        let mut inline = Vec::new();
        crate::ledger::snapshot::write_snapshot_with(&ledger, &mut inline, false).expect("written");
        assert_eq!(String::from_utf8_lossy(&aside), String::from_utf8_lossy(&inline));
        assert_eq!(whole(&aside).expect("verifies"), ledger);
    }
}
