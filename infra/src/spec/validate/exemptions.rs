//! Validation of a service's `[[policy_exemptions]]`: a known rule, once, with a written reason
//! and well-formed scanner check IDs.

use std::collections::BTreeSet;

use super::not_dns;
use crate::spec::problems::{Seg, Sink};
use crate::spec::syntax::{is_dns_label, is_scanner_check};
use crate::spec::types::Service;

pub(super) fn check(sink: &mut Sink<'_>, s: &Service) {
    use Seg::{Index, Key};
    let mut rules = BTreeSet::new();
    for (i, exemption) in s.policy_exemptions.iter().enumerate() {
        if !is_dns_label(&exemption.rule) {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("rule")],
                not_dns("rule name", &exemption.rule),
            );
        }
        if is_dns_label(&exemption.rule) && is_known_rule(&exemption.rule) == Some(false) {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("rule")],
                format!(
                    "`{}` is not a rule of the policy bundle (see policies/rules.yaml)",
                    exemption.rule
                ),
            );
        }
        if !rules.insert(exemption.rule.as_str()) {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("rule")],
                format!("rule `{}` is exempted twice", exemption.rule),
            );
        }
        for (j, check) in exemption.scanner_checks.iter().enumerate() {
            if !is_scanner_check(check) {
                sink.push(
                    &[
                        Key("policy_exemptions"),
                        Index(i),
                        Key("scanner_checks"),
                        Index(j),
                    ],
                    format!("`{check}` is not a checkov check ID such as `CKV_K8S_23`"),
                );
            }
        }
        if exemption.reason.trim().is_empty() {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("reason")],
                "an exemption needs a written reason".into(),
            );
        }
    }
}

/// Whether the policy bundle has a rule of this name; `None` when the bundle itself is broken:
/// rendering then reports that error with its cause.
fn is_known_rule(name: &str) -> Option<bool> {
    let bundle = policies::Bundle::builtin().ok()?;
    Some(bundle.rule(name).is_some())
}

#[cfg(test)]
mod tests {
    use crate::testing::{Case, SpecFiles, assert_cases, assert_has};

    #[test]
    fn an_exemption_without_a_reason_is_rejected() {
        let found = SpecFiles::minimal()
            .edit(
                "web",
                "reason = \"the vendor image writes",
                "reason = \"\"\n#",
            )
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:39:10: policy_exemptions[1].reason: an exemption needs a written reason",
        );
    }

    const CASES: &[Case] = &[
        (
            "an exemption rule that is not a name",
            "web",
            "rule = \"run-as-non-root\"",
            "rule = \"Run As Root\"",
            "policy_exemptions[0].rule: rule name `Run As Root` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters)",
        ),
        (
            "an exemption of a rule the bundle does not have",
            "web",
            "rule = \"run-as-non-root\"",
            "rule = \"run-as-root\"",
            "policy_exemptions[0].rule: `run-as-root` is not a rule of the policy bundle (see policies/rules.yaml)",
        ),
        (
            "an exemption listed twice",
            "web",
            "rule = \"read-only-root-filesystem\"",
            "rule = \"run-as-non-root\"",
            "policy_exemptions[1].rule: rule `run-as-non-root` is exempted twice",
        ),
        (
            "a scanner check that is not a check ID",
            "web",
            "scanner_checks = [\"CKV_K8S_22\"]",
            "scanner_checks = [\"K8S_22\"]",
            "policy_exemptions[1].scanner_checks[0]: `K8S_22` is not a checkov check ID such as `CKV_K8S_23`",
        ),
    ];

    #[test]
    fn each_error_class_names_its_field_and_says_what_is_wrong() {
        assert_cases(CASES);
    }
}
