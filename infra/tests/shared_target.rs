//! The build script when checkouts share one target directory (a global `CARGO_TARGET_DIR`, a CI
//! cache): building a copy of the crate and deleting it must leave the original building and its
//! tests passing (issue 13 defect 1: the script once baked its own path in at compile time).
//!
//! The copies hold what the build script reads and what includes its output: `build.rs`,
//! `services/*.toml`, and a library that includes the generated file the way `spec/load.rs`
//! does. No dependencies, so the two cargo runs take seconds and need no registry; the whole
//! infra crate would build k8s-openapi, cel and the rest from scratch (minutes of CPU).

use std::fs;
use std::path::Path;

use xshell::{Shell, cmd};

const MANIFEST: &str =
    "[package]\nname = \"infra\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n";
const LIB: &str = r#"//! Includes what build.rs generates, as infra's spec loader does.
include!(concat!(env!("OUT_DIR"), "/embedded_services.rs"));

/// `(file name, contents)` of every embedded service spec.
pub fn services() -> &'static [(&'static str, &'static str)] {
    EMBEDDED_SERVICES
}

#[test]
fn every_service_file_of_this_checkout_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("services");
    for (file, text) in services() {
        assert_eq!(*text, std::fs::read_to_string(dir.join(file)).expect("readable"));
    }
    assert!(!services().is_empty());
}
"#;

/// Writes a one-member workspace at `root` holding a copy of infra's build script and services.
fn copy_of_infra(root: &Path) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crate_dir = root.join("infra");
    fs::create_dir_all(crate_dir.join("src")).expect("a scratch dir is writable");
    fs::create_dir_all(crate_dir.join("services")).expect("a scratch dir is writable");
    fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nmembers = [\"infra\"]\nresolver = \"3\"\n",
    )
    .expect("writable");
    fs::write(crate_dir.join("Cargo.toml"), MANIFEST).expect("writable");
    fs::write(crate_dir.join("src/lib.rs"), LIB).expect("writable");
    fs::copy(here.join("build.rs"), crate_dir.join("build.rs")).expect("build.rs is readable");
    for entry in fs::read_dir(here.join("services")).expect("infra/services is readable") {
        let path = entry.expect("a readable entry").path();
        let name = path.file_name().expect("a file name");
        fs::copy(&path, crate_dir.join("services").join(name)).expect("copyable");
    }
}

#[test]
fn a_copy_built_into_the_same_target_dir_then_deleted_leaves_the_original_building() {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let (original, copy) = (scratch.path().join("original"), scratch.path().join("copy"));
    copy_of_infra(&original);
    copy_of_infra(&copy);
    let sh = Shell::new().expect("a shell");
    sh.set_var("CARGO_TARGET_DIR", scratch.path().join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());

    sh.change_dir(&copy);
    cmd!(sh, "{cargo} build --offline --quiet")
        .run()
        .expect("the copy builds");
    fs::remove_dir_all(&copy).expect("the copy can be deleted");

    sh.change_dir(&original);
    let out = cmd!(sh, "{cargo} test --offline --quiet")
        .ignore_status()
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the original no longer builds after a copy in the same target dir was deleted:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 passed"), "{stdout}");
}
