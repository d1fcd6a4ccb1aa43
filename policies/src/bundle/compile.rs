//! Compiling the rules: each expression once, and the variables every rule defines alike
//! (`podSpec`, `containers`) set apart to be evaluated once per object.

use cel::Env;

use super::Compiled;
use crate::evaluate::{self, Site};
use crate::{Error, Rule};

/// The variables shared by every rule that defines them, with their expressions, in order of
/// first definition (so each comes after the ones it uses). A variable qualifies when every
/// definition is identical and it only uses other shared variables.
pub(super) fn shared_variables(rules: &[Rule]) -> Vec<(String, String)> {
    let mut definitions: Vec<(String, String, bool)> = Vec::new();
    for variable in rules.iter().flat_map(|r| &r.variables) {
        match definitions.iter_mut().find(|(n, _, _)| *n == variable.name) {
            Some((_, expression, same)) => *same &= *expression == variable.expression,
            None => definitions.push((variable.name.clone(), variable.expression.clone(), true)),
        }
    }
    loop {
        let shared: Vec<String> = definitions
            .iter()
            .filter(|(_, _, same)| *same)
            .map(|(n, _, _)| n.clone())
            .collect();
        let mut changed = false;
        for (_, expression, same) in definitions.iter_mut().filter(|(_, _, same)| *same) {
            if referenced_variables(expression).any(|r| !shared.iter().any(|s| s == r)) {
                *same = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    definitions
        .into_iter()
        .filter(|(_, _, same)| *same)
        .map(|(name, expression, _)| (name, expression))
        .collect()
}

/// Names `x` an expression reads as `variables.x`.
fn referenced_variables(expression: &str) -> impl Iterator<Item = &str> {
    expression.split("variables.").skip(1).map(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

pub(super) fn compile_rule(
    env: &Env,
    rule: &Rule,
    shared: &[(String, String)],
) -> Result<Compiled, Error> {
    let body = if rule.params {
        Site::BodyWithParams
    } else {
        Site::Body
    };
    let compile = |field: String, expression: &str, site: Site| {
        evaluate::compile(env, expression, site).map_err(|message| Error::Compile {
            rule: rule.name.clone(),
            field,
            expression: expression.to_owned(),
            message,
        })
    };
    let match_conditions = rule
        .match_conditions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            compile(
                format!("matchConditions[{i}]"),
                &c.expression,
                Site::MatchCondition,
            )
        })
        .collect::<Result<_, _>>()?;
    let mut variables = Vec::new();
    let mut shared_indices = Vec::new();
    for (i, v) in rule.variables.iter().enumerate() {
        let field = format!("variables[{i}] ({})", v.name);
        let program = compile(field, &v.expression, body)?;
        match shared.iter().position(|(name, _)| *name == v.name) {
            Some(index) => shared_indices.push(index),
            None => variables.push((v.name.clone(), program)),
        }
    }
    let validations = rule
        .validations
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let check = compile(format!("validations[{i}].expression"), &v.expression, body)?;
            let message = v
                .message_expression
                .as_deref()
                .map(|m| compile(format!("validations[{i}].messageExpression"), m, body))
                .transpose()?;
            Ok((check, message))
        })
        .collect::<Result<_, Error>>()?;
    Ok(Compiled {
        match_conditions,
        variables,
        shared: shared_indices,
        validations,
    })
}
