//! Where the policy bundle lands: each rule's ValidatingAdmissionPolicy + Binding in its own file
//! of the infrastructure layer, applied before any tenant, so the cluster rejects what verify does.

use super::layout::policies_dir;
use crate::Error;
use crate::meta;
use crate::spec::Spec;
use crate::tree::{Object, Tree};

/// The `app.kubernetes.io/name` of the admission policies: the platform component they make up.
pub const ADMISSION_POLICIES: &str = "admission-policies";

/// The policy bundle for `env` as ValidatingAdmissionPolicies + Bindings, one file per rule, with
/// the spec's exemptions in their match conditions.
pub(super) fn render(
    spec: &Spec,
    env: &str,
    bundle: &policies::Bundle,
    exemptions: &[policies::Exemption],
    tree: &mut Tree,
) -> Result<(), Error> {
    let platform = &spec.platform;
    let dir = policies_dir(env);
    // The platform's labels on every policy, plus the rule's name and severity, so the cluster
    // can select them (`kubectl get validatingadmissionpolicies -l billing-platform/severity=error`).
    let labels = policies::AdmissionLabels {
        common: meta::labels(&platform.name, ADMISSION_POLICIES, &platform.owner),
        rule_key: meta::RULE.to_owned(),
        severity_key: meta::SEVERITY.to_owned(),
        description_key: meta::DESCRIPTION.to_owned(),
    };
    let rules = bundle.rules().iter().filter(|r| r.applies_in(Some(env)));
    let objects = bundle
        .admission_objects(env, exemptions, &labels)
        .map_err(Error::Policy)?;
    for (rule, (policy, binding)) in rules.zip(objects) {
        let file = format!("{dir}/{}.yaml", rule.name);
        tree.add_objects(
            env,
            &file,
            vec![Object::new(&policy)?, Object::new(&binding)?],
        )?;
    }
    Ok(())
}
