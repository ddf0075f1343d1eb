//! Untrusted text made safe for each sink it reaches.
//!
//! Manifests, file names and Intune data (device names, owners, error messages) are written by
//! other people. Printed raw, a newline followed by `::add-mask::…` or `::error …` becomes a
//! GitHub workflow command, `\r` rewrites a terminal line or breaks out of a Markdown block, an
//! escape sequence recolours a terminal, and `[x](https://…)` or `@team` renders live in a pull
//! request comment. Every renderer passes such values through one of these functions:
//!
//! - [`text`] — terminal and CI log lines (stdout, stderr, diagnostics): control characters,
//!   Unicode line separators and bidirectional overrides are shown escaped (`\n`, `\u{1b}`),
//!   never emitted. Nothing else changes, so ordinary values read as written.
//! - [`markdown`] — the same, as a code span: nothing in it renders as a link, image, mention,
//!   emphasis or HTML.
//! - [`guard_lines`] — the last line of defence for multi-line messages that are ours (`hint:`
//!   lines) but carry values: no line of it can start a workflow command.
//!
//! - [`commands`] — anywhere in a line, `##[` and `##vso[` (any case) are what the Azure
//!   Pipelines agent and GitHub's legacy syntax read as a logging command: their second `#` is
//!   shown escaped (`#\u{23}[`). [`text`] does it for values, and every stream the tool writes to
//!   ([`stdout`], [`stderr`], the log) does it once more for whole lines, so a value that reached
//!   output by a path nobody thought of is still inert.
//! - [`json`] — JSON documents write every `#` as `\u0023` (the same text to a JSON reader, and
//!   no command to a runner reading the raw line); [`xml`] writes it as `&#35;`.
//!
//! GitHub annotations escape their data on top of [`text`].

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

/// Whether `c` must never reach a terminal or log raw: control characters, line separators, and
/// every character that shows as nothing ([`invisible`]).
pub(crate) fn dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || invisible(c)
}

/// Whether `c` ends or rewrites a line: control characters and Unicode's line separators.
pub(crate) fn breaks_lines(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Whether `c` is drawn as nothing, or changes how its neighbours are drawn, so that two
/// different names read alike: Unicode's format characters (category Cf: zero-width spaces and
/// joiners, bidirectional marks and overrides, the word joiner, the byte-order mark, tag
/// characters, U+180E), variation selectors, the combining grapheme joiner and the Hangul fillers.
pub(crate) fn invisible(c: char) -> bool {
    matches!(c,
        // Category Cf (Unicode 15.1).
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}' | '\u{8e2}'
        | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}'
        // Variation selectors, Mongolian free variation selectors, the combining grapheme joiner.
        | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' | '\u{180b}'..='\u{180d}' | '\u{180f}' | '\u{34f}'
        // Hangul fillers and the braille blank: letters that draw nothing.
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' | '\u{2800}')
}

/// A value for a terminal or log line: control, invisible and bidi characters escaped, and
/// [`commands`] broken.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return commands(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if dangerous(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(commands(&out).into_owned())
}

