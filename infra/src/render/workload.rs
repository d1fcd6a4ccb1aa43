//! A service's workload, applied as its tenant: ServiceAccount, Deployment (probes, resources,
//! hardening), Service, PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::services::{ServiceCtx, one};
use crate::Error;
use crate::meta;
use crate::spec::{self, Expose, Spec, rules};
use crate::tree::Object;

pub(super) fn service_account(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    one(&ServiceAccount {
        metadata: ctx.metadata(&ctx.service.name),
        automount_service_account_token: Some(ctx.service.automount_service_account_token),
        ..Default::default()
    })
}

pub(super) fn http_probe(probe: &spec::Probe) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(probe.path.clone()),
            port: IntOrString::Int(probe.port),
            ..Default::default()
        }),
        initial_delay_seconds: (probe.initial_delay_seconds > 0)
            .then_some(probe.initial_delay_seconds),
        period_seconds: Some(probe.period_seconds),
        timeout_seconds: Some(probe.timeout_seconds),
        failure_threshold: Some(probe.failure_threshold),
        ..Default::default()
    }
}

pub(super) fn quantities(q: &spec::Quantities) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(q.cpu.clone())),
        ("memory".to_owned(), Quantity(q.memory.clone())),
    ])
}

/// `/tmp` → `tmp`, `/var/cache/app` → `var-cache-app`.
pub(super) fn volume_name(path: &str) -> String {
    let name: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "root".to_owned()
    } else {
        name
    }
}

/// The in-cluster URL of a callee's Service.
pub fn service_url(spec: &Spec, url: &spec::ServiceUrl) -> Result<String, Error> {
    let callee = spec
        .service(&url.service)
        .ok_or_else(|| Error::Reference(format!("service `{}` is not declared", url.service)))?;
    let port = url
        .port
        .or_else(|| callee.ports.first().map(|p| p.port))
        .ok_or_else(|| Error::Reference(format!("service `{}` declares no port", callee.name)))?;
    Ok(format!(
        "http://{0}.{0}.svc.cluster.local:{port}{1}",
        callee.name, url.path
    ))
}

