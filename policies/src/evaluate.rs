//! The offline CEL evaluator: the environment both enforcers share, compilation with the checks
//! that keep expressions valid for Kubernetes, and evaluation with VAP's variables.

use std::sync::Arc;

use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::{CowVal, Val};
#[cfg(test)]
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};

/// Variables a ValidatingAdmissionPolicy offers that the offline evaluator cannot provide: an
/// expression using them would behave differently in the two enforcers, so none may.
const UNSUPPORTED_VARIABLES: &[&str] = &["namespaceObject", "authorizer"];

/// Named functions that both Kubernetes' CEL environment (standard library plus the strings
/// extension) and the offline evaluator provide. Anything else is refused at compile time, so an
/// expression cannot pass offline and fail to compile in the API server, or the reverse.
const PORTABLE_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "join",
    "lowerAscii",
    "upperAscii",
    "split",
    "trim",
    "replace",
    "indexOf",
    "lastIndexOf",
    "substring",
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "dyn",
    "type",
];

/// The shared CEL environment: the standard library with the Kubernetes strings extension,
/// and `matches` (the cel crate's is built without its `regex` feature, see [`matches`]).
pub(crate) fn environment() -> Arc<Env> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension declares no overload the standard library has");
    cel::add_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>, id = "matches")
        .expect("the standard library has no matches without its regex feature");
    cel::add_member_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>,
        id = "string.matches(string)")
    .expect("the standard library has no matches without its regex feature");
    Arc::new(env)
}

/// How many compiled patterns a thread keeps: the rules' own few, with room for exemptions'
/// and patterns computed from objects; past it the cache starts over (memory stays bounded).
const PATTERNS_KEPT: usize = 64;

/// `s.matches(re)` / `matches(s, re)`: the cel crate's own definition (the same `regex` crate,
/// the same error), with each pattern compiled once per thread instead of once per call, which
/// was a sixth of `verify`'s policy time (the rules match every container's image).
fn matches(this: &CelString<'_>, re: &CelString<'_>) -> Result<CelBool, cel::ExecutionError> {
    thread_local! {
        static COMPILED: std::cell::RefCell<HashMap<std::string::String, regex::Regex>> =
            std::cell::RefCell::new(HashMap::new());
    }
    let pattern = re.inner();
    COMPILED.with_borrow_mut(|compiled| {
        if !compiled.contains_key(pattern) {
            let regex =
                regex::Regex::new(pattern).map_err(|err| cel::ExecutionError::FunctionError {
                    function: "matches".to_owned(),
                    message: format!("'{pattern}' not a valid regex:\n{err}"),
                })?;
            if compiled.len() >= PATTERNS_KEPT {
                compiled.clear();
            }
            compiled.insert(pattern.to_owned(), regex);
        }
        Ok(CelBool::from(compiled[pattern].is_match(this.inner())))
    })
}

/// Where an expression sits, for compile checks that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// A match condition: evaluated before variables exist.
    MatchCondition,
    /// A variable, validation or message expression.
    Body,
    /// A variable, validation or message expression of a rule that declares `params: true`.
    BodyWithParams,
}

/// Compiles one expression and checks that it only uses what both enforcers support.
pub(crate) fn compile(env: &Env, expression: &str, site: Site) -> Result<Program, String> {
    let program = env.compile(expression).map_err(|e| e.to_string())?;
    let references = program.references();
    for variable in UNSUPPORTED_VARIABLES {
        if references.has_variable(variable) {
            return Err(format!(
                "`{variable}` is not available offline; express the rule without it"
            ));
        }
    }
    if references.has_variable("params") && site != Site::BodyWithParams {
        return Err(if site == Site::MatchCondition {
            "match conditions cannot use `params` (the API server evaluates them without)".into()
        } else {
            "`params` is only bound for rules that declare `params: true`".into()
        });
    }
    if site == Site::MatchCondition && references.has_variable("variables") {
        return Err("match conditions cannot use `variables` (they run before them)".into());
    }
    let mut functions = references.functions();
    functions.sort_unstable();
    for function in functions {
        let operator = function.starts_with('_')
            || function.starts_with('@')
            || function.starts_with("!_")
            || function.starts_with("-_");
        if !operator && !PORTABLE_FUNCTIONS.contains(&function) {
            return Err(format!(
                "function `{function}` is not in both Kubernetes CEL and the offline evaluator"
            ));
        }
    }
    Ok(program)
}

