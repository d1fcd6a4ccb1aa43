//! Every rule against its fixtures: `fixtures/<rule>/pass/*.yaml` must be clean, and
//! `fixtures/<rule>/fail/*.yaml` must trip that rule and nothing else but the rules its header
//! line `# also trips: <rule>, …` names (defence in depth: some changes are refused twice).
//! Fixtures are read with the namespaces' platform settings (`tests/context/`), as the cluster
//! would have them; reports are snapshotted.

use std::path::{Path, PathBuf};

use policies::{Bundle, CheckContext, SourcedObject, UserInfo, load_manifests};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_dir() -> PathBuf {
    crate_dir().join("fixtures")
}

fn no_kustomize(dir: &Path) -> Result<String, String> {
    Err(format!(
        "fixtures are plain YAML, not kustomize directories ({})",
        dir.display()
    ))
}

/// `(rule, outcome)` from `fixtures/<rule>/<outcome>/<file>.yaml`.
fn classify(path: &Path) -> (String, String) {
    let relative = path.strip_prefix(fixtures_dir()).expect("under fixtures/");
    let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
    let rule = parts.next().expect("rule folder");
    let outcome = parts.next().expect("pass or fail folder");
    (rule, outcome)
}

/// The rules a fail fixture's `# also trips:` line names.
fn also_trips(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# also trips:"))
        .flat_map(|rules| rules.split(','))
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect()
}

#[test]
fn every_fixture_passes_or_fails_as_its_folder_says() {
    let bundle = Bundle::builtin().expect("the builtin rules compile");
    // The platform writes the settings (its Flux reconciler applies them).
    let platform = UserInfo::service_account("flux-system", "kustomize-controller");
    let context_objects: Vec<SourcedObject> =
        load_manifests(&crate_dir().join("tests/context"), &no_kustomize)
            .expect("the fixtures' platform settings load")
            .into_iter()
            .map(|mut o| {
                o.admission.user = Some(platform.clone());
                o
            })
            .collect();
    // Every fixture's problem is listed at once, not only the first.
    let problems = std::cell::RefCell::new(Vec::<String>::new());
    let problem = |text: String| problems.borrow_mut().push(text);
    insta::glob!("../fixtures", "**/*.yaml", |path| {
        let (rule, outcome) = classify(path);
        assert!(
            bundle.rule(&rule).is_some(),
            "{}: no rule named {rule}",
            path.display()
        );
        let relative = path.strip_prefix(crate_dir()).expect("in crate").to_owned();
        let mut objects: Vec<SourcedObject> = context_objects.clone();
        let fixture = load_manifests(path, &no_kustomize).expect("fixtures are valid manifests");
        objects.extend(fixture.into_iter().map(|mut o| {
            o.file = relative.clone();
            o
        }));
        // Environment-limited rules are checked in the environment they are limited to; all
        // the others outside any environment, so no other rule fires on their fixtures.
        let environment = bundle
            .rule(&rule)
            .and_then(|r| r.environments.first().cloned());
        // Plain manifests are applied by the platform, as the tree's are; an AdmissionReview
        // fixture says who sends it.
        let mut report = bundle
            .check(
                &CheckContext {
                    environment,
                    user: Some(platform.clone()),
                },
                &objects,
                &[],
            )
            .expect("no exemptions");
        report.objects_checked -= context_objects.len();
        let text = std::fs::read_to_string(path).expect("readable");
        let shown = path.strip_prefix(crate_dir()).unwrap_or(path).display();
        match outcome.as_str() {
            "pass" if !report.violations.is_empty() => {
                problem(format!("{shown} must pass:\n{report}"));
            }
            "pass" => {}
            "fail" => {
                if report.violations_of(&rule).next().is_none() {
                    problem(format!("{shown} must trip {rule}:\n{report}"));
                }
                let also = also_trips(&text);
                if !report
                    .violations
                    .iter()
                    .all(|v| v.rule == rule || also.contains(&v.rule))
                {
                    problem(format!(
                        "{shown} must trip only {rule} and what `# also trips:` names ({also:?}):\n{report}"
                    ));
                }
                for other in &also {
                    if report.violations_of(other).next().is_none() {
                        problem(format!(
                            "{shown} says it also trips {other}, but does not:\n{report}"
                        ));
                    }
                }
            }
            other => problem(format!("{shown}: folder {other} is neither pass nor fail")),
        }
        insta::assert_snapshot!(report.to_string());
    });
    let problems = problems.into_inner();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_has_a_passing_and_a_failing_fixture() {
    let bundle = Bundle::builtin().expect("the builtin rules compile");
    for rule in bundle.rules() {
        for outcome in ["pass", "fail"] {
            let dir = fixtures_dir().join(&rule.name).join(outcome);
            let count = std::fs::read_dir(&dir)
                .map(|entries| entries.filter_map(Result::ok).count())
                .unwrap_or(0);
            assert!(
                count > 0,
                "rule {} has no fixture in {}",
                rule.name,
                dir.display()
            );
        }
    }
}

#[test]
fn every_fixture_folder_names_a_rule() {
    let bundle = Bundle::builtin().expect("the builtin rules compile");
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures/ exists") {
        let name = entry
            .expect("readable")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            bundle.rule(&name).is_some(),
            "fixtures/{name} names no rule"
        );
    }
}
