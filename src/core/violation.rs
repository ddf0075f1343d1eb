//! A policy violation: which rule, what it stops, and the diagnostic a person reads; and what a
//! change does to the policy ([`PolicyChange`]). A leaf module, so that the plan (which carries
//! them) and the policy (which finds them) do not depend on each other for it.

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;

/// A policy rule, by its stable code: the rule's key in `reconcile.yaml`'s `policy:` section
/// (cargo-deny names its checks the same way). Shown in text (`policy cooldown: …`), JSON
/// (`violations[].rule`), annotations and Markdown; consumers may branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Rule {
    #[serde(rename = "maxActionsPerApply")]
    MaxActionsPerApply,
    #[serde(rename = "requireTicket")]
    RequireTicket,
    #[serde(rename = "ticketPattern")]
    TicketPattern,
    #[serde(rename = "requireReason")]
    RequireReason,
    #[serde(rename = "requireRequestedBy")]
    RequireRequestedBy,
    #[serde(rename = "allowPlatforms")]
    AllowPlatforms,
    #[serde(rename = "protectedDevices")]
    ProtectedDevices,
    #[serde(rename = "cooldown")]
    Cooldown,
    #[serde(rename = "changeWindows")]
    ChangeWindows,
}

impl Rule {
    pub(crate) const ALL: [Rule; 9] = [
        Rule::MaxActionsPerApply,
        Rule::RequireTicket,
        Rule::TicketPattern,
        Rule::RequireReason,
        Rule::RequireRequestedBy,
        Rule::AllowPlatforms,
        Rule::ProtectedDevices,
        Rule::Cooldown,
        Rule::ChangeWindows,
    ];

    /// The rule with this code (the key under `policy:`).
    pub(crate) fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The code: the rule's key under `policy:`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Rule::MaxActionsPerApply => "maxActionsPerApply",
            Rule::RequireTicket => "requireTicket",
            Rule::TicketPattern => "ticketPattern",
            Rule::RequireReason => "requireReason",
            Rule::RequireRequestedBy => "requireRequestedBy",
            Rule::AllowPlatforms => "allowPlatforms",
            Rule::ProtectedDevices => "protectedDevices",
            Rule::Cooldown => "cooldown",
            Rule::ChangeWindows => "changeWindows",
        }
    }
}

/// A policy violation, and what it stops: its manifest, or (`manifest: None`) the whole run.
/// Its code is `rule`, and its diagnostic carries the same code (the constructors see to it):
/// nothing reads a rule back out of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub manifest: Option<String>,
    pub rule: Rule,
    pub diagnostic: Diagnostic,
}

impl Violation {
    /// A violation stopping `manifest` (`None`: the whole run).
    pub(crate) fn new(manifest: Option<String>, rule: Rule, diagnostic: Diagnostic) -> Self {
        Violation { manifest, rule, diagnostic: diagnostic.with_code(rule.code()) }
    }

    /// A rule broken by one manifest: its resets are blocked, the others go on.
    pub(crate) fn of_manifest(manifest: &str, (rule, diagnostic): (Rule, Diagnostic)) -> Self {
        Violation::new(Some(manifest.to_owned()), rule, diagnostic)
    }

    /// A rule of the repository (blast radius, change windows): the run stops.
    pub(crate) fn of_repository((rule, diagnostic): (Rule, Diagnostic)) -> Self {
        Violation::new(None, rule, diagnostic)
    }
}

/// The diagnostic of a broken rule: `policy <code>: <message>`, with what to do, and the rule's
/// code in its `code` field.
pub(crate) fn found(
    file: &std::path::Path,
    pos: Option<crate::diag::Pos>,
    rule: Rule,
    message: String,
    hint: &str,
) -> (Rule, Diagnostic) {
    let text = format!("policy {}: {message}", rule.code());
    (rule, Diagnostic::error(file, pos, text).with_hint(hint).with_code(rule.code()))
}

/// What a change does to the repository's policy, and where each rule in effect comes from.
/// Plans carry it and show it first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyChange {
    /// The revision the change was judged against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// "protected device serialNumber R58 removed", "maxActionsPerApply 5 → 500".
    #[serde(default)]
    pub loosens: Vec<String>,
    #[serde(default)]
    pub tightens: Vec<String>,
    /// Each rule in effect with its source, when an operator's floor is in force:
    /// "maxActionsPerApply 5 (/etc/reconcile/policy.yaml:2 (the operator's))".
    #[serde(default)]
    pub rules: Vec<String>,
    /// A digest of the effective policy: a saved plan records what it was judged under.
    pub digest: String,
}

impl PolicyChange {
    /// Whether there is anything to show.
    pub(crate) fn is_worth_showing(&self) -> bool {
        !self.loosens.is_empty() || !self.tightens.is_empty() || !self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{Rule, Violation, found};
    use crate::diag::Diagnostic;

    /// The code travels in the field, not the text: a diagnostic whose message names a rule has
    /// no code unless it was given one, and a violation's diagnostic takes the violation's rule
    /// even when its text says otherwise.
    #[test]
    fn a_code_is_never_taken_from_the_text() {
        let worded = Diagnostic::error("m.yaml", None, "policy cooldown: too soon");
        assert_eq!(worded.code, None);
        let v = Violation::of_manifest("m", (Rule::RequireTicket, worded));
        assert_eq!((v.rule, v.diagnostic.code), (Rule::RequireTicket, Some("requireTicket")));
        for rule in Rule::ALL {
            let (r, d) = found(std::path::Path::new("m.yaml"), None, rule, "x".into(), "fix it");
            assert_eq!((r, d.code), (rule, Some(rule.code())));
            assert_eq!(Rule::from_code(rule.code()), Some(rule));
        }
    }

    /// The README's policy table lists every code, in its code column, so that scripts
    /// branching on `violations[].rule` have one place to read them.
    #[test]
    fn every_rule_code_is_in_the_readme_policy_table() {
        let readme = include_str!("../../README.md");
        let codes: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| setting | rule code"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| row.split(" | ").nth(1))
            .collect();
        assert!(!codes.is_empty(), "the README has its policy table");
        for rule in Rule::ALL {
            let shown = format!("`{}`", rule.code());
            assert!(codes.iter().any(|c| c.split(", ").any(|c| c == shown)), "{shown} is not in the README's table");
            assert_eq!(crate::core::saved::legacy_rule(&format!("policy {}: too soon", rule.code())), Some(rule));
        }
    }
}
