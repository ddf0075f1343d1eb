//! What `apply` did, for machines: versioned JSON on stdout and a JUnit XML report.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::json::FORMAT_VERSION;
use crate::apply::ApplyReport;
use crate::state::Status;

#[derive(Serialize)]
struct ReportDto<'a> {
    format_version: u32,
    simulated: bool,
    success: bool,
    summary: SummaryDto,
    actions: Vec<ActionDto<'a>>,
}

#[derive(Serialize)]
struct SummaryDto {
    planned: usize,
    /// Resets made outside reconcile, recorded as done: nothing sent.
    adopted: usize,
    accepted: usize,
    rejected: usize,
    unknown: usize,
    not_executed: usize,
    blocked: usize,
    interrupted: bool,
}

#[derive(Serialize)]
struct ActionDto<'a> {
    key: &'a str,
    manifest: &'a str,
    selector: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Why it was adopted instead of sent (a reset made outside reconcile).
    #[serde(skip_serializing_if = "Option::is_none")]
    adopted: Option<&'a str>,
}

pub fn json(out: &mut impl Write, r: &ApplyReport, simulated: bool) -> io::Result<()> {
    let mut actions: Vec<ActionDto> = r
        .records
        .iter()
        .map(|rec| {
            let last = rec.attempts.last();
            ActionDto {
                key: rec.key.as_str(),
                manifest: &rec.manifest,
                selector: rec.selector.to_string(),
                status: rec.status.as_str(),
                managed_device_id: rec.managed_device_id.as_deref(),
                http_status: last.and_then(|a| a.http_status),
                request_id: last.and_then(|a| a.request_id.as_deref()),
                client_request_id: last.map(|a| a.client_request_id.to_string()),
                error: last.and_then(|a| a.error_message.as_deref()),
                adopted: rec.adopted.as_ref().map(|a| a.reason.as_str()),
            }
        })
        .collect();
    actions.extend(r.blocked_actions.iter().map(|(a, why)| ActionDto {
        key: a.key.as_str(),
        manifest: &a.manifest,
        selector: a.selector.to_string(),
        status: "blocked",
        managed_device_id: None,
        http_status: None,
        request_id: None,
        client_request_id: None,
        error: Some(why),
        adopted: None,
    }));
    actions.sort_by(|a, b| (a.manifest, a.key).cmp(&(b.manifest, b.key)));
    let dto = ReportDto {
        format_version: FORMAT_VERSION,
        simulated,
        success: r.success(),
        summary: SummaryDto {
            planned: r.planned,
            adopted: r.adopted,
            accepted: r.accepted,
            rejected: r.rejected,
            unknown: r.unknown,
            not_executed: r.not_executed,
            blocked: r.blocked,
            interrupted: r.interrupted,
        },
        actions,
    };
    serde_json::to_writer_pretty(&mut *out, &dto)?;
    writeln!(out)
}

/// One `<testcase>` per action: passed when accepted or adopted, failed otherwise, skipped when
/// blocked.
pub fn junit_xml(r: &ApplyReport) -> String {
    let mut cases = Vec::new();
    let mut failures = 0;
    for rec in &r.records {
        let name = format!("{} {}", rec.selector, rec.key.short());
        let body = if rec.status == Status::Accepted || rec.adopted.is_some() {
            String::new()
        } else {
            failures += 1;
            let msg = rec.attempts.last().and_then(|a| a.error_message.clone()).unwrap_or_default();
            format!("<failure message=\"{}\">{}</failure>", xml(rec.status.as_str()), xml(&msg))
        };
        cases.push(format!(
            "    <testcase classname=\"{}\" name=\"{}\">{body}</testcase>",
            xml(&rec.manifest),
            xml(&name)
        ));
    }
    for (a, why) in &r.blocked_actions {
        let name = format!("{} {}", a.selector, a.key.short());
        cases.push(format!(
            "    <testcase classname=\"{}\" name=\"{}\"><skipped message=\"{}\"/></testcase>",
            xml(&a.manifest),
            xml(&name),
            xml(why)
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"reconcile apply\" tests=\"{}\" failures=\"{failures}\" skipped=\"{}\">\n{}\n  </testsuite>\n</testsuites>\n",
        cases.len(),
        r.blocked_actions.len(),
        cases.join("\n")
    )
}

pub fn write_junit(path: &Path, r: &ApplyReport) -> io::Result<()> {
    std::fs::write(path, junit_xml(r))
}

/// A value in the JUnit XML: control characters shown escaped first (XML 1.0 cannot carry most
/// of them, even as character references), then the markup characters.
fn xml(s: &str) -> String {
    super::safe::text(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
