//! The offline enforcer: [`Bundle::check`] judges each object's request the way the API server
//! would, with the platform settings of its namespace and the exemptions given.

use cel::Value;

use super::{Bundle, CheckContext, Meta, PARAMS_CONFIG_MAP, UNCHECKED_NAMESPACES};
use crate::evaluate::{self, Failures};
use crate::report::{Exempted, Report, Violation};
use crate::request::RequestParts;
use crate::{Error, Exemption, Rule, SourcedObject, SourcedRef, UserInfo, kinds};

impl Bundle {
    /// Runs every applicable rule over every object, the way the API server would admit each
    /// one's request (a `CREATE` by the context's user unless the object says otherwise).
    ///
    /// Exempted (rule, object) pairs are not evaluated but listed in the report with their
    /// reason. Rules with `params: true` read the [`PARAMS_CONFIG_MAP`] ConfigMap of the
    /// object's namespace among `objects`; without one they are a violation, as the cluster's
    /// `parameterNotFoundAction: Deny` makes them. Fails only on invalid exemptions; broken
    /// objects and expressions that fail to evaluate are violations (the cluster's
    /// `failurePolicy: Fail` rejects them too).
    pub fn check(
        &self,
        context: &CheckContext,
        objects: &[SourcedObject],
        exemptions: &[Exemption],
    ) -> Result<Report, Error> {
        let borrowed: Vec<SourcedRef> = objects.iter().map(SourcedObject::borrowed).collect();
        self.check_borrowed(context, &borrowed, exemptions)
    }