pub(super) fn deployment(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let (spec, service, env) = (ctx.spec, ctx.service, ctx.env);
    let run_as_non_root = !service.is_exempt(rules::RUN_AS_NON_ROOT);
    let read_only_root = !service.is_exempt(rules::READ_ONLY_ROOT_FILESYSTEM);
    let env_vars = service
        .env
        .iter()
        .map(|var| {
            let (value, value_from) = match (&var.value, &var.service_url, &var.secret) {
                (Some(value), _, _) => (Some(value.clone()), None),
                (None, Some(url), _) => (Some(service_url(spec, url)?), None),
                (None, None, Some(secret)) => (
                    None,
                    Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.name.clone(),
                            key: secret.key.clone(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                ),
                (None, None, None) => {
                    return Err(Error::Reference(format!(
                        "env var `{}` of `{}` has no `value`, `service_url` or `secret`",
                        var.name, service.name
                    )));
                }
            };
            Ok(EnvVar {
                name: var.name.clone(),
                value,
                value_from,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let image = service.image_ref(&spec.platform.registry, env);
    let container = Container {
        name: service.name.clone(),
        image_pull_policy: Some(pull_policy(&image).into()),
        image: Some(image),
        ports: Some(
            service
                .ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        env: (!env_vars.is_empty()).then_some(env_vars),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&service.resources.requests)),
            limits: Some(quantities(&service.resources.limits)),
            ..Default::default()
        }),
        startup_probe: service.probes.startup.as_ref().map(http_probe),
        liveness_probe: Some(http_probe(&service.probes.liveness)),
        readiness_probe: Some(http_probe(&service.probes.readiness)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(read_only_root),
            run_as_non_root: run_as_non_root.then_some(true),
            ..Default::default()
        }),
        volume_mounts: (!service.scratch_dirs.is_empty()).then(|| {
            service
                .scratch_dirs
                .iter()
                .map(|dir| VolumeMount {
                    name: volume_name(dir),
                    mount_path: dir.clone(),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(service.name.clone()),
        automount_service_account_token: Some(service.automount_service_account_token),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: run_as_non_root.then_some(true),
            run_as_user: service.run_as_user,
            run_as_group: service.run_as_user,
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: (!service.scratch_dirs.is_empty()).then(|| {
            service
                .scratch_dirs
                .iter()
                .map(|dir| Volume {
                    name: volume_name(dir),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    let mut metadata = ctx.metadata(&service.name);
    let environment = spec.environments.iter().find(|e| e.name == env);
    let skips = environment
        .map(|e| service.scanner_skips(e))
        .unwrap_or_default();
    if !skips.is_empty() {
        // checkov's in-manifest skip syntax, so the scanner's report shows the same reason.
        metadata.annotations = Some(
            skips
                .iter()
                .enumerate()
                .map(|(i, (check, reason))| {
                    (
                        format!("checkov.io/skip{}", i + 1),
                        format!("{check}={reason}"),
                    )
                })
                .collect(),
        );
    }
    one(&Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(service.replicas_in(env)),
            selector: meta::pod_selector(&service.name),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub(super) fn service(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let service = ctx.service;
    one(&Service {
        metadata: ctx.metadata(&service.name),
        spec: Some(ServiceSpec {
            type_: Some(match service.expose {
                Expose::Cluster => "ClusterIP".into(),
                Expose::LoadBalancer => "LoadBalancer".into(),
            }),
            selector: Some(meta::selector_labels(&service.name)),
            ports: Some(
                service
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::Int(p.port)),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Only above one replica: for a single pod a budget either blocks every drain or protects nothing.
pub(super) fn pod_disruption_budget(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let service = ctx.service;
    if service.replicas_in(ctx.env) <= 1 {
        return Ok(Vec::new());
    }
    one(&PodDisruptionBudget {
        metadata: ctx.metadata(&service.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(meta::pod_selector(&service.name)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// `IfNotPresent` for an image pinned by digest (immutable: a cached copy is that image), `Always`
/// for a tag (it may have moved). Private images on shared nodes need the cluster's
/// `AlwaysPullImages` admission plugin, which re-checks pull credentials whatever the policy.
fn pull_policy(image: &str) -> &'static str {
    if image.contains("@sha256:") {
        "IfNotPresent"
    } else {
        "Always"
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{self, find};

    #[test]
    fn digest_pinned_images_are_pulled_if_not_present_and_tags_always() {
        let tree = testing::tree();
        for (env, policy, pinned) in [
            ("production", "IfNotPresent", true),
            ("staging", "Always", false),
        ] {
            let provider = find(
                tree,
                "Deployment",
                "payment-provider",
                "payment-provider",
                env,
            );
            let container = &provider["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["imagePullPolicy"], policy, "{env}");
            let image = container["image"].as_str().expect("an image");
            assert_eq!(image.contains("@sha256:"), pinned, "{image}");
        }
    }

    #[test]
    fn antaeus_points_at_the_provider_service_url() {
        let tree = testing::tree();
        let antaeus = find(tree, "Deployment", "antaeus", "antaeus", "production");
        let env = &antaeus["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "PAYMENT_PROVIDER_ENDPOINT");
        assert_eq!(
            env["value"],
            "http://payment-provider.payment-provider.svc.cluster.local:9000/v1/charges"
        );
    }

    #[test]
    fn antaeus_runs_as_root_only_through_its_exemption_and_stays_otherwise_hardened() {
        let tree = testing::tree();
        let antaeus = find(tree, "Deployment", "antaeus", "antaeus", "staging");
        let pod = &antaeus["spec"]["template"]["spec"];
        assert!(pod["securityContext"].get("runAsNonRoot").is_none());
        let container = &pod["containers"][0]["securityContext"];
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert_eq!(container["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        // The scanner sees the same exemptions, with the same reasons.
        let skips = antaeus["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        assert!(skips.values().any(|v| {
            v.as_str()
                .is_some_and(|v| v.starts_with("CKV_K8S_23=the stock tinjis image"))
        }));
        let provider = find(
            tree,
            "Deployment",
            "payment-provider",
            "payment-provider",
            "staging",
        );
        assert_eq!(
            provider["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        assert_eq!(
            provider["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
    }

    #[test]
    fn environments_differ_in_replicas_and_image_pinning() {
        let tree = testing::tree();
        let prod = find(
            tree,
            "Deployment",
            "payment-provider",
            "payment-provider",
            "production",
        );
        let staging = find(
            tree,
            "Deployment",
            "payment-provider",
            "payment-provider",
            "staging",
        );
        assert_eq!(prod["spec"]["replicas"], 3);
        assert_eq!(staging["spec"]["replicas"], 2);
        assert!(
            prod["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .expect("image")
                .contains("@sha256:")
        );
    }
}