/// Where the second `#` of a logging command starts in `line`: `##[` or `##vso[`, any case.
fn command_at(line: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 2 < line.len() {
        if line[i] == b'#' && line[i + 1] == b'#' {
            let rest = &line[i + 2..];
            if rest.first() == Some(&b'[') || (rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"vso[")) {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

/// `bytes` with every `##[` and `##vso[` (any case) broken: the second `#` becomes `\u{23}`.
fn commands_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Some(mut at) = command_at(bytes, 0) else { return Cow::Borrowed(bytes) };
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let mut done = 0;
    loop {
        out.extend_from_slice(&bytes[done..at]);
        out.extend_from_slice(b"\\u{23}");
        done = at + 1;
        match command_at(bytes, done) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(&bytes[done..]);
    Cow::Owned(out)
}

/// `s` with every `##[` and `##vso[` (any case, anywhere in a line) broken, so that no CI runner
/// reads a logging command in it: the second `#` is shown as `\u{23}`.
pub(crate) fn commands(s: &str) -> Cow<'_, str> {
    match commands_bytes(s.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        // Only ASCII was replaced by ASCII: still UTF-8.
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// A JSON document made safe for a log: every `#` (which JSON has only inside strings) written as
/// `\u0023`, the same text to any JSON reader.
pub(crate) fn json(doc: &[u8]) -> Cow<'_, [u8]> {
    if !doc.contains(&b'#') {
        return Cow::Borrowed(doc);
    }
    let mut out = Vec::with_capacity(doc.len() + 16);
    for &b in doc {
        if b == b'#' { out.extend_from_slice(b"\\u0023") } else { out.push(b) }
    }
    Cow::Owned(out)
}

/// Serializes `value` as pretty JSON to `out`, made safe as [`json`] makes a document, as it is
/// made: a plan of 20,000 actions is never held whole in memory.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    let mut safe = JsonSafe(std::io::BufWriter::with_capacity(1 << 16, out));
    serde_json::to_writer_pretty(&mut safe, value)?;
    safe.0.flush()
}

/// Writes JSON text with every `#` as `\u0023` ([`json`]), a piece at a time: `#` is only ever
/// inside a string, where the escape reads the same.
struct JsonSafe<W: Write>(W);

impl<W: Write> Write for JsonSafe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'#') {
            self.0.write_all(&rest[..at])?;
            self.0.write_all(b"\\u0023")?;
            rest = &rest[at + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// An XML document made safe for a log: every `#` written as the character reference `&#35;`.
pub(crate) fn xml(doc: &str) -> Cow<'_, str> {
    if doc.contains('#') { Cow::Owned(doc.replace('#', "&#35;")) } else { Cow::Borrowed(doc) }
}

/// A stream whose every line passes through [`commands`] before it reaches `W`: the last line
/// of defence of stdout and stderr. Lines are held until their end (a command is read per
/// line), and the rest is written on flush and drop.
#[derive(Debug)]
pub(crate) struct Guarded<W: Write> {
    inner: W,
    held: Vec<u8>,
}

impl<W: Write> Guarded<W> {
    pub(crate) fn new(inner: W) -> Self {
        Guarded { inner, held: Vec::new() }
    }
    fn pass(&mut self, upto: usize) -> std::io::Result<()> {
        let line: Vec<u8> = self.held.drain(..upto).collect();
        self.inner.write_all(&commands_bytes(&line))
    }
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The complete lines pass at once (without a copy when nothing was held); the rest waits.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            self.held.extend_from_slice(buf);
            return Ok(buf.len());
        };
        let (lines, rest) = buf.split_at(end + 1);
        if self.held.is_empty() {
            self.inner.write_all(&commands_bytes(lines))?;
        } else {
            self.held.extend_from_slice(lines);
            let held = std::mem::take(&mut self.held);
            self.inner.write_all(&commands_bytes(&held))?;
        }
        self.held.extend_from_slice(rest);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.pass(self.held.len())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Guarded<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Standard output, guarded ([`Guarded`]).
pub(crate) fn stdout() -> Guarded<std::io::StdoutLock<'static>> {
    Guarded::new(std::io::stdout().lock())
}

/// Standard error, guarded ([`Guarded`]).
pub(crate) fn stderr() -> Guarded<std::io::StderrLock<'static>> {
    Guarded::new(std::io::stderr().lock())
}

/// A value for Markdown (a PR comment, a job summary), as a code span: inside one, GitHub renders
/// no link, image, mention, emphasis or HTML, and [`text`] has already escaped `\r`, `\n` and
/// the other control characters. A backtick (which would close the span) becomes `'`, a pipe
/// (which would split a table cell) `\|`.
pub(crate) fn markdown(s: &str) -> String {
    let inner = text(s).replace('`', "'").replace('|', "\\|");
    if inner.is_empty() { String::new() } else { format!("`{inner}`") }
}

/// A value inside raw HTML (a `<summary>` line, where Markdown is not parsed): [`text`],
/// HTML-escaped, in `<code>` (where GitHub links no mention).
pub(crate) fn html_code(s: &str) -> String {
    let inner = text(s).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    format!("<code>{inner}</code>")
}

