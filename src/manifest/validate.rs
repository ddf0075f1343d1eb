//! Raw manifest → validated [`Manifest`], pushing a diagnostic for every problem found.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::Spanned;

use super::raw::{RawDevice, RawManifest};
use super::{DeviceEntry, Manifest};
use crate::core::action::{Collection, Selector, SelectorKind};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::manifest::source::pos_of;

pub(crate) const API_VERSION: &str = "intune-reconcile/v1";

/// What validation needs to know beyond the manifest itself, as plain values (the settings hand
/// them down; manifests never read the settings).
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// `graph.apiVersion: beta`: the beta-only `comanagedDevices` collection may be used.
    pub beta_api: bool,
}

/// Checks one parsed document. Returns the manifest only when it has no errors.
pub(crate) fn validate(
    raw: RawManifest,
    file: &Path,
    line_offset: u32,
    ctx: Context,
    diags: &mut Diagnostics,
) -> Option<Manifest> {
    let p = |s: &Spanned<String>| pos_of(s, line_offset);
    let before = diags.error_count();

    if raw.api_version.value != API_VERSION {
        diags.push(Diagnostic::error(
            file,
            p(&raw.api_version),
            format!("unsupported apiVersion `{}`: expected `{API_VERSION}`", raw.api_version.value),
        ));
    }
    let kind = super::action::kind(&raw, file, line_offset, ctx.beta_api, diags);
    let name = &raw.metadata.name;
    if !is_valid_name(&name.value) {
        diags.push(
            Diagnostic::error(
                file,
                p(name),
                format!("invalid metadata.name `{}`", crate::diag::safe::text(&name.value)),
            )
            .with_hint("use 1 to 63 lowercase letters, digits and `-`, e.g. `inc-4711-lost-phone`"),
        );
    }

    let mut former_names: Vec<(String, Pos)> = Vec::new();
    for old in raw.metadata.former_names.iter().flat_map(|l| &l.value) {
        let pos = pos_of(old, line_offset).unwrap_or(Pos::new(1, 1));
        if !is_valid_name(&old.value) {
            diags.push(
                Diagnostic::error(
                    file,
                    Some(pos),
                    format!("invalid formerNames entry `{}`", crate::diag::safe::text(&old.value)),
                )
                .with_hint("a former name is a metadata.name: 1 to 63 lowercase letters, digits and `-`"),
            );
        } else if old.value == name.value {
            diags.push(Diagnostic::error(file, Some(pos), "formerNames lists the manifest's own name"));
        } else if former_names.iter().any(|(n, _)| *n == old.value) {
            diags.push(Diagnostic::error(file, Some(pos), format!("formerNames lists `{}` twice", old.value)));
        } else {
            former_names.push((old.value.clone(), pos));
        }
    }

    let round = match &raw.spec.round {
        None => 1,
        Some(r) => match u32::try_from(r.value.0) {
            Ok(n) if n >= 1 => n,
            _ => {
                diags.push(
                    Diagnostic::error(
                        file,
                        pos_of(r, line_offset),
                        format!("invalid spec.round `{}`: must be a whole number from 1", r.value.0),
                    )
                    .with_hint("leave it out for 1; bump it to reset the same devices again"),
                );
                1
            }
        },
    };

    let collection = raw.spec.collection.as_ref().map_or(Collection::ManagedDevices, |c| c.value);
    if let Some(c) = &raw.spec.collection
        && c.value == Collection::ComanagedDevices
        && !ctx.beta_api
    {
        diags.push(
            Diagnostic::error(
                file,
                pos_of(c, line_offset),
                "collection `comanagedDevices` exists only in the beta API",
            )
            .with_hint("set `graph.apiVersion: beta` in reconcile.yaml, or use `managedDevices`"),
        );
    }

    let devices_pos = pos_of(&raw.spec.devices, line_offset);
    if raw.spec.devices.value.is_empty() {
        diags.push(Diagnostic::error(file, devices_pos, "spec.devices is empty: name at least one device"));
    }
    let mut devices = Vec::with_capacity(raw.spec.devices.value.len());
    let mut seen: HashMap<(SelectorKind, String), Pos> = HashMap::new();
    for entry in &raw.spec.devices.value {
        let entry_pos = pos_of(entry, line_offset).or(devices_pos).unwrap_or(Pos::new(1, 1));
        let Some((selector, pos)) = device_selector(&entry.value, file, entry_pos, line_offset, diags) else {
            continue;
        };
        match seen.get(&(selector.kind, selector.normalized())) {
            Some(first) => diags.push(Diagnostic::error(
                file,
                Some(pos),
                format!("device {selector} is listed twice in this manifest (first at line {})", first.line),
            )),
            None => {
                seen.insert((selector.kind, selector.normalized()), pos);
                devices.push(DeviceEntry { selector, pos });
            }
        }
    }

    // Free text shown to reviewers, in logs and in the PR comment: no control characters. Format
    // characters (a right-to-left reason may carry marks) are allowed, and shown escaped.
    for (key, v) in [
        ("metadata.ticket", &raw.metadata.ticket),
        ("metadata.reason", &raw.metadata.reason),
        ("metadata.requestedBy", &raw.metadata.requested_by),
    ] {
        if let Some(v) = v
            && v.value.chars().any(crate::diag::safe::breaks_lines)
        {
            diags.push(
                Diagnostic::error(
                    file,
                    pos_of(v, line_offset),
                    format!("{key} contains a control character: {}", crate::diag::safe::text(&v.value)),
                )
                .with_hint("write it on one line, without escape sequences"),
            );
        }
    }

    let (kind, parameters) = kind?;
    (diags.error_count() == before).then(|| Manifest {
        kind,
        parameters,
        name: name.value.clone(),
        name_pos: pos_of(name, line_offset).unwrap_or(Pos::new(1, 1)),
        file: file.to_path_buf(),
        ticket: spanned(raw.metadata.ticket, line_offset),
        reason: spanned(raw.metadata.reason, line_offset),
        requested_by: spanned(raw.metadata.requested_by, line_offset),
        former_names,
        round,
        collection,
        devices,
    })
}