    /// [`Bundle::check`] over objects held elsewhere (a rendered tree), without copying them.
    pub fn check_borrowed(
        &self,
        context: &CheckContext,
        objects: &[SourcedRef],
        exemptions: &[Exemption],
    ) -> Result<Report, Error> {
        let exemptions = self.compile_exemptions(exemptions)?;
        let mut used = vec![false; exemptions.len()];
        // Each exemption's condition is `!(request.namespace == '<its namespace>' && …)`: only
        // the exemptions of the request's namespace can waive a rule, so only those are
        // evaluated (a platform with an exemption per service would otherwise evaluate all of
        // them for every object a rule matches: quadratic).
        let mut exemptions_of: std::collections::HashMap<(usize, &str), Vec<usize>> =
            std::collections::HashMap::new();
        for (e, (rule_index, exemption, _)) in exemptions.iter().enumerate() {
            exemptions_of
                .entry((*rule_index, exemption.namespace.as_str()))
                .or_default()
                .push(e);
        }
        let environment = context.environment.as_deref();
        let default_user = context.user.clone().unwrap_or_else(UserInfo::checker);
        let active: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].applies_in(environment))
            .collect();
        let params = namespace_params(objects);
        let mut matching_of: std::collections::HashMap<_, Vec<usize>> =
            std::collections::HashMap::new();
        let mut report = Report {
            environment: context.environment.clone(),
            objects_checked: 0,
            objects_skipped: 0,
            rules: active.len(),
            violations: Vec::new(),
            exempted: Vec::new(),
            unused_exemptions: Vec::new(),
        };

        for sourced in objects {
            let admission = sourced.admission;
            let parts = request_parts(sourced, &default_user);
            let meta = Meta::of(sourced.subject());
            if UNCHECKED_NAMESPACES.contains(&meta.namespace) {
                report.objects_skipped += 1;
                continue;
            }
            report.objects_checked += 1;
            // The rules a request matches depend only on its resource and operation: a few
            // dozen distinct ones however many objects (matching each object against every
            // rule's kinds was 10% of `verify`'s CPU).
            let matching: &[usize] = matching_of
                .entry((
                    parts.resource_group,
                    parts.resource,
                    parts.sub_resource,
                    parts.operation,
                ))
                .or_insert_with(|| {
                    active
                        .iter()
                        .copied()
                        .filter(|&i| {
                            self.rules[i].matches_request(
                                parts.resource_group,
                                parts.resource,
                                parts.sub_resource,
                                parts.operation,
                            )
                        })
                        .collect()
                });
            if matching.is_empty() {
                continue;
            }
            let request = parts.to_json();
            let namespace_params = params.get(meta.namespace).copied();
            let mut root = evaluate::object_context(
                &self.env,
                Some(sourced.object),
                admission.old_object.as_ref(),
                Some(&request),
                namespace_params,
            );
            let mut needed = vec![false; self.shared.len()];
            for &index in matching {
                for &shared in &self.compiled[index].shared {
                    needed[shared] = true;
                }
            }
            let mut shared_failures = Failures::new();
            evaluate::bind_variables_where(&mut root, &self.shared, &needed, &mut shared_failures);
            let file = sourced.file.display().to_string();
            let violation = |rule: &Rule, message: String| Violation {
                rule: rule.name.clone(),
                severity: rule.severity,
                kind: meta.kind.to_owned(),
                namespace: meta.namespace.to_owned(),
                name: meta.name.to_owned(),
                file: file.clone(),
                message,
            };

            'rules: for &index in matching {
                let (rule, compiled) = (&self.rules[index], &self.compiled[index]);
                for (i, condition) in compiled.match_conditions.iter().enumerate() {
                    match evaluate::eval_bool(condition, &root) {
                        Ok(true) => {}
                        Ok(false) => continue 'rules,
                        Err(e) => {
                            let name = &rule.match_conditions[i].name;
                            report.violations.push(violation(
                                rule,
                                format!("match condition {name} failed to evaluate: {e}"),
                            ));
                            continue 'rules;
                        }
                    }
                }
                let candidates = exemptions_of
                    .get(&(index, meta.namespace))
                    .map_or(&[][..], Vec::as_slice);
                for &e in candidates {
                    let (_, exemption, condition) = &exemptions[e];
                    // A condition that errors is not an exemption: the rule then runs and
                    // reports whatever is wrong with the object.
                    if evaluate::eval_bool(condition, &root) == Ok(false) {
                        used[e] = true;
                        report.exempted.push(Exempted {
                            rule: rule.name.clone(),
                            kind: meta.kind.to_owned(),
                            namespace: meta.namespace.to_owned(),
                            name: meta.name.to_owned(),
                            file: file.clone(),
                            reason: exemption.reason.clone(),
                        });
                        continue 'rules;
                    }
                }
                if rule.params && namespace_params.is_none() {
                    report.violations.push(violation(
                        rule,
                        format!(
                            "namespace `{}` has no ConfigMap {PARAMS_CONFIG_MAP} with the platform's settings, so the cluster denies it (parameterNotFoundAction: Deny); the platform writes one per service namespace",
                            meta.namespace
                        ),
                    ));
                    continue;
                }
                let mut failures = shared_failures.clone();
                let scope = evaluate::with_variables(&root, &compiled.variables, &mut failures);
                for (i, (check, message_expression)) in compiled.validations.iter().enumerate() {
                    let validation = &rule.validations[i];
                    let message = match evaluate::eval_bool(check, &scope) {
                        Ok(true) => continue,
                        Ok(false) => message_expression
                            .as_ref()
                            .and_then(|m| match m.execute(&scope) {
                                Ok(Value::String(s)) => Some(s.to_string()),
                                _ => None,
                            })
                            .unwrap_or_else(|| validation.message.clone()),
                        Err(e) => format!(
                            "expression failed to evaluate ({}): {}",
                            evaluate::explain_failure(&validation.expression, &e, &failures),
                            validation.message
                        ),
                    };
                    report.violations.push(violation(rule, message));
                }
            }
        }

        report.unused_exemptions = exemptions
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|((_, exemption, _), _)| (*exemption).clone())
            .collect();
        Ok(report)
    }
}

/// The request the API server would build for `sourced`, sent by its own user or `default_user`.
pub(crate) fn request_parts<'a>(
    sourced: &SourcedRef<'a>,
    default_user: &'a UserInfo,
) -> RequestParts<'a> {
    let admission = sourced.admission;
    let meta = Meta::of(sourced.subject());
    let (resource_group, resource) = match &admission.resource {
        Some((group, resource)) => (group.as_str(), resource.as_str()),
        None => (
            meta.group,
            kinds::lookup(meta.group, meta.kind).map_or("", |k| k.resource),
        ),
    };
    RequestParts {
        object: meta,
        resource_group,
        resource,
        sub_resource: admission.sub_resource.as_deref().unwrap_or(""),
        operation: admission.operation,
        user: admission.user.as_ref().unwrap_or(default_user),
    }
}

/// The platform's settings of each namespace: the [`PARAMS_CONFIG_MAP`] ConfigMap among the
/// objects (the last one wins, as the last apply would).
pub(crate) fn namespace_params<'a>(
    objects: &[SourcedRef<'a>],
) -> std::collections::HashMap<&'a str, &'a serde_json::Value> {
    objects
        .iter()
        .map(|o| o.object)
        .filter(|o| {
            o["apiVersion"] == "v1"
                && o["kind"] == "ConfigMap"
                && o["metadata"]["name"] == PARAMS_CONFIG_MAP
        })
        .filter_map(|o| Some((o["metadata"]["namespace"].as_str()?, o)))
        .collect()
}
