//! `reconcile state list`, `state show` and `state export` as text, JSON or CSV.

use std::io::{self, Write};

use serde::Serialize;

/// `state list/show --format json`: the ledger's records as the ledger keeps them. Its own
/// version: plans and apply reports moved to format 2 without it changing.
const FORMAT_VERSION: u32 = 1;
use crate::diag::safe::text;
use crate::duration::at_second;
use crate::ledger::{Attempt, Ledger, Provenance, Record};

#[derive(Serialize)]
struct ListDto<'a> {
    format_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage: Option<String>,
    serial: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    actions: Vec<&'a Record>,
}

#[derive(Serialize)]
struct ShowDto<'a> {
    format_version: u32,
    action: &'a Record,
}

pub(crate) fn list_text(out: &mut impl Write, ledger: &Ledger) -> io::Result<()> {
    if ledger.records.is_empty() {
        return writeln!(out, "The ledger holds no actions.");
    }
    let mut records: Vec<&Record> = ledger.records.values().collect();
    // Most recent first: what an administrator looks for.
    records.sort_by(|a, b| (b.updated_at, &a.key).cmp(&(a.updated_at, &b.key)));
    writeln!(
        out,
        "{:<12}  {:<13}  {:<24}  {:<20}  {:<24}  {:<32}  SELECTOR",
        "KEY", "STATUS", "KIND", "LAST ATTEMPT", "DEVICE", "MANIFEST"
    )?;
    for r in records {
        let last = r.attempts.last().map_or_else(|| "-".to_owned(), |a| at_second(a.started_at));
        let device = r.device_name.as_deref().or(r.managed_device_id.as_deref()).unwrap_or("-");
        let archived = match (&r.archived, &r.adopted) {
            (Some(_), _) => "  (archived)".to_owned(),
            (None, Some(a)) => format!("  (adopted: {})", a.seen(r.kind.spec().wording.short)),
            (None, None) => String::new(),
        };
        let line = format!(
            "{:<12}  {:<13}  {:<24}  {:<20}  {:<24}  {:<32}  {}{archived}",
            r.key.short(),
            r.status.as_str(),
            r.kind.spec().graph_name,
            last,
            device,
            r.manifest,
            r.selector
        );
        // Device names come from Intune, manifest names and selectors from pull requests.
        writeln!(out, "{}", text(&line))?;
    }
    let n = ledger.records.len();
    let archived = match ledger.records.values().filter(|r| r.archived.is_some()).count() {
        0 => String::new(),
        k => format!(" ({k} archived: `reconcile state archive`, not shown in plans)"),
    };
    writeln!(out, "\n{n} action{}{archived}; ledger serial {}.", if n == 1 { "" } else { "s" }, ledger.serial)
}

pub(crate) fn list_json(out: &mut impl Write, ledger: &Ledger) -> io::Result<()> {
    let dto = ListDto {
        format_version: FORMAT_VERSION,
        lineage: ledger.lineage.map(|l| l.to_string()),
        serial: ledger.serial,
        tenant: ledger.tenant.as_deref(),
        actions: ledger.records.values().collect(),
    };
    crate::diag::safe::write_json(&mut *out, &dto)?;
    writeln!(out)
}

pub(crate) fn show_text(out: &mut impl Write, r: &Record) -> io::Result<()> {
    // File names, device ids, request ids, error messages and notes come from other people:
    // every line is shown escaped.
    let mut line = |l: String| writeln!(out, "{}", text(&l));
    line(format!("key:         {}", r.key))?;
    line(format!("kind:        {}", r.kind.as_str()))?;
    line(format!("manifest:    {} ({})", r.manifest, r.file))?;
    line(format!("round:       {}", r.round))?;
    line(format!("collection:  {}", r.collection.as_str()))?;
    line(format!("selector:    {}", r.selector))?;
    line(format!("device id:   {}", r.managed_device_id.as_deref().unwrap_or("(not resolved)")))?;
    if let Some(name) = &r.device_name {
        line(format!("device name: {name}"))?;
    }
    line(format!("status:      {}", r.status))?;
    line(format!("created:     {}", at_second(r.created_at)))?;
    line(format!("updated:     {}", at_second(r.updated_at)))?;
    if let Some(a) = &r.adopted {
        // Made from the recorded evidence now: true whenever it is read.
        line(format!("adopted:     a reset made outside reconcile, recorded by {} at {}", a.by, at_second(a.at)))?;
        line(format!(
            "     Intune started it at {} (state {}), initiated by {}",
            at_second(a.result_started),
            a.state,
            a.who()
        ))?;
        match a.source() {
            Some(source) => line(format!("     shown by {source}"))?,
            None => {
                if let Some(id) = &a.audit_id {
                    line(format!("     audit entry {id}"))?;
                }
            }
        }
        line(format!("     reason: {}; nothing was sent", a.why()))?;
        if let Some(then) = a.earlier_wording() {
            line(format!("     noted when adopted (by an older version): {then}"))?;
        }
    }
    if let Some(a) = &r.archived {
        line(format!("archived:    by {} at {}: {}", a.by, at_second(a.at), a.reason))?;
    }
    line(format!("attempts:    {}", r.attempts.len()))?;
    for (i, a) in r.attempts.iter().enumerate() {
        for l in attempt_lines(i + 1, a) {
            line(l)?;
        }
    }
    Ok(())
}

