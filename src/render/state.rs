//! `reconcile state list` and `state show` as text or JSON.

use std::io::{self, Write};

use serde::Serialize;

use super::json::FORMAT_VERSION;
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
    writeln!(out, "key:         {}", r.key)?;
    writeln!(out, "kind:        {}", r.kind.as_str())?;
    writeln!(out, "manifest:    {} ({})", r.manifest, r.file)?;
    writeln!(out, "round:       {}", r.round)?;
    writeln!(out, "collection:  {}", r.collection.as_str())?;
    writeln!(out, "selector:    {}", r.selector)?;
    writeln!(out, "device id:   {}", r.managed_device_id.as_deref().unwrap_or("(not resolved)"))?;
    writeln!(out, "status:      {}", r.status)?;
    writeln!(out, "created:     {}", r.created_at)?;
    writeln!(out, "updated:     {}", r.updated_at)?;
    writeln!(out, "attempts:    {}", r.attempts.len())?;
    for (i, a) in r.attempts.iter().enumerate() {
        writeln!(out, "  #{} started {}  client-request-id {}", i + 1, a.started_at, a.client_request_id)?;
        let status = a.http_status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
        let finished = a.finished_at.map(|f| format!(" at {f}")).unwrap_or_default();
        writeln!(out, "     {status}{finished}")?;
        if let Some(id) = &a.request_id {
            writeln!(out, "     request-id {id}")?;
        }
        if a.error_code.is_some() || a.error_message.is_some() {
            writeln!(
                out,
                "     error {}: {}",
                a.error_code.as_deref().unwrap_or("-"),
                a.error_message.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}

pub fn show_json(out: &mut impl Write, r: &Record) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &ShowDto { format_version: FORMAT_VERSION, action: r })?;
    writeln!(out)
}