/// Converts a JSON value (a manifest) into a CEL value; integers stay integers, as the API
/// server's schema-typed values do.
#[cfg(test)]
pub(crate) fn to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(to_cel).collect()))
        }
        serde_json::Value::Object(fields) => Value::Map(Map {
            map: Arc::new(
                fields
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

/// A JSON value (a manifest) as the CEL value the evaluator works on, borrowing its strings:
/// the same value [`to_cel`] gives (integers stay integers, as the API server's schema-typed
/// values do), built in one pass instead of a [`Value`] copied again into the evaluator's own
/// representation when it is bound.
pub(crate) fn to_val(value: &serde_json::Value) -> Box<dyn Val + '_> {
    match value {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(s) => Box::new(CelString::from(s.as_str())),
        serde_json::Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(to_val).collect::<Vec<_>>()))
        }
        serde_json::Value::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// The variables every expression of one request sees: `object`, `oldObject`, `request`, and
/// `params` (null unless the object's namespace has the platform's settings), each borrowed
/// from the JSON it is read from.
pub(crate) fn object_context<'v>(
    env: &Arc<Env>,
    object: Option<&'v serde_json::Value>,
    old_object: Option<&'v serde_json::Value>,
    request: Option<&'v serde_json::Value>,
    params: Option<&'v serde_json::Value>,
) -> Context<'v, 'v> {
    let mut context = Context::with_env(Arc::clone(env));
    let bind = |value: Option<&'v serde_json::Value>| -> Box<dyn Val + 'v> {
        value.map_or_else(|| Box::new(CelNull), to_val)
    };
    context.add_variable_as_val("object", bind(object));
    context.add_variable_as_val("oldObject", bind(old_object));
    context.add_variable_as_val("request", bind(request));
    context.add_variable_as_val("params", bind(params));
    context
}

/// Evaluates a boolean expression; anything but `true`/`false` is an error, as in the API server.
pub(crate) fn eval_bool(program: &Program, context: &Context) -> Result<bool, String> {
    match program.execute(context) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("expected a bool, got {:?}", other.type_of())),
        Err(e) => Err(e.to_string()),
    }
}

/// Variables that failed to evaluate, with the cause: an expression that uses one then fails
/// with "undeclared reference", and the report names this cause instead.
pub(crate) type Failures = Vec<(String, String)>;

/// Evaluates variables in order into `scope`, each seeing the ones before it. Each is bound
/// under its qualified name `variables.<name>`, which CEL resolves before selecting on a
/// `variables` map: no map of all variables is rebuilt (and deep-copied) per step. A variable
/// that fails is left unbound and recorded in `failures`: an expression using it then fails,
/// which is how the API server reports it too.
pub(crate) fn bind_variables(
    scope: &mut Context<'_, '_>,
    variables: &[(String, Program)],
    failures: &mut Failures,
) {
    for (name, program) in variables {
        bind_variable(scope, name, program, failures);
    }
}

/// Evaluates one variable into `scope`. Its value is bound as the evaluator computed it (a
/// copy of what it borrows, such as `object.spec.template.spec`), not converted into a
/// [`Value`] and back.
fn bind_variable(
    scope: &mut Context<'_, '_>,
    name: &str,
    program: &Program,
    failures: &mut Failures,
) {
    match Value::resolve_val(program.expression(), scope).map(CowVal::into_owned) {
        Ok(value) => scope.add_variable_as_val(format!("variables.{name}"), value),
        Err(err) => record_failure(name, &err.to_string(), failures),
    }
}

/// Records a variable's failure; one that failed only because a variable before it did
/// carries that one's cause.
fn record_failure(name: &str, error: &str, failures: &mut Failures) {
    let cause = match failures.last() {
        Some((earlier, cause)) if error.contains("Undeclared reference to 'variables'") => {
            format!("it reads variable {earlier}, which failed: {cause}")
        }
        _ => error.to_owned(),
    };
    failures.push((name.to_owned(), cause));
}

