//! `kubectl kustomize`: how every kustomize directory is built, as Flux's kustomize-controller
//! builds it (the policy library takes the build as a function; only the CLI shells out).

use std::path::Path;

use xshell::{Shell, cmd};

pub(crate) mod builds;

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

    /// A Deployment shaped like each Flux controller's `config/manager/deployment.yaml`.
    fn controller(name: &str) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: manager\n        image: fluxcd/{name}\n        args: [--watch-all-namespaces, --log-level=info]\n"
        )
    }

    #[test]
    fn the_lockdown_component_appends_each_flag_to_the_controllers_it_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let component = dir.path().join("flux-lockdown");
        std::fs::create_dir(&component).expect("mkdir");
        std::fs::write(
            component.join("kustomization.yaml"),
            serde_yaml_ng::to_string(&infra::render::lockdown(1000)).expect("serialises"),
        )
        .expect("write");
        let names = [
            "kustomize-controller",
            "helm-controller",
            "source-controller",
        ];
        for name in names {
            std::fs::write(dir.path().join(format!("{name}.yaml")), controller(name))
                .expect("write");
        }
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [kustomize-controller.yaml, helm-controller.yaml, source-controller.yaml]\ncomponents: [flux-lockdown]\n",
        )
        .expect("write");
        let built = build(dir.path()).expect("the install with the component builds");
        let args = |name: &str| -> Vec<String> {
            serde_yaml_ng::Deserializer::from_str(&built)
                .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).expect("yaml"))
                .find(|o| o["metadata"]["name"] == name)
                .expect("the controller is in the build")["spec"]["template"]["spec"]["containers"]
                [0]["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("a string").to_owned())
                .collect()
        };
        assert_eq!(
            args("kustomize-controller"),
            [
                "--watch-all-namespaces",
                "--log-level=info",
                "--no-cross-namespace-refs=true",
                "--no-remote-bases=true",
                "--default-service-account=default",
                // The workers for 1,000 services.
                "--concurrent=64"
            ]
        );
        assert_eq!(
            args("helm-controller")[2..],
            [
                "--no-cross-namespace-refs=true",
                "--default-service-account=default"
            ]
        );
        // source-controller applies nothing: no lockdown flag (the name regex is anchored).
        assert_eq!(args("source-controller").len(), 2);
    }
}
