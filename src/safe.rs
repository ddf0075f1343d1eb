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
//! JSON output is safe by encoding; GitHub annotations escape their data on top of [`text`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must never reach a terminal or log raw (control, line-separator and bidi
/// characters).
pub(crate) fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A value for a terminal or log line: control and bidi characters escaped.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
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
    Cow::Owned(out)
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
    fn no_guarded_line_can_start_a_workflow_command() {
        let g = guard_lines("error: device `x\n::error::fake`\nhint: run it again\n  ##[error]x");
        assert_eq!(g, "error: device `x\n| ::error::fake`\nhint: run it again\n|   ##[error]x");
    }
}