/// Like [`bind_variables`], for the variables whose flag in `needed` is set.
pub(crate) fn bind_variables_where(
    scope: &mut Context<'_, '_>,
    variables: &[(String, Program)],
    needed: &[bool],
    failures: &mut Failures,
) {
    for ((name, program), needed) in variables.iter().zip(needed) {
        if *needed {
            bind_variable(scope, name, program, failures);
        }
    }
}

/// A child scope of `context` with `variables` evaluated and bound.
pub(crate) fn with_variables<'p, 'v>(
    context: &'p Context<'p, 'v>,
    variables: &[(String, Program)],
    failures: &mut Failures,
) -> Context<'p, 'v> {
    let mut scope = context.new_inner_scope();
    bind_variables(&mut scope, variables, failures);
    scope
}

/// The error to report for an expression that failed with `error`: when it reads a variable
/// that failed to evaluate, that variable's own cause (the CEL error would only say
/// "undeclared reference to 'variables'").
pub(crate) fn explain_failure(expression: &str, error: &str, failures: &Failures) -> String {
    failures
        .iter()
        .find(|(name, _)| reads_variable(expression, name))
        .map(|(name, cause)| format!("variable {name} failed to evaluate: {cause}"))
        .unwrap_or_else(|| error.to_owned())
}

