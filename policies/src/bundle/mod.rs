//! The compiled rule set and the offline enforcer: every expression compiled once ([`compile`]),
//! then run over any number of objects ([`check`]).

use std::sync::Arc;

use cel::{Env, Program};

mod check;
mod compile;
#[cfg(test)]
mod tests;

use crate::evaluate::{self, Site};
use crate::rules::NamedMatch;
use crate::{Error, Exemption, Rule, UserInfo, kinds, rules};

#[cfg(test)]
pub(crate) use check::{namespace_params, request_parts};

/// The rules shipped with the platform.
const BUILTIN_RULES: &str = include_str!("../../rules.yaml");

/// Namespaces Kubernetes and Flux run their own components in. Neither enforcer checks them:
/// the admission bindings exclude them (denying kube-proxy or a Flux controller an update would
/// break the cluster: Flux's controllers need API tokens), and the offline check mirrors that so
/// the two always agree. Only the platform's bootstrap writes to them; no tenant has rights there.
pub const UNCHECKED_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "flux-system",
];

/// The ConfigMap that holds, in each namespace, the platform's settings that rules with
/// `params: true` read as `params.data` (the image repository, the digests allowed, …). In the
/// cluster it is each binding's per-namespace `paramRef`; offline, the one among the checked
/// objects. Only the platform writes it (rule `tenant-limits-protected`).
pub const PARAMS_CONFIG_MAP: &str = "platform-policy";

/// What a check is run for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckContext {
    /// The environment the objects are for (`production`, `staging`, …); rules limited to other
    /// environments are left out, and `None` leaves out every environment-limited rule.
    pub environment: Option<String>,
    /// Who sends the requests of objects that do not say (`SourcedObject::admission.user`);
    /// `None`: [`UserInfo::checker`], a user with no standing.
    pub user: Option<UserInfo>,
}

/// A rule with its expressions compiled.
struct Compiled {
    match_conditions: Vec<Program>,
    /// The rule's own variables; the shared ones are evaluated once per object.
    variables: Vec<(String, Program)>,
    /// Indices into `Bundle::shared` of the shared variables the rule defines.
    shared: Vec<usize>,
    validations: Vec<(Program, Option<Program>)>,
}

/// The policy bundle: rules parsed and compiled, ready to check objects or become admission
/// policies.
pub struct Bundle {
    env: Arc<Env>,
    rules: Vec<Rule>,
    compiled: Vec<Compiled>,
    /// Variables that every rule defining them defines identically (`podSpec`, `containers`):
    /// evaluated once per object instead of once per rule, which is most of the work.
    shared: Vec<(String, Program)>,
    /// The rules file's named match lists, for documentation.
    named_matches: Vec<NamedMatch>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("rules", &self.rules)
            .finish()
    }
}

/// The identity of one object, read once.
pub(crate) struct Meta<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Meta<'a> {
    pub(crate) fn of(object: &'a serde_json::Value) -> Self {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or("")
        };
        let (group, version) = kinds::split_api_version(text("/apiVersion"));
        Meta {
            group,
            version,
            kind: text("/kind"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
        }
    }
}

impl Bundle {
    /// The platform's rules (`policies/rules.yaml`, embedded at build time), compiled once per
    /// process: spec validation, rendering and checking all share the same compiled bundle.
    pub fn builtin() -> Result<&'static Bundle, Error> {
        static BUILTIN: std::sync::OnceLock<Bundle> = std::sync::OnceLock::new();
        if let Some(bundle) = BUILTIN.get() {
            return Ok(bundle);
        }
        // Two threads may compile it at once; one result is kept, both are the same rules.
        let bundle = Bundle::from_yaml(BUILTIN_RULES)?;
        Ok(BUILTIN.get_or_init(|| bundle))
    }

    /// Rules from YAML text in the format of `policies/rules.yaml`, compiled.
    pub fn from_yaml(text: &str) -> Result<Bundle, Error> {
        let (rules, named_matches) = rules::parse(text)?;
        let env = evaluate::environment();
        let shared_names = compile::shared_variables(&rules);
        let compiled = rules
            .iter()
            .map(|rule| compile::compile_rule(&env, rule, &shared_names))
            .collect::<Result<_, _>>()?;
        let shared = shared_names
            .iter()
            .map(|(name, expression)| {
                // Each was already compiled, with its rules' own restrictions, in compile_rule.
                let program = evaluate::compile(&env, expression, Site::BodyWithParams)
                    .expect("shared variables were compiled with their rules");
                (name.clone(), program)
            })
            .collect();
        Ok(Bundle {
            env,
            rules,
            compiled,
            shared,
            named_matches,
        })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The match lists the rules file names in its `shared` section (`podControllers`, …), in
    /// file order, so documentation can name a rule's match list instead of spelling it out.
    pub fn named_matches(&self) -> &[NamedMatch] {
        &self.named_matches
    }

    /// One rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Checks exemptions against the bundle and compiles their conditions, in rule order.
    pub(crate) fn compile_exemptions<'e>(
        &self,
        exemptions: &'e [Exemption],
    ) -> Result<Vec<(usize, &'e Exemption, Program)>, Error> {
        let mut compiled = Vec::with_capacity(exemptions.len());
        for exemption in exemptions {
            exemption.validate()?;
            let Some(index) = self.rules.iter().position(|r| r.name == exemption.rule) else {
                return Err(Error::InvalidExemption {
                    rule: exemption.rule.clone(),
                    object: exemption.object(),
                    reason: "no rule has that name; see `cargo xtask policy check --help`".into(),
                });
            };
            let rule = &self.rules[index];
            if !rule
                .matches
                .iter()
                .any(|m| m.kinds.contains(&exemption.kind))
            {
                return Err(Error::InvalidExemption {
                    rule: exemption.rule.clone(),
                    object: exemption.object(),
                    reason: format!("rule {} never applies to a {}", rule.name, exemption.kind),
                });
            }
            let program =
                evaluate::compile(&self.env, &exemption.condition(), Site::MatchCondition)
                    .map_err(|message| Error::Compile {
                        rule: exemption.rule.clone(),
                        field: format!("exemption for {}", exemption.object()),
                        expression: exemption.condition(),
                        message,
                    })?;
            compiled.push((index, exemption, program));
        }
        Ok(compiled)
    }
}