/// Exactly one selector per entry, with a well-formed value.
fn device_selector(
    d: &RawDevice,
    file: &Path,
    entry_pos: Pos,
    line_offset: u32,
    diags: &mut Diagnostics,
) -> Option<(Selector, Pos)> {
    let given: Vec<(SelectorKind, &Spanned<String>)> = [
        (SelectorKind::Id, &d.id),
        (SelectorKind::SerialNumber, &d.serial_number),
        (SelectorKind::DeviceName, &d.device_name),
        (SelectorKind::Imei, &d.imei),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();

    let (kind, raw) = match given.as_slice() {
        [one] => *one,
        [] => {
            diags.push(
                Diagnostic::error(file, Some(entry_pos), "device entry names no device")
                    .with_hint("use exactly one of `id`, `serialNumber`, `deviceName` or `imei`"),
            );
            return None;
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(k, _)| k.as_str()).collect();
            diags.push(
                Diagnostic::error(
                    file,
                    Some(entry_pos),
                    format!("device entry has {} selectors ({}): use exactly one", many.len(), names.join(", ")),
                )
                .with_hint("split it into one entry per selector, or keep only the most precise (`id`)"),
            );
            return None;
        }
    };
    let pos = pos_of(raw, line_offset).unwrap_or(entry_pos);
    // An IMEI is often copied grouped (`35 693803 564380 9`, `35-693803-564380-9`): the digits count.
    let grouped: String;
    let value = match kind {
        SelectorKind::Imei => {
            grouped = raw.value.trim().chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            grouped.as_str()
        }
        _ => raw.value.trim(),
    };
    let problem = match kind {
        _ if value.is_empty() => Some(format!("`{}` is empty", kind.as_str())),
        SelectorKind::Id if !is_guid(value) => {
            Some(format!("invalid device id `{value}`: expected a GUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6"))
        }
        SelectorKind::Imei
            if !(value.len() >= 14 && value.len() <= 16 && value.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Some(format!("invalid imei `{value}`: expected 14 to 16 digits"))
        }
        _ if value.chars().any(char::is_control) => Some(format!("`{}` contains a control character", kind.as_str())),
        // Identity: two selectors that read alike must be alike.
        _ => value.chars().find(|&c| crate::diag::safe::dangerous(c)).map(|c| {
            format!(
                "`{}` contains the invisible character U+{:04X}: `{}`",
                kind.as_str(),
                c as u32,
                crate::diag::safe::text(value)
            )
        }),
    };
    if let Some(message) = problem {
        diags.push(Diagnostic::error(file, Some(pos), message));
        return None;
    }
    Some((Selector { kind, value: value.to_owned() }, pos))
}

/// A value and its position.
fn spanned(v: Option<Spanned<String>>, line_offset: u32) -> Option<(String, Pos)> {
    v.map(|v| {
        let pos = pos_of(&v, line_offset).unwrap_or(Pos::new(1, 1));
        (v.value, pos)
    })
}

fn is_valid_name(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// `8-4-4-4-12` hexadecimal digits, either case.
pub(crate) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids() {
        assert!(is_guid("3fa85f64-5717-4562-b3fc-2c963f66afa6"));
        assert!(is_guid("3FA85F64-5717-4562-B3FC-2C963F66AFA6"));
        for bad in [
            "",
            "3fa85f64",
            "{3fa85f64-5717-4562-b3fc-2c963f66afa6}",
            "3fa85f64-5717-4562-b3fc-2c963f66afa",
            "3fa85f64x5717-4562-b3fc-2c963f66afa6",
            "gfa85f64-5717-4562-b3fc-2c963f66afa6",
        ] {
            assert!(!is_guid(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_valid_name("inc-4711-lost-phone"));
        assert!(is_valid_name(&"a".repeat(63)));
        assert!(!is_valid_name(&"a".repeat(64)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("Inc-4711"));
        assert!(!is_valid_name("inc_4711"));
    }
}
