//! What `apply` did, for machines: versioned JSON on stdout (the plans' vocabulary and
//! version, [`super::json`]) and a JUnit XML report.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::json::FORMAT_VERSION;
use crate::core::action::SelectorJson;
use crate::exec::ApplyReport;
use crate::ledger::Status;

#[derive(Serialize)]
struct ReportDto<'a> {
    format_version: u32,
    simulated: bool,
    success: bool,
    summary: SummaryDto,
    actions: Vec<ActionDto<'a>>,
    /// `apply --plan`: what the manifests ask for that is not in the reviewed plan; not sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_in_plan: Vec<NotInPlanDto<'a>>,
}

#[derive(Serialize)]
struct NotInPlanDto<'a> {
    key: &'a str,
    manifest: &'a str,
    selector: SelectorJson,
}

#[derive(Serialize)]
struct SummaryDto {
    planned: usize,
    /// Resets made outside reconcile, recorded as done: nothing sent.
    adopted: usize,
    accepted: usize,
    rejected: usize,
    unknown: usize,
    /// Not executed this run: sent and certainly not executed, or never sent.
    not_executed: usize,
    /// Of `not_executed`, those never sent (the run was stopped before their turn).
    not_started: usize,
    blocked: usize,
    interrupted: bool,
}

#[derive(Serialize)]
struct ActionDto<'a> {
    key: &'a str,
    manifest: &'a str,
    selector: SelectorJson,
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
    /// What Intune showed instead of sending (a reset made outside reconcile: when, by whom).
    #[serde(skip_serializing_if = "Option::is_none")]
    adopted: Option<String>,
}

pub(crate) fn json(out: &mut impl Write, r: &ApplyReport, simulated: bool) -> io::Result<()> {
    let mut actions: Vec<ActionDto> = r
        .records
        .iter()
        .map(|rec| {
            let last = rec.attempts.last();
            ActionDto {
                key: rec.key.as_str(),
                manifest: &rec.manifest,
                selector: (&rec.selector).into(),
                status: rec.status.as_str(),
                managed_device_id: rec.managed_device_id.as_deref(),
                http_status: last.and_then(|a| a.http_status),
                request_id: last.and_then(|a| a.request_id.as_deref()),
                client_request_id: last.map(|a| a.client_request_id.to_string()),
                error: last.and_then(|a| a.error_message.as_deref()),
                adopted: rec.adopted.as_deref().map(|a| a.seen(rec.kind.spec().wording.short)),
            }
        })
        .collect();
    actions.extend(r.blocked_actions.iter().map(|(a, why)| ActionDto {
        key: a.key.as_str(),
        manifest: &a.manifest,
        selector: (&a.selector).into(),
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
            not_executed: r.not_executed + r.not_started,
            not_started: r.not_started,
            blocked: r.blocked,
            interrupted: r.interrupted,
        },
        actions,
        not_in_plan: r
            .not_in_plan
            .iter()
            .map(|a| NotInPlanDto { key: a.key.as_str(), manifest: &a.manifest, selector: (&a.selector).into() })
            .collect(),
    };
    crate::diag::safe::write_json(&mut *out, &dto)?;
    writeln!(out)
}

/// One `<testcase>` per action: passed when accepted or adopted, failed otherwise, skipped when
/// blocked (written by quick-junit, which escapes the XML). Values from manifests and Graph have
/// their control characters shown escaped first: XML 1.0 cannot carry most of them.
pub(crate) fn junit_xml(r: &ApplyReport) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let text = |s: &str| crate::diag::safe::text(s).into_owned();
    let mut suite = TestSuite::new("reconcile apply");
    for rec in &r.records {
        let status = if rec.status == Status::Accepted || rec.adopted.is_some() {
            TestCaseStatus::success()
        } else {
            let mut failed = TestCaseStatus::non_success(NonSuccessKind::Failure);
            failed.set_message(text(rec.status.as_str()));
            if let Some(msg) = rec.attempts.last().and_then(|a| a.error_message.as_deref()) {
                failed.set_description(text(msg));
            }
            failed
        };
        let mut case =
            TestCase::new(text(&format!("{} {} {}", kind_name(rec.kind), rec.selector, rec.key.short())), status);
        case.set_classname(text(&rec.manifest));
        suite.add_test_case(case);
    }
    for (a, why) in &r.blocked_actions {
        let mut skipped = TestCaseStatus::skipped();
        skipped.set_message(text(why));
        let mut case = TestCase::new(text(&format!("{} {} {}", kind_name(a.kind), a.selector, a.key.short())), skipped);
        case.set_classname(text(&a.manifest));
        suite.add_test_case(case);
    }
    let mut report = Report::new("reconcile");
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

/// The kind as a test case's name starts: the Graph name of the action (`resetPasscode`, `wipe`).
fn kind_name(kind: crate::core::action::ActionKind) -> &'static str {
    kind.spec().graph_name
}

pub(crate) fn write_junit(path: &Path, r: &ApplyReport) -> io::Result<()> {
    std::fs::write(path, crate::diag::safe::xml(&junit_xml(r)).as_bytes())
}
