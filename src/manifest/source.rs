//! Reading YAML files defensively: regular files only, a size limit, UTF-8, parser budgets, and
//! documents parsed one by one so an error in one document does not hide the others.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Diagnostics, Pos};

/// The largest manifest or config file read. Real manifests are a few KiB; a file past this
/// is almost surely a mistake (a binary, a generated dump) and parsing it would only be slow.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A file's text, shared with the diagnostics that point into it.
#[derive(Debug, Clone)]
pub(crate) struct SourceText {
    pub text: Arc<str>,
}

/// Reads `path` as UTF-8 text, refusing what is not a regular file or is too large.
/// Problems become diagnostics naming the file; `None` means nothing could be read.
pub(crate) fn read_text(path: &Path, diags: &mut Diagnostics) -> Option<SourceText> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            diags.push(Diagnostic::error(path, None, format!("cannot read file: {}", io_reason(&e))));
            return None;
        }
    };
    if meta.is_dir() {
        diags.push(Diagnostic::error(path, None, "is a directory, not a YAML file"));
        return None;
    }
    if !meta.is_file() {
        // FIFOs, sockets and devices would block or never end.
        diags.push(Diagnostic::error(path, None, "is not a regular file"));
        return None;
    }
    if meta.len() > MAX_FILE_BYTES {
        diags.push(
            Diagnostic::error(
                path,
                None,
                format!("file is {} bytes; the limit is {MAX_FILE_BYTES} bytes (1 MiB)", meta.len()),
            )
            .with_hint("split the requests into several manifests"),
        );
        return None;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            diags.push(Diagnostic::error(path, None, format!("cannot read file: {}", io_reason(&e))));
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let pos = pos_at_end(std::str::from_utf8(valid).unwrap_or_default());
            diags.push(
                Diagnostic::error(path, Some(pos), "file is not valid UTF-8").with_hint("save the file as UTF-8"),
            );
            return None;
        }
    };
    let text = text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text);
    let text: Arc<str> = Arc::from(text);
    diags.add_source(path, text.clone());
    Some(SourceText { text })
}

/// A duration as written (`30s`, `24h`), or a diagnostic at it naming `key` (`graph.timeout`).
pub(crate) fn duration(
    s: &serde_saphyr::Spanned<String>,
    key: &str,
    file: &Path,
    diags: &mut Diagnostics,
) -> Option<std::time::Duration> {
    match s.value.parse::<crate::duration::HumanDuration>() {
        Ok(d) => Some(d.0),
        Err(e) => {
            diags.push(Diagnostic::error(file, pos_of(s, 0), format!("{key}: {e}")));
            None
        }
    }
}

pub(crate) use crate::diag::io_reason;

fn pos_at_end(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos::new(to_u32(line), to_u32(col))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A document of a multi-document file: its text and the number of lines before it.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    pub text: &'a str,
    pub line_offset: u32,
}

/// Splits a YAML stream at its `---` document markers.
///
/// YAML 1.2 forbids a line that starts with `---` followed by white space (or the end of the line)
/// inside a document's content, so such a line always starts a new document. Parsing documents
/// separately lets one broken document be reported without hiding errors in the others.
pub(crate) fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 0u32;
    let mut offset = 0;
    for (line_no, line) in (0u32..).zip(text.split_inclusive('\n')) {
        let is_marker =
            line.strip_prefix("---").is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']));
        if is_marker && offset > start {
            docs.push(Document { text: &text[start..offset], line_offset: start_line });
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
    }
    docs.push(Document { text: &text[start..], line_offset: start_line });
    docs.retain(|d| has_content(d.text));
    docs
}

/// Whether a document holds anything but markers, comments and blank lines.
fn has_content(doc: &str) -> bool {
    doc.lines().any(|l| {
        let t = l.trim();
        let t = t.strip_prefix("---").unwrap_or(t).trim();
        !(t.is_empty() || t.starts_with('#') || t == "..." || t.starts_with('%'))
    })
}

/// Parser options: the crate's defaults already refuse duplicate keys and bound alias expansion;
/// these budgets are tighter still, sized for files of at most [`MAX_FILE_BYTES`].
fn options() -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 50_000;
    serde_saphyr::options! {
        alias_limits: alias_limits,
        budget: serde_saphyr::budget! {
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 32,
            max_documents: 1_000,
        },
        with_snippet: false,
    }
}

/// Parses one document into `T`, turning a parser or schema error into a diagnostic.
pub(crate) fn parse_document<T: DeserializeOwned>(
    path: &Path,
    doc: &Document<'_>,
    diags: &mut Diagnostics,
) -> Option<T> {
    match serde_saphyr::from_str_with_options::<T>(doc.text, options()) {
        Ok(v) => Some(v),
        Err(e) => {
            let pos = e
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| Pos::new(to_u32(l.line() as usize) + doc.line_offset, to_u32(l.column() as usize)));
            diags.push(Diagnostic::error(path, pos, yaml_message(&e)));
            None
        }
    }
}

/// The parser's message without its own location suffix (we print `file:line:col` first).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    };
    let msg = msg.trim().trim_end_matches('.');
    // The parser's advice to its own programmers, not to the person who wrote the file.
    let msg = msg.split(", set DuplicateKeyPolicy").next().unwrap_or(msg);
    match msg {
        "expected mapping start" => {
            "expected a mapping of keys to values here, found a list or a single value".to_owned()
        }
        other => other.to_owned(),
    }
}

/// A value's position in the whole file (`None` when the parser could not tell), given the
/// number of lines before its document.
pub(crate) fn pos_of<T>(s: &serde_saphyr::Spanned<T>, line_offset: u32) -> Option<Pos> {
    let l = s.referenced;
    (l.line() > 0).then(|| Pos::new(to_u32(l.line() as usize) + line_offset, to_u32(l.column() as usize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_document_markers_only() {
        let text = "a: 1\n---\nb: 2\n--- # c\nc: '---'\n---x: 3\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].line_offset, 0);
        assert_eq!(docs[1].line_offset, 1);
        assert_eq!(docs[2].line_offset, 3);
        assert!(docs[2].text.contains("---x"));
    }

    #[test]
    fn skips_empty_documents() {
        assert_eq!(split_documents("---\n# only a comment\n---\n...\n").len(), 0);
        assert_eq!(split_documents("").len(), 0);
    }

    // Billion laughs: a walk over every value must hit the alias budget, not expand 9^8 nodes.
    #[test]
    fn alias_bombs_hit_the_budget() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let mut diags = Diagnostics::default();
        let doc = Document { text: &bomb, line_offset: 0 };
        let parsed = parse_document::<serde::de::IgnoredAny>(Path::new("bomb.yaml"), &doc, &mut diags);
        assert!(parsed.is_none());
        let msg = &diags.items()[0].message;
        assert!(msg.contains("budget") || msg.contains("alias"), "{msg}");
    }

    #[test]
    fn io_reasons_read_as_sentences() {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(io_reason(&e), "entity not found");
    }
}
