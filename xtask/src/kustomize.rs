//! `kubectl kustomize`: how every kustomize directory is built, as Flux's kustomize-controller
//! builds it (the policy library takes the build as a function; only the CLI shells out).

use std::path::Path;

use xshell::{Shell, cmd};

/// Builds `dir` with `kubectl kustomize`; the error names the directory, the command and, when
/// kubectl is missing, how to get it.
pub(crate) fn build(dir: &Path) -> Result<String, String> {
    let sh = Shell::new().map_err(|e| format!("cannot start a shell for kubectl: {e}"))?;
    // `output` captures stderr: a successful build stays quiet, a failed one quotes kubectl.
    match cmd!(sh, "kubectl kustomize {dir}")
        .quiet()
        .ignore_status()
        .output()
    {
        Ok(output) if output.status.success() => String::from_utf8(output.stdout).map_err(|_| {
            format!(
                "`kubectl kustomize {}` printed invalid UTF-8",
                dir.display()
            )
        }),
        Ok(output) => Err(format!(
            "`kubectl kustomize {}` fails: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(err) => Err(format!(
            "cannot run `kubectl kustomize` ({err}): kubectl (with kustomize built in) must be on PATH; install it from https://kubernetes.io/docs/tasks/tools/"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_does_not_build_is_named_with_kubectls_reason() {
        crate::testing::require_kubectl();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [missing.yaml]\n",
        )
        .expect("write");
        let err = build(dir.path()).expect_err("missing resource");
        assert!(err.contains("kubectl kustomize"), "{err}");
        assert!(err.contains("missing.yaml"), "{err}");
    }
}