/// Everything the ledger holds about one attempt, one fact per line.
fn attempt_lines(n: usize, a: &Attempt) -> Vec<String> {
    let mut lines =
        vec![format!("  #{n} started {}  client-request-id {}", at_second(a.started_at), a.client_request_id)];
    if let Some(t) = a.server_sent_at {
        lines.push(format!("     reached Intune at or after {} (Intune's clock)", at_second(t)));
    }
    let status = a.http_status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
    let finished = a.finished_at.map(|f| format!(" at {}", at_second(f))).unwrap_or_default();
    let date = a.server_date.map(|d| format!(" (Intune's Date {})", at_second(d))).unwrap_or_default();
    lines.push(format!("     {status}{finished}{date}"));
    if let Some(id) = &a.request_id {
        lines.push(format!("     request-id {id}"));
    }
    if a.error_code.is_some() || a.error_message.is_some() {
        lines.push(format!(
            "     error {}: {}",
            a.error_code.as_deref().unwrap_or("-"),
            a.error_message.as_deref().unwrap_or("")
        ));
    }
    if let Some(code) = &a.approval_code {
        let seen = a
            .approval
            .as_ref()
            .map(|s| format!(": {} (looked up at {})", s.describe(), at_second(s.checked_at)))
            .unwrap_or_default();
        lines.push(format!("     Multi Admin Approval request {code}{seen}"));
    }
    if let Some(p) = &a.policy_override {
        lines.push(format!("     policy override: {p}"));
    }
    if let Some(p) = &a.provenance {
        lines.extend(provenance_lines(p));
    }
    if let Some(res) = &a.resolution {
        lines.push(format!("     decided {} by {} at {}: {}", res.status, res.by, at_second(res.at), res.note));
        if let Some(t) = res.server_time {
            lines.push(format!("       evidence from Intune's clock at {}", at_second(t)));
        }
        if let Some(t) = res.result_started {
            lines.push(format!("       claimed the Intune result started at {}", at_second(t)));
        }
        if let Some(id) = &res.audit_id {
            lines.push(format!("       claimed the audit entry {id}"));
        }
    }
    lines
}

fn provenance_lines(p: &Provenance) -> Vec<String> {
    let mut lines = Vec::new();
    let mut source = Vec::new();
    if let Some(ci) = &p.ci {
        source.push(ci.clone());
    }
    if let Some(id) = &p.run_id {
        source.push(format!("run {id}"));
    }
    if let Some(c) = &p.commit {
        source.push(format!("commit {c}"));
    }
    if let Some(pr) = &p.pull_request {
        source.push(format!("pull request #{pr}"));
    }
    if let Some(a) = &p.actor {
        source.push(format!("by {a}"));
    }
    if !source.is_empty() {
        lines.push(format!("     from {}", source.join(", ")));
    }
    if let Some(url) = &p.run_url {
        lines.push(format!("     run {url}"));
    }
    if let Some(plan) = &p.plan {
        lines.push(format!("     saved plan {plan}"));
    }
    if let Some(facts) = super::manifest_facts(&p.manifest) {
        lines.push(format!("     manifest said: {facts}"));
    }
    lines
}

pub(crate) fn show_json(out: &mut impl Write, r: &Record) -> io::Result<()> {
    crate::diag::safe::write_json(&mut *out, &ShowDto { format_version: FORMAT_VERSION, action: r })?;
    writeln!(out)
}

/// Columns of `state export --format csv`, one row per attempt (an action never attempted has
/// one row with the attempt columns empty). The kind and its parameters (compact JSON, empty for
/// none) come last, after the columns exports had before there were other kinds.
const CSV_HEADER: [&str; 34] = [
    "key",
    "manifest",
    "file",
    "round",
    "collection",
    "selector",
    "device_id",
    "device_name",
    "status",
    "attempt",
    "started_at",
    "finished_at",
    "server_date",
    "http_status",
    "request_id",
    "client_request_id",
    "error_code",
    "error_message",
    "policy_override",
    "decided_as",
    "decided_by",
    "decision_note",
    "commit",
    "pull_request",
    "ci",
    "run_id",
    "run_url",
    "actor",
    "ticket",
    "reason",
    "requested_by",
    "plan",
    "kind",
    "parameters",
];

