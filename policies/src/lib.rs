//! The policy bundle: one set of CEL rules, evaluated offline over manifests and emitted as
//! ValidatingAdmissionPolicies so the cluster rejects what `cargo xtask verify` rejects.

mod admission;
mod bundle;
mod evaluate;
mod exemption;
mod kinds;
mod load;
mod report;
mod request;
mod rules;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use admission::AdmissionLabels;
pub use bundle::{Bundle, CheckContext, PARAMS_CONFIG_MAP, UNCHECKED_NAMESPACES};
pub use exemption::{Exemption, load_exemptions};
pub use load::{Kustomize, SourcedObject, SourcedRef, load_manifests};
pub use report::{Exempted, Report, Violation};
pub use request::{Admission, Operation, UserInfo};
pub use rules::{Equivalents, MatchGroup, NamedExpression, NamedMatch, Rule, Severity, Validation};

use std::path::PathBuf;

/// Everything that can go wrong loading rules, exemptions or manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded or given rules file is not valid YAML of the expected shape.
    #[error("rules file is not valid: fix policies/rules.yaml")]
    RulesYaml(#[source] serde_yaml_ng::Error),
    /// A rule is well-formed YAML but breaks a bundle invariant (unknown kind, bad name, …).
    #[error("rule `{rule}` is invalid: {reason}")]
    InvalidRule { rule: String, reason: String },
    /// A CEL expression of a rule does not compile in the offline evaluator.
    #[error("rule `{rule}`: {field} does not compile: {message} (expression: {expression})")]
    Compile {
        rule: String,
        field: String,
        expression: String,
        message: String,
    },
    /// An exemption names an unknown rule or kind, has no reason, or a name CEL cannot quote.
    #[error("exemption for rule `{rule}` on {object} is invalid: {reason}")]
    InvalidExemption {
        rule: String,
        object: String,
        reason: String,
    },
    /// A manifest file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A YAML document of a manifest does not parse.
    #[error("{}: document {document} is not valid YAML", path.display())]
    Yaml {
        path: PathBuf,
        document: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A YAML document parses but is not a Kubernetes object.
    #[error("{}: document {document} {reason}", path.display())]
    NotAnObject {
        path: PathBuf,
        document: usize,
        reason: String,
    },
    /// A directory with a kustomization file did not build.
    #[error("cannot build the kustomize directory {}: {message}", dir.display())]
    Kustomize { dir: PathBuf, message: String },
}
