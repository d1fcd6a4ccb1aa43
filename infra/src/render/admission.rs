//! Where the policy bundle lands: each rule's ValidatingAdmissionPolicy + Binding in its own file
//! of the infrastructure layer, applied before any tenant, so the cluster rejects what verify does.

use super::layout::policies_dir;
use crate::Error;
use crate::meta;
use crate::spec::Spec;
use crate::tree::{Object, Tree};

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
    for (mut policy, mut binding) in bundle
        .admission_objects(env, exemptions)
        .map_err(Error::Policy)?
    {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let labels = meta::labels(&platform.name, &name, &platform.owner);
        policy.metadata.labels = Some(labels.clone());
        binding.metadata.labels = Some(labels);
        let file = format!("{dir}/{}.yaml", name.trim_start_matches("platform-"));
        tree.add_objects(
            env,
            &file,
            vec![Object::new(&policy)?, Object::new(&binding)?],
        )?;
    }
    Ok(())
}