/// The ledger for auditors: one CSV row per attempt (RFC 4180 quoting). Every value was written
/// by someone else: a cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first) is
/// prefixed with `'`, so opening the export never runs a formula.
pub(crate) fn export_csv(out: &mut impl Write, ledger: &Ledger) -> io::Result<()> {
    row(out, CSV_HEADER.iter().map(|h| (*h).to_owned()))?;
    let mut records: Vec<&Record> = ledger.records.values().collect();
    records.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    for r in records {
        // A record without attempts still gets a row; an adopted one shows its adoption as the
        // decision (who, why, Intune's evidence) with where it came from.
        let none = match &r.adopted {
            Some(a) => Attempt {
                resolution: Some(Box::new(crate::ledger::Resolution {
                    by: a.by.clone(),
                    at: a.at,
                    server_time: None,
                    status: r.status,
                    note: format!(
                        "adopted a reset made outside reconcile (Intune started it at {}, state {}, initiated by {}{}): {}",
                        a.result_started,
                        a.state,
                        a.who(),
                        a.source().map_or_else(
                            || a.audit_id.as_deref().map(|id| format!(", audit {id}")).unwrap_or_default(),
                            |s| format!(", shown by {s}")
                        ),
                        a.why()
                    ),
                    result_started: Some(a.result_started),
                    audit_id: a.audit_id.clone(),
                })),
                provenance: a.provenance.clone().map(std::sync::Arc::new),
                ..Attempt::default()
            },
            None => Attempt::default(),
        };
        let attempts: Vec<(usize, &Attempt)> = if r.attempts.is_empty() {
            vec![(0, &none)]
        } else {
            r.attempts.iter().enumerate().map(|(i, a)| (i + 1, a)).collect()
        };
        for (n, a) in attempts {
            let o = |v: Option<&String>| v.cloned().unwrap_or_default();
            let t = |v: Option<jiff::Timestamp>| v.map(|t| t.to_string()).unwrap_or_default();
            let p = a.provenance.clone().unwrap_or_default();
            let d = a.resolution.as_ref();
            let real = n > 0;
            row(
                out,
                [
                    r.key.to_string(),
                    r.manifest.clone(),
                    r.file.clone(),
                    r.round.to_string(),
                    r.collection.as_str().to_owned(),
                    r.selector.to_string(),
                    o(r.managed_device_id.as_ref()),
                    o(r.device_name.as_ref()),
                    r.status.to_string(),
                    if real { n.to_string() } else { String::new() },
                    t(real.then_some(a.started_at)),
                    t(a.finished_at),
                    t(a.server_date),
                    a.http_status.map(|s| s.to_string()).unwrap_or_default(),
                    o(a.request_id.as_ref()),
                    if real { a.client_request_id.to_string() } else { String::new() },
                    o(a.error_code.as_ref()),
                    o(a.error_message.as_ref()),
                    o(a.policy_override.as_ref()),
                    d.map(|d| d.status.to_string()).unwrap_or_default(),
                    d.map(|d| d.by.clone()).unwrap_or_default(),
                    d.map(|d| d.note.clone()).unwrap_or_default(),
                    o(p.commit.as_ref()),
                    o(p.pull_request.as_ref()),
                    o(p.ci.as_ref()),
                    o(p.run_id.as_ref()),
                    o(p.run_url.as_ref()),
                    o(p.actor.as_ref()),
                    o(p.manifest.ticket.as_ref()),
                    o(p.manifest.reason.as_ref()),
                    o(p.manifest.requested_by.as_ref()),
                    o(p.plan.as_ref()),
                    r.kind.as_str().to_owned(),
                    if r.parameters.is_empty() {
                        String::new()
                    } else {
                        serde_json::to_string(&r.parameters).unwrap_or_default()
                    },
                ],
            )?;
        }
    }
    Ok(())
}

fn row(out: &mut impl Write, cells: impl IntoIterator<Item = String>) -> io::Result<()> {
    let cells: Vec<String> = cells.into_iter().map(|c| csv_cell(&c)).collect();
    write!(out, "{}\r\n", cells.join(","))
}

/// One CSV cell: quoted when needed, formula-looking text defused.
fn csv_cell(value: &str) -> String {
    let defused = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    };
    let defused = crate::diag::safe::commands(&defused).into_owned();
    if defused.contains([',', '"', '\n', '\r']) { format!("\"{}\"", defused.replace('"', "\"\"")) } else { defused }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-1+2"), "'-1+2");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
    }
}
