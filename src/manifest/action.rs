//! `kind` and, for `kind: DeviceAction`, `spec.action` and `spec.parameters`: which of Intune's
//! remote actions a manifest asks for, checked against the kind's description
//! ([`crate::core::kinds`]) with a line and column for every problem.

use std::collections::BTreeMap;
use std::path::Path;

use serde_saphyr::Spanned;

use super::raw::{RawManifest, RawParam};
use crate::core::action::{ActionKind, ParamValue, Parameters};
use crate::core::kinds::{DeviceAction, ParamType};
use crate::diag::{Diagnostic, Diagnostics};
use crate::manifest::source::pos_of;

/// The kind of every reset manifest, from before there were others.
pub(crate) const RESET_KIND: &str = "PasscodeReset";
/// The kind of every other remote action, named in `spec.action`.
pub(crate) const DEVICE_ACTION_KIND: &str = "DeviceAction";

/// The kind of action `raw` asks for and its parameters (defaults filled in); `None` after an
/// error was pushed.
pub(crate) fn kind(
    raw: &RawManifest,
    file: &Path,
    line_offset: u32,
    beta_api: bool,
    diags: &mut Diagnostics,
) -> Option<(ActionKind, Parameters)> {
    let at = |s: &Spanned<String>| pos_of(s, line_offset);
    let spec = &raw.spec;
    match raw.kind.value.as_str() {
        RESET_KIND => {
            if spec.action.is_some() || spec.parameters.is_some() {
                let pos = spec
                    .action
                    .as_ref()
                    .and_then(at)
                    .or_else(|| spec.parameters.as_ref().and_then(|p| pos_of(p, line_offset)));
                diags.push(
                    Diagnostic::error(file, pos, "spec.action and spec.parameters belong to `kind: DeviceAction`")
                        .with_hint("a PasscodeReset manifest names only its devices; for another action use `kind: DeviceAction`"),
                );
                return None;
            }
            Some((ActionKind::PasscodeReset, Parameters::default()))
        }
        DEVICE_ACTION_KIND => {
            let Some(name) = &spec.action else {
                diags.push(
                    Diagnostic::error(file, at(&raw.kind), "`kind: DeviceAction` needs spec.action")
                        .with_hint(format!("name the action: {}", known())),
                );
                return None;
            };
            let Some(kind) = ActionKind::from_graph_name(&name.value) else {
                diags.push(
                    Diagnostic::error(
                        file,
                        at(name),
                        format!("unknown action `{}`", crate::diag::safe::text(&name.value)),
                    )
                    .with_hint(format!("spec.action is Graph's name of the action (case matters): {}", known())),
                );
                return None;
            };
            let spec_of = kind.spec();
            if spec_of.beta_only && !beta_api {
                diags.push(
                    Diagnostic::error(
                        file,
                        at(name),
                        format!("action `{}` exists only in the beta API", spec_of.graph_name),
                    )
                    .with_hint("set `graph.apiVersion: beta` in reconcile.yaml"),
                );
                return None;
            }
            let given = spec.parameters.as_ref().map(|p| &p.value);
            let parameters = parameters(spec_of, given, file, line_offset, diags)?;
            Some((kind, spec_of.with_defaults(parameters)))
        }
        other => {
            diags.push(Diagnostic::error(
                file,
                at(&raw.kind),
                format!(
                    "unsupported kind `{}`: expected `{RESET_KIND}` or `{DEVICE_ACTION_KIND}`",
                    crate::diag::safe::text(other)
                ),
            ));
            None
        }
    }
}

/// Every action `spec.action` may name.
fn known() -> String {
    crate::core::kinds::ALL.iter().map(|k| k.spec().graph_name).collect::<Vec<_>>().join(", ")
}

/// Checks `given` against the parameters `spec` takes; every problem is pushed.
fn parameters(
    spec: &DeviceAction,
    given: Option<&BTreeMap<String, Spanned<RawParam>>>,
    file: &Path,
    line_offset: u32,
    diags: &mut Diagnostics,
) -> Option<Parameters> {
    let before = diags.error_count();
    let mut out = BTreeMap::new();
    for (name, value) in given.into_iter().flatten() {
        let pos = pos_of(value, line_offset);
        let error = |message: String, hint: String| Diagnostic::error(file, pos, message).with_hint(hint);
        if let Some((_, why)) = spec.refused.iter().find(|(n, _)| n == name) {
            // The value may be the very secret: the line is not quoted back.
            let mut refused = error(format!("spec.parameters.{name} is not accepted"), (*why).to_owned());
            refused.conceal_source = true;
            diags.push(refused);
            continue;
        }
        let Some(param) = spec.param(name) else {
            let takes: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            let hint = if takes.is_empty() {
                format!("`{}` takes no parameters: remove spec.parameters", spec.graph_name)
            } else {
                format!("`{}` takes {}", spec.graph_name, takes.join(", "))
            };
            diags.push(error(format!("unknown parameter `{}`", crate::diag::safe::text(name)), hint));
            continue;
        };
        match (param.ty, &value.value) {
            (ParamType::Bool, RawParam::Bool(b)) => {
                out.insert(name.clone(), ParamValue::Bool(*b));
            }
            (ParamType::Text(max), RawParam::Text(t)) => {
                if t.chars().any(crate::diag::safe::breaks_lines) {
                    diags.push(error(
                        format!("spec.parameters.{name} contains a control character"),
                        "write it on one line, without escape sequences".into(),
                    ));
                } else if t.trim().is_empty() || t.chars().count() > max {
                    diags.push(error(
                        format!("spec.parameters.{name} must be 1 to {max} characters"),
                        format!("{}: {}", param.name, param.doc),
                    ));
                } else {
                    out.insert(name.clone(), ParamValue::Text(t.clone()));
                }
            }
            (ty, written) => {
                let wanted = match ty {
                    ParamType::Bool => "true or false (unquoted)",
                    ParamType::Text(_) => "a string",
                };
                let got = match written {
                    RawParam::Bool(_) => "a Boolean",
                    RawParam::Text(_) => "a string",
                    RawParam::Other(what) => what,
                };
                diags.push(error(format!("spec.parameters.{name} must be {wanted}, not {got}"), param.doc.to_owned()));
            }
        }
    }
    (diags.error_count() == before).then_some(Parameters(out))
}