/// Whether `expression` reads `variables.<name>` (as a whole identifier).
fn reads_variable(expression: &str, name: &str) -> bool {
    let needle = format!("variables.{name}");
    expression.match_indices(&needle).any(|(at, _)| {
        expression[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expression: &str, object: serde_json::Value) -> Result<bool, String> {
        let env = environment();
        let program = compile(&env, expression, Site::Body)?;
        let context = object_context(&env, Some(&object), None, None, None);
        eval_bool(&program, &context)
    }

    #[test]
    fn integers_from_json_compare_with_integer_literals() {
        let object = serde_json::json!({"runAsUser": 0});
        assert_eq!(eval("object.runAsUser == 0", object), Ok(true));
    }

    #[test]
    fn reading_an_absent_field_is_an_error_as_in_the_api_server() {
        let err =
            eval("object.spec.x == 1", serde_json::json!({"spec": {}})).expect_err("no such key");
        assert!(err.contains("x"), "{err}");
        assert_eq!(
            eval("has(object.spec.x)", serde_json::json!({"spec": {}})),
            Ok(false)
        );
    }

    #[test]
    fn functions_kubernetes_lacks_are_refused_at_compile_time() {
        let env = environment();
        let err = compile(&env, "object.name.base64()", Site::Body).expect_err("not portable");
        assert!(err.contains("base64"), "{err}");
        let err = compile(&env, "math.greatest(1, 2) == 2", Site::Body).expect_err("not portable");
        assert!(err.contains("greatest"), "{err}");
    }

    #[test]
    fn namespace_object_and_authorizer_are_refused_because_offline_has_neither() {
        let env = environment();
        assert!(compile(&env, "namespaceObject.metadata.name == 'a'", Site::Body).is_err());
        assert!(compile(&env, "authorizer.group('') != null", Site::Body).is_err());
    }

    #[test]
    fn params_are_only_bound_for_rules_that_declare_them() {
        let env = environment();
        let err = compile(&env, "params.data.x == '1'", Site::Body).expect_err("undeclared");
        assert!(err.contains("params: true"), "{err}");
        assert!(compile(&env, "params.data.x == '1'", Site::MatchCondition).is_err());
        assert!(compile(&env, "params.data.x == '1'", Site::BodyWithParams).is_ok());
    }

    #[test]
    fn a_failed_variable_is_reported_with_its_own_cause() {
        let env = environment();
        let variables = vec![(
            "spec".to_owned(),
            compile(&env, "object.spec.template", Site::Body).expect("compiles"),
        )];
        let object = serde_json::json!({"spec": {}});
        let context = object_context(&env, Some(&object), None, None, None);
        let mut failures = Failures::new();
        let scope = with_variables(&context, &variables, &mut failures);
        let check = "variables.spec == 1";
        let program = compile(&env, check, Site::Body).expect("compiles");
        let err = eval_bool(&program, &scope).expect_err("the variable is unbound");
        let explained = explain_failure(check, &err, &failures);
        assert!(
            explained.starts_with("variable spec failed to evaluate: ")
                && explained.contains("template"),
            "{explained}"
        );
        assert_eq!(
            explain_failure("variables.specs == 1", &err, &failures),
            err
        );
    }

    #[test]
    fn match_conditions_cannot_use_variables() {
        let env = environment();
        assert!(compile(&env, "variables.x", Site::MatchCondition).is_err());
        assert!(compile(&env, "variables.x", Site::Body).is_ok());
    }

    #[test]
    fn variables_see_the_variables_before_them() {
        let env = environment();
        let variables = vec![
            (
                "a".to_owned(),
                compile(&env, "object.n + 1", Site::Body).expect("compiles"),
            ),
            (
                "b".to_owned(),
                compile(&env, "variables.a * 2", Site::Body).expect("compiles"),
            ),
        ];
        let object = serde_json::json!({"n": 1});
        let context = object_context(&env, Some(&object), None, None, None);
        let scope = with_variables(&context, &variables, &mut Failures::new());
        let check = compile(&env, "variables.b == 4", Site::Body).expect("compiles");
        assert_eq!(eval_bool(&check, &scope), Ok(true));
    }

    #[test]
    fn the_bound_json_is_the_value_the_cel_crate_converts_it_to() {
        // Every JSON type, nested, including a uint beyond int's range and a float.
        let json = serde_json::json!({
            "s": "a", "i": -3, "u": u64::MAX, "f": 1.5, "t": true, "n": null,
            "list": [1, "x", [2], {"k": []}], "map": {"inner": {"deep": [null, false]}}
        });
        let changed = serde_json::json!({"s": "b"});
        let env = environment();
        let mut context = Context::with_env(Arc::clone(&env));
        context.add_variable_from_value("converted", to_cel(&json));
        context.add_variable_as_val("bound", to_val(&json));
        for expression in [
            "bound == converted",
            "type(bound.u) == uint && type(bound.i) == int && type(bound.f) == double",
            "bound.map.inner.deep[1] == false && bound.n == null && size(bound.list) == 4",
            "bound.list.exists(x, x == 'x') && has(bound.map.inner) && !has(bound.map.other)",
        ] {
            let program = compile(&env, expression, Site::Body).expect("compiles");
            assert_eq!(eval_bool(&program, &context), Ok(true), "{expression}");
        }
        context.add_variable_as_val("other", to_val(&changed));
        let program = compile(&env, "other.s == bound.s", Site::Body).expect("compiles");
        assert_eq!(eval_bool(&program, &context), Ok(false));
    }

    #[test]
    fn matches_is_the_regex_match_in_both_call_forms_and_names_a_bad_pattern() {
        let object = serde_json::json!({"image": "ghcr.io/a/b:1.0@sha256:00"});
        for expression in [
            "object.image.matches(':[0-9.]+@sha256:')",
            "matches(object.image, '^ghcr[.]io/')",
            "!object.image.matches('^docker[.]io/')",
        ] {
            assert_eq!(eval(expression, object.clone()), Ok(true), "{expression}");
        }
        // More patterns than the cache keeps: every one still answers.
        for i in 0..(PATTERNS_KEPT + 3) {
            let expression = format!("object.image.matches('{i}|sha256')");
            assert_eq!(eval(&expression, object.clone()), Ok(true), "{expression}");
        }
        let err = eval("object.image.matches('(')", object).expect_err("not a regex");
        assert!(err.contains("'(' not a valid regex"), "{err}");
    }

    #[test]
    fn join_from_the_strings_extension_is_available() {
        let object = serde_json::json!({"names": ["a", "b"]});
        assert_eq!(eval("object.names.join(', ') == 'a, b'", object), Ok(true));
    }
}
