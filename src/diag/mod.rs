//! Compiler-style diagnostics for manifests and config: `path:line:column: error: message`, the
//! source line and a caret, and GitHub Actions annotations when running there.
//!
//! Validation never stops at the first problem: every module that checks user input pushes
//! [`Diagnostic`]s into a [`Diagnostics`] list, and the CLI renders them all at once.

pub(crate) mod safe;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How bad a diagnostic is. Errors stop `plan` and `apply`; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A 1-based line and column (in characters), as editors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

/// One problem found in user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    pub severity: Severity,
    /// The stable code of the check that found it (a policy rule's key under `policy:`,
    /// `cooldown`), for programs to branch on, as rustc's `E0308` or codespan's
    /// `Diagnostic::code`; `None` for problems no caller tells apart. The message may name the
    /// code for a person, but nothing reads it back from there.
    pub code: Option<&'static str>,
    pub file: Option<PathBuf>,
    pub pos: Option<Pos>,
    pub message: String,
    /// Where else the problem shows (another file's line), rendered as `= note:`.
    pub note: Option<String>,
    pub hint: Option<String>,
    /// The line it points at holds a secret: the file, line and column are given, the line's text
    /// is not quoted.
    pub conceal_source: bool,
}

impl Diagnostic {
    pub(crate) fn error(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code: None,
            file: Some(file.into()),
            pos,
            message: message.into(),
            note: None,
            hint: None,
            conceal_source: false,
        }
    }

    /// An error that belongs to no file (the environment, git).
    pub(crate) fn plain_error(message: impl Into<String>) -> Self {
        Diagnostic { file: None, ..Diagnostic::error("", None, message) }
    }

    pub(crate) fn warning(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(file, pos, message) }
    }

    /// A warning that belongs to no file.
    pub(crate) fn plain_warning(message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::plain_error(message) }
    }

    #[must_use]
    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    #[must_use]
    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    #[must_use]
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every diagnostic of a run, with the source text of the files they point into.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    sources: BTreeMap<PathBuf, Arc<str>>,
}

impl Diagnostics {
    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Remembers a file's text so that its diagnostics can show the offending line.
    pub(crate) fn add_source(&mut self, file: &Path, text: Arc<str>) {
        self.sources.insert(file.to_path_buf(), text);
    }

    pub(crate) fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
        self.sources.extend(other.sources);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub(crate) fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    pub(crate) fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    pub(crate) fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Sorts by file and position so output is stable whatever order files were read in.
    pub(crate) fn sort(&mut self) {
        self.items.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
    }

    /// Writes every diagnostic the way compilers do, with the source line and a caret.
    pub(crate) fn render(&self, out: &mut impl io::Write) -> io::Result<()> {
        for d in &self.items {
            out.write_all(self.render_one(d).as_bytes())?;
        }
        Ok(())
    }

    fn render_one(&self, d: &Diagnostic) -> String {
        let mut s = String::new();
        match (&d.file, d.pos) {
            (Some(f), Some(p)) => {
                let _ = write!(s, "{}:{}:{}: ", safe::text(&f.display().to_string()), p.line, p.column);
            }
            (Some(f), None) => {
                let _ = write!(s, "{}: ", safe::text(&f.display().to_string()));
            }
            _ => {}
        }
        let _ = writeln!(s, "{}: {}", d.severity.as_str(), safe::text(&d.message));
        if let (Some(f), Some(p)) = (&d.file, d.pos)
            && !d.conceal_source
            && let Some(line) = self.sources.get(f).and_then(|t| source_line(t, p.line))
        {
            let num = p.line.to_string();
            let pad = " ".repeat(num.len());
            let line = safe::text(&line.replace('\t', " ")).into_owned();
            let col = (p.column.max(1) - 1) as usize;
            let width = token_width(&line, col);
            let _ = writeln!(s, "{pad} |");
            let _ = writeln!(s, "{num} | {line}");
            let _ = writeln!(s, "{pad} | {}{}", " ".repeat(col), "^".repeat(width));
        }
        if let Some(n) = &d.note {
            let _ = writeln!(s, "  = note: {}", safe::text(n));
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(s, "  = hint: {}", safe::text(h));
        }
        s
    }