/// A message of ours that may span lines and carry values: every control character but `\n`
/// escaped, and any line that would start a workflow command (`::` or `##[`, after leading
/// whitespace, as the runner reads it) prefixed so it cannot.
pub(crate) fn guard_lines(s: &str) -> String {
    s.split('\n')
        .map(|line| {
            let line = text(line);
            let t = line.trim_start();
            if t.starts_with("::") || t.starts_with("##") { format!("| {line}") } else { line.into_owned() }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_and_nothing_else_changes() {
        assert!(matches!(text("R58M-12345 Ärzte"), Cow::Borrowed(_)));
        assert_eq!(text("a\n::add-mask::x"), "a\\n::add-mask::x");
        assert_eq!(text("a\r\u{1b}[31m\u{202e}b\u{85}"), "a\\r\\u{1b}[31m\\u{202e}b\\u{85}");
        assert_eq!(text("line\u{2028}sep"), "line\\u{2028}sep");
    }

    #[test]
    fn markdown_values_are_inert_code_spans() {
        assert_eq!(markdown("[x](https://evil) @team"), "`[x](https://evil) @team`");
        assert_eq!(markdown("a`b|c\r\n</details>"), "`a'b\\|c\\r\\n</details>`");
        assert_eq!(markdown(""), "");
        assert_eq!(html_code("</summary><img src=x>@a\r"), "<code>&lt;/summary&gt;&lt;img src=x&gt;@a\\r</code>");
    }

    #[test]
    fn logging_commands_are_broken_anywhere_in_a_line_in_any_case() {
        for (given, shown) in [
            ("a ##vso[task.setvariable variable=X]y", "a #\\u{23}vso[task.setvariable variable=X]y"),
            ("x##[add-mask]s ##VSO[task.prependpath]/t", "x#\\u{23}[add-mask]s #\\u{23}VSO[task.prependpath]/t"),
            ("###[x", "##\\u{23}[x"),
            ("## [x ##vs[ #[", "## [x ##vs[ #["),
        ] {
            assert_eq!(commands(given), shown);
            assert_eq!(text(given), shown);
        }
        assert!(matches!(commands("no command ## here"), Cow::Borrowed(_)));
        // At the very end of a long line, and as the whole line.
        let tail = format!("{}##vso[", "x".repeat(40));
        assert_eq!(commands(&tail), format!("{}#\\u{{23}}vso[", "x".repeat(40)));
        assert_eq!(commands("##["), "#\\u{23}[");
        let doc = json(br###"{"a":"##vso[x]","b":1}"###);
        let back: serde_json::Value = serde_json::from_slice(&doc).expect("still JSON");
        assert_eq!(back["a"], "##vso[x]");
        assert!(!String::from_utf8_lossy(&doc).contains('#'));
        assert_eq!(xml("<a b=\"##[x\">##vso[</a>"), "<a b=\"&#35;&#35;[x\">&#35;&#35;vso[</a>");
    }

    #[test]
    fn a_guarded_stream_breaks_commands_split_across_writes() {
        let mut g = Guarded::new(Vec::new());
        for piece in ["ok ##", "vso[task.complete]\nnext #", "#[error] end"] {
            g.write_all(piece.as_bytes()).expect("write");
        }
        g.flush().expect("flush");
        assert_eq!(String::from_utf8_lossy(&g.inner), "ok #\\u{23}vso[task.complete]\nnext #\\u{23}[error] end");
    }

    #[test]
    fn line_breakers_are_controls_and_unicode_separators_only() {
        for c in ['\n', '\r', '\u{1b}', '\u{85}', '\u{2028}', '\u{2029}'] {
            assert!(breaks_lines(c), "{c:?}");
        }
        for c in ['a', ' ', '\u{200f}', '\u{200b}', 'م'] {
            assert!(!breaks_lines(c), "{c:?}");
        }
    }

    #[test]
    fn a_guarded_stream_breaks_a_command_that_ends_its_line_and_flushes_when_dropped() {
        let mut out = Vec::new();
        {
            let mut g = Guarded::new(&mut out);
            g.write_all(b"x ##[\n").expect("write");
            g.write_all(b"tail ##vso[").expect("write");
        }
        assert_eq!(String::from_utf8_lossy(&out), "x #\\u{23}[\ntail #\\u{23}vso[");
    }

    #[test]
    fn json_documents_are_written_with_every_hash_escaped() {
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({"reason": "##vso[x] #1"})).expect("write");
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains('#') && text.contains("\\u0023\\u0023vso[x] \\u00231"), "{text}");
        let back: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(back["reason"], "##vso[x] #1");
    }

    #[test]
    fn invisible_characters_are_shown_escaped() {
        for c in
            ['\u{200b}', '\u{200d}', '\u{2060}', '\u{61c}', '\u{180e}', '\u{3164}', '\u{e0041}', '\u{fe0f}', '\u{ad}']
        {
            let given = format!("CEO-PHONE{c}");
            assert_eq!(text(&given), format!("CEO-PHONE\\u{{{:x}}}", c as u32));
        }
        assert_eq!(text("Ärzte-Ω 東京"), "Ärzte-Ω 東京");
    }

    #[test]
    fn no_guarded_line_can_start_a_workflow_command() {
        let g = guard_lines("error: device `x\n::error::fake`\nhint: run it again\n  ##[error]x");
        assert_eq!(g, "error: device `x\n| ::error::fake`\nhint: run it again\n  #\\u{23}[error]x");
    }
}
