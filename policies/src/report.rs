//! The result of a check: violations, exemptions that applied, and a summary, as text or JSON.

use std::fmt;

use serde::Serialize;

use crate::{Exemption, Severity};

/// One rule an object breaks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Violation {
    pub rule: String,
    pub severity: Severity,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub message: String,
}

/// A rule that would have been evaluated on an object but is waived by an exemption.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Exempted {
    pub rule: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub reason: String,
}

/// Everything one `Bundle::check` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The environment the rules were selected for; `None` leaves out environment-only rules.
    pub environment: Option<String>,
    /// Objects the rules were run over.
    pub objects_checked: usize,
    /// Objects left alone because they live in a namespace Kubernetes itself manages.
    pub objects_skipped: usize,
    /// Rules in the bundle that apply in this environment.
    pub rules: usize,
    pub violations: Vec<Violation>,
    pub exempted: Vec<Exempted>,
    /// Exemptions that matched no object: a typo, or one left behind after a fix.
    pub unused_exemptions: Vec<Exemption>,
}

impl Report {
    /// Violations at error severity.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Violations at warning severity.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// Whether the check fails: any violation at error severity.
    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    /// Violations of one rule.
    pub fn violations_of<'a>(&'a self, rule: &'a str) -> impl Iterator<Item = &'a Violation> {
        self.violations.iter().filter(move |v| v.rule == rule)
    }

    fn count(&self, severity: Severity) -> usize {
        self.violations
            .iter()
            .filter(|v| v.severity == severity)
            .count()
    }
}

/// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects.
pub(crate) fn object_id(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.violations {
            let object = object_id(&v.kind, &v.namespace, &v.name);
            writeln!(
                f,
                "{:<8} {}  {object}  {}  {}",
                v.severity, v.rule, v.file, v.message
            )?;
        }
        for e in &self.exempted {
            let object = object_id(&e.kind, &e.namespace, &e.name);
            writeln!(
                f,
                "exempted {}  {object}  {}  exempted: {}",
                e.rule, e.file, e.reason
            )?;
        }
        for e in &self.unused_exemptions {
            writeln!(
                f,
                "unused   {}  {}  exemption matches no object checked (reason: {})",
                e.rule,
                e.object(),
                e.reason
            )?;
        }
        let environment = self.environment.as_deref().unwrap_or("any");
        write!(
            f,
            "{} objects checked against {} rules (environment: {environment}): {} errors, {} warnings, {} exempted",
            self.objects_checked,
            self.rules,
            self.errors(),
            self.warnings(),
            self.exempted.len()
        )?;
        if self.objects_skipped > 0 {
            write!(
                f,
                ", {} skipped in Kubernetes' and Flux's own namespaces",
                self.objects_skipped
            )?;
        }
        writeln!(f)
    }
}
