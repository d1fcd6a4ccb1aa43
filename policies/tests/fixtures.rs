//! Every rule against its fixtures: `fixtures/<rule>/pass/*.yaml` must be clean, and
//! `fixtures/<rule>/fail/*.yaml` must trip that rule and nothing else. Reports are snapshotted.

use std::path::{Path, PathBuf};

use policies::{Bundle, CheckContext, load_manifests};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `(rule, outcome)` from `fixtures/<rule>/<outcome>/<file>.yaml`.
fn classify(path: &Path) -> (String, String) {
    let relative = path.strip_prefix(fixtures_dir()).expect("under fixtures/");
    let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
    let rule = parts.next().expect("rule folder");
    let outcome = parts.next().expect("pass or fail folder");
    (rule, outcome)
}

#[test]
fn every_fixture_passes_or_fails_as_its_folder_says() {
    let bundle = Bundle::builtin().expect("the builtin rules compile");
    insta::glob!("../fixtures", "**/*.yaml", |path| {
        let (rule, outcome) = classify(path);
        assert!(
            bundle.rule(&rule).is_some(),
            "{}: no rule named {rule}",
            path.display()
        );
        let mut objects = load_manifests(path).expect("fixtures are valid manifests");
        let relative = path
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("in crate");
        for object in &mut objects {
            object.file = relative.to_owned();
        }
        // Environment-limited rules are checked in the environment they are limited to; all
        // the others outside any environment, so no other rule fires on their fixtures.
        let environment = bundle
            .rule(&rule)
            .and_then(|r| r.environments.first().cloned());
        let report = bundle
            .check(&CheckContext { environment }, &objects, &[])
            .expect("no exemptions");
        match outcome.as_str() {
            "pass" => assert_eq!(report.violations, [], "{}: {report}", path.display()),
            "fail" => {
                assert!(
                    report.violations_of(&rule).next().is_some(),
                    "{} must trip {rule}: {report}",
                    path.display()
                );
                assert!(
                    report.violations.iter().all(|v| v.rule == rule),
                    "{} must trip only {rule}: {report}",
                    path.display()
                );
            }
            other => panic!(
                "{}: folder {other} is neither pass nor fail",
                path.display()
            ),
        }
        insta::assert_snapshot!(report.to_string());
    });
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
