//! `reconcile state list` and `state show` as text or JSON.

use std::io::{self, Write};

use serde::Serialize;

use super::json::FORMAT_VERSION;
use super::safe::text;
use crate::state::{Ledger, Record};

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

pub fn list_text(out: &mut impl Write, ledger: &Ledger) -> io::Result<()> {
    if ledger.records.is_empty() {
        return writeln!(out, "The ledger holds no actions.");
    }
    writeln!(out, "{:<12}  {:<13}  {:<32}  {:<6}  SELECTOR", "KEY", "STATUS", "MANIFEST", "ROUND")?;
    for r in ledger.records.values() {
        writeln!(
            out,
            "{:<12}  {:<13}  {:<32}  {:<6}  {}",
            r.key.short(),
            r.status.as_str(),
            r.manifest,
            r.round,
            r.selector
        )?;
    }
    writeln!(out, "\n{} actions; ledger serial {}.", ledger.records.len(), ledger.serial)
}

pub fn list_json(out: &mut impl Write, ledger: &Ledger) -> io::Result<()> {
    let dto = ListDto {
        format_version: FORMAT_VERSION,
        lineage: ledger.lineage.map(|l| l.to_string()),
        serial: ledger.serial,
        tenant: ledger.tenant.as_deref(),
        actions: ledger.records.values().collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &dto)?;
    writeln!(out)
}

pub fn show_text(out: &mut impl Write, r: &Record) -> io::Result<()> {
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
    line(format!("status:      {}", r.status))?;
    line(format!("created:     {}", r.created_at))?;
    line(format!("updated:     {}", r.updated_at))?;
    line(format!("attempts:    {}", r.attempts.len()))?;
    for (i, a) in r.attempts.iter().enumerate() {
        line(format!("  #{} started {}  client-request-id {}", i + 1, a.started_at, a.client_request_id))?;
        if let Some(t) = a.server_sent_at {
            line(format!("     reached Intune at or after {t} (Intune's clock)"))?;
        }
        let status = a.http_status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
        let finished = a.finished_at.map(|f| format!(" at {f}")).unwrap_or_default();
        let date = a.server_date.map(|d| format!(" (Intune's Date {d})")).unwrap_or_default();
        line(format!("     {status}{finished}{date}"))?;
        if let Some(id) = &a.request_id {
            line(format!("     request-id {id}"))?;
        }
        if a.error_code.is_some() || a.error_message.is_some() {
            line(format!(
                "     error {}: {}",
                a.error_code.as_deref().unwrap_or("-"),
                a.error_message.as_deref().unwrap_or("")
            ))?;
        }
        if let Some(p) = &a.policy_override {
            line(format!("     policy override: {p}"))?;
        }
        if let Some(res) = &a.resolution {
            line(format!("     decided {} by {} at {}: {}", res.status, res.by, res.at, res.note))?;
        }
    }
    Ok(())
}

pub fn show_json(out: &mut impl Write, r: &Record) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &ShowDto { format_version: FORMAT_VERSION, action: r })?;
    writeln!(out)
}
