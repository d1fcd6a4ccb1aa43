//! What xtask's tests need from the machine, said once: the tests that build kustomize
//! directories call [`require_kubectl`] first, so a machine without kubectl fails them with the
//! reason instead of with a build error.

use std::ffi::OsStr;
use std::path::Path;

/// Fails the calling test, saying what is missing and why, unless `kubectl` is on PATH. The
/// tests that call it build kustomize directories with the real `kubectl kustomize`, as Flux's
/// kustomize-controller builds them (no stand-in).
#[track_caller]
pub(crate) fn require_kubectl() {
    if let Err(missing) = find_kubectl(std::env::var_os("PATH").as_deref()) {
        panic!("{missing}");
    }
}

/// The first `kubectl` file on `path` (a PATH value), or why the test cannot run.
fn find_kubectl(path: Option<&OsStr>) -> Result<std::path::PathBuf, String> {
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            "kubectl is not on PATH: this test builds kustomize directories with the real `kubectl kustomize`, as Flux does; install kubectl (client, kustomize built in) from https://kubernetes.io/docs/tasks/tools/ and run the tests again".to_owned()
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_path_without_kubectl_says_what_is_missing_and_why() {
        let empty = tempfile::tempdir().expect("a scratch dir");
        let err = find_kubectl(Some(empty.path().as_os_str())).expect_err("no kubectl there");
        assert!(err.starts_with("kubectl is not on PATH: "), "{err}");
        assert!(err.contains("`kubectl kustomize`"), "{err}");
        assert!(find_kubectl(None).is_err());
    }

    #[test]
    fn an_executable_kubectl_on_path_is_found_and_a_plain_file_is_not() {
        let dirs = [
            tempfile::tempdir().expect("a scratch dir"),
            tempfile::tempdir().expect("a scratch dir"),
        ];
        let plain = dirs[0].path().join("kubectl");
        std::fs::write(&plain, "").expect("writable");
        let real = dirs[1].path().join("kubectl");
        std::fs::write(&real, "#!/bin/sh\n").expect("writable");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = std::env::join_paths(dirs.iter().map(|d| d.path())).expect("joinable");
        assert_eq!(find_kubectl(Some(&path)), Ok(real));
    }
}