    /// GitHub Actions workflow commands, one per diagnostic
    /// (`::error file=…,line=…,col=…::message`).
    pub(crate) fn render_github(&self, out: &mut impl io::Write) -> io::Result<()> {
        for d in &self.items {
            let mut props = Vec::new();
            if let Some(f) = &d.file {
                props.push(format!("file={}", escape_property(&f.display().to_string())));
            }
            if let Some(p) = d.pos {
                props.push(format!("line={}", p.line));
                props.push(format!("col={}", p.column));
            }
            let mut msg = d.message.clone();
            if let Some(n) = &d.note {
                msg.push_str("\nnote: ");
                msg.push_str(n);
            }
            if let Some(h) = &d.hint {
                msg.push_str("\nhint: ");
                msg.push_str(h);
            }
            writeln!(out, "::{} {}::{}", d.severity.as_str(), props.join(","), escape_data(&msg))?;
        }
        Ok(())
    }
}

/// The text of 1-based line `n`, if the file has it.
fn source_line(text: &str, n: u32) -> Option<&str> {
    let line = text.lines().nth((n as usize).checked_sub(1)?)?;
    // Very long lines (minified input) would flood the terminal; the position is enough then.
    (line.chars().count() <= 300).then_some(line)
}

/// How many carets to draw: to the end of the token starting at `col` (in characters).
fn token_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col).collect();
    let quoted = matches!(rest.first(), Some('"' | '\''));
    let n = if quoted {
        let q = rest[0];
        rest.iter().skip(1).position(|&c| c == q).map_or(rest.len(), |i| i + 2)
    } else {
        rest.iter().position(|&c| c.is_whitespace() || matches!(c, ',' | '}' | ']' | '#')).unwrap_or(rest.len())
    };
    n.max(1)
}

/// A workflow command's data: GitHub's own escaping of `%`, `\r`, `\n`, and every other control
/// character shown escaped (it would otherwise reach the log raw).
fn escape_data(s: &str) -> String {
    let s = s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    safe::text(&s).into_owned()
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// An I/O error as a reason in a sentence: lowercase, without the "(os error N)" noise.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostics {
        let mut ds = Diagnostics::default();
        let f = PathBuf::from("manifests/a.yaml");
        ds.add_source(&f, Arc::from("spec:\n  devices:\n    - id: 3fa85 # short\n"));
        ds.push(
            Diagnostic::error(&f, Some(Pos::new(3, 11)), "`3fa85` is not a GUID")
                .with_hint("copy the id from the Intune portal"),
        );
        ds
    }

    #[test]
    fn renders_like_a_compiler() {
        let mut out = Vec::new();
        sample().render(&mut out).expect("write to a Vec");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "manifests/a.yaml:3:11: error: `3fa85` is not a GUID\n  |\n3 |     - id: 3fa85 # short\n  |           ^^^^^\n  = hint: copy the id from the Intune portal\n"
        );
    }

    #[test]
    fn renders_github_annotations_with_escaping() {
        let mut ds = sample();
        ds.push(Diagnostic::warning("a,b:c.yaml", None, "two\nlines 100%"));
        let mut out = Vec::new();
        ds.render_github(&mut out).expect("write to a Vec");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("::error file=manifests/a.yaml,line=3,col=11::`3fa85` is not a GUID%0Ahint: copy"));
        assert!(text.contains("::warning file=a%2Cb%3Ac.yaml::two%0Alines 100%25"));
    }

    #[test]
    fn carets_cover_a_quoted_token() {
        assert_eq!(token_width(r#"  - imei: "35 69" # x"#, 10), 7);
        assert_eq!(token_width("abc", 5), 1);
    }
}
