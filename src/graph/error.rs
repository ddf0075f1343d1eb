//! Graph error bodies and `Retry-After`.
//!
//! Intune answers `{"error":{"code","message","innerError":{"request-id","client-request-id","date"}}}`,
//! often with a JSON document inside `message` (`{"_version":3,"Message":"…"}`) and unhelpful codes
//! (`UnknownError` for a 403): callers branch on the HTTP status first.

use std::time::Duration;

use serde::Deserialize;

/// A non-success answer from Graph, reduced to what a person needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(r) = &self.request_id {
            write!(f, " (request-id {r})")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    code: Option<String>,
    message: Option<String>,
    #[serde(rename = "innerError", alias = "innererror")]
    inner: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(rename = "request-id")]
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct IntuneMessage {
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// The longest error message kept: Intune's can run to kilobytes of diagnostics.
const MAX_MESSAGE: usize = 500;

/// Parses an error answer. `header_request_id` is the `request-id` response header, which wins
/// over the body's copy.
pub(crate) fn parse(status: u16, header_request_id: Option<String>, body: &[u8]) -> GraphError {
    let env: Option<Envelope> = serde_json::from_slice(body).ok();
    let (code, message, inner) = match env {
        Some(Envelope { error }) => (error.code, error.message, error.inner),
        None => (None, None, None),
    };
    let message = message.map(|m| {
        let m = match serde_json::from_str::<IntuneMessage>(m.trim()) {
            Ok(IntuneMessage { message: Some(inner) }) => inner,
            _ => m,
        };
        shorten(m.trim())
    });
    let body_request_id = inner.and_then(|i| i.request_id);
    GraphError {
        status,
        code: code.filter(|c| !c.is_empty()),
        message: message.filter(|m| !m.is_empty()),
        request_id: header_request_id.or(body_request_id),
    }
}

/// Whether a refusal is Multi Admin Approval's: code `ApprovalRequired`, or a message that names
/// one of its headers (docs/graph-facts.md, "Multi Admin Approval").
pub(crate) fn names_approval(err: &GraphError) -> bool {
    err.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("ApprovalRequired"))
        || err.message.as_deref().is_some_and(|m| m.to_ascii_lowercase().contains("x-msft-approval"))
}

/// The approval code of a 400 or 403 that Multi Admin Approval answered: the
/// `x-msft-approval-code` header, else the code its message names. `None`: not such an answer, or
/// one without a code (then it is a refusal like any other).
pub(crate) fn approval_code(status: u16, err: &GraphError, header: Option<String>) -> Option<String> {
    if !matches!(status, 400 | 403) || !names_approval(err) {
        return None;
    }
    let from_message = || {
        let m = err.message.as_deref()?;
        let at = m.to_ascii_lowercase().find("x-msft-approval-code:")? + "x-msft-approval-code:".len();
        let code: String =
            m[at..].trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        (!code.is_empty()).then_some(code)
    };
    let code = header.map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).or_else(from_message)?;
    // A code is an identifier: anything else is not kept (it is shown and sent back later).
    (code.len() <= 128 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(code)
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let cut: String = s.chars().take(MAX_MESSAGE).collect();
    format!("{cut}…")
}

/// `Retry-After` in seconds (possibly fractional, e.g. `2.128`) or as an HTTP date.
pub(crate) fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(24.0 * 3600.0)));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let d = at.duration_since(now);
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intune_json_inside_message_is_unwrapped() {
        let body = br#"{"error":{"code":"BadRequest","message":"{\"_version\":3,\"Message\":\"An error has occurred - Operation ID (for customer support): 0000 - Activity ID: 1111\",\"CustomApiErrorPhrase\":\"\"}","innerError":{"date":"2026-11-27T10:00:00","request-id":"body-rid","client-request-id":"c"}}}"#;
        let e = parse(400, None, body);
        assert_eq!(e.code.as_deref(), Some("BadRequest"));
        assert_eq!(
            e.message.as_deref(),
            Some("An error has occurred - Operation ID (for customer support): 0000 - Activity ID: 1111")
        );
        assert_eq!(e.request_id.as_deref(), Some("body-rid"));
        assert_eq!(parse(400, Some("hdr".into()), body).request_id.as_deref(), Some("hdr"));
    }

    #[test]
    fn garbage_bodies_keep_the_status() {
        let e = parse(503, None, b"<html>Service Unavailable</html>");
        assert_eq!((e.status, e.code.as_deref(), e.message.as_deref()), (503, None, None));
        assert_eq!(e.to_string(), "HTTP 503");
    }

    #[test]
    fn retry_after_forms() {
        let now: jiff::Timestamp = "2026-11-27T10:00:00Z".parse().expect("ts");
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("2.128", now), Some(Duration::from_millis(2128)));
        assert_eq!(retry_after("Fri, 27 Nov 2026 10:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }

    #[test]
    fn approval_codes_come_from_the_header_or_the_message() {
        let err = |code: &str, message: &str| GraphError {
            status: 403,
            code: Some(code.into()),
            message: Some(message.into()),
            request_id: None,
        };
        let held = err("ApprovalRequired", "Approval required. x-msft-approval-code: abc-123");
        assert_eq!(approval_code(403, &held, Some("abc-123".into())), Some("abc-123".into()));
        assert_eq!(approval_code(403, &held, None), Some("abc-123".into()));
        assert_eq!(approval_code(500, &held, None), None);
        let missing = err("BadRequest", "The x-msft-approval-justification header is required");
        assert_eq!(approval_code(400, &missing, None), None, "no code: refused, not held");
        assert!(names_approval(&missing));
        assert!(!names_approval(&err("Forbidden", "no")));
        assert_eq!(approval_code(403, &err("Forbidden", "no"), Some("x".into())), None);
        assert_eq!(approval_code(403, &held, Some("bad code\n".into())), None);
    }
}
