//! Spec → typed objects → [`Tree`]: every environment fully rendered, no overlays.
//!
//! Layout (per environment `<env>`):
//! - `flux/clusters/<env>/`: the bootstrap sync (`flux-system`) and the platform Kustomizations
//!   `infrastructure` then `tenants`;
//! - `flux/infrastructure/<env>/`: Namespaces (and, later, the policy bundle);
//! - `flux/tenants/<env>/<service>/`: the Flux tenant, the developer RBAC and the service's sync;
//! - `flux/apps/<service>/<env>/`: the workload, applied as the service's own tenant.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, Namespace,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::Error;
use crate::flux::{
    DependsOn, GitRef, GitRepository, GitRepositorySpec, Kustomization, KustomizationSpec,
    SourceRef,
};
use crate::meta;
use crate::spec::{self, Expose, Spec, rules};
use crate::tree::{HEADER, Object, Tree};

/// Namespace of the Flux controllers and the platform's own Kustomizations.
pub const FLUX_NAMESPACE: &str = "flux-system";
/// Flux's own controller account: the platform Kustomizations name it explicitly, so the
/// `--default-service-account` lockdown (which only applies when the name is empty) leaves them be.
pub const PLATFORM_RECONCILER: &str = "kustomize-controller";
/// The account Flux impersonates for each service, in the service's namespace.
pub const TENANT_RECONCILER: &str = "flux-reconciler";
/// The developer Role and RoleBinding in each service namespace.
pub const DEVELOPER_ROLE: &str = "developer";

/// Renders the whole tree for `spec`: every environment, plus `.github/CODEOWNERS`.
pub fn render(spec: &Spec) -> Result<Tree, Error> {
    let mut tree = Tree::new();
    for env in &spec.environments {
        render_environment(spec, &env.name, &mut tree)?;
    }
    tree.add_text(".github/CODEOWNERS", codeowners(spec))?;
    Ok(tree)
}

/// The directory Flux applies a service's workload from.
pub fn app_dir(service: &str, env: &str) -> String {
    format!("flux/apps/{service}/{env}")
}

/// The entry point a cluster of `env` is bootstrapped with.
pub fn cluster_dir(env: &str) -> String {
    format!("flux/clusters/{env}")
}

/// The infrastructure layer of `env` (Namespaces; the policy bundle goes under it).
pub fn infrastructure_dir(env: &str) -> String {
    format!("flux/infrastructure/{env}")
}

/// The tenants layer of `env`.
pub fn tenants_dir(env: &str) -> String {
    format!("flux/tenants/{env}")
}

fn render_environment(spec: &Spec, env: &str, tree: &mut Tree) -> Result<(), Error> {
    let platform = &spec.platform;
    let owner = &platform.owner;
    let cluster = cluster_dir(env);
    let infrastructure = infrastructure_dir(env);
    let tenants = tenants_dir(env);
    for dir in [&cluster, &infrastructure, &tenants] {
        tree.add_root(dir);
    }

    // What `flux bootstrap` writes, minus gotk-components.yaml (Flux is installed separately):
    // the repository and the Kustomization that reconciles this directory.
    let flux_meta = |name: &str| {
        meta::object_meta(
            name,
            Some(FLUX_NAMESPACE),
            meta::labels(&platform.name, name, owner),
        )
    };
    let source = GitRepository::new(
        flux_meta(FLUX_NAMESPACE),
        GitRepositorySpec {
            interval: "1m".into(),
            url: platform.git.url.clone(),
            reference: GitRef {
                branch: Some(platform.git.branch.clone()),
            },
            ..Default::default()
        },
    );
    let platform_kustomization =
        |name: &str, path: &str, wait: bool, timeout: String, after: &[&str]| {
            Kustomization::new(
                flux_meta(name),
                KustomizationSpec {
                    interval: "10m".into(),
                    retry_interval: Some("1m".into()),
                    timeout,
                    path: format!("./{path}"),
                    prune: true,
                    wait,
                    source_ref: SourceRef {
                        kind: "GitRepository".into(),
                        name: FLUX_NAMESPACE.into(),
                    },
                    depends_on: after
                        .iter()
                        .map(|name| DependsOn {
                            name: (*name).to_owned(),
                            namespace: None,
                        })
                        .collect(),
                    service_account_name: PLATFORM_RECONCILER.into(),
                    target_namespace: None,
                },
            )
        };
    // The sync does not wait: its children are Kustomizations with their own health.
    let sync = platform_kustomization(FLUX_NAMESPACE, &cluster, false, "3m".into(), &[]);
    tree.add_objects(
        env,
        &format!("{cluster}/flux-system.yaml"),
        vec![Object::new(&source)?, Object::new(&sync)?],
    )?;
    let infra = platform_kustomization("infrastructure", &infrastructure, true, "5m".into(), &[]);
    tree.add_objects(
        env,
        &format!("{cluster}/infrastructure.yaml"),
        vec![Object::new(&infra)?],
    )?;
    // Tenants wait for every service's Kustomization, which waits for its rollout: the slowest
    // service start (Antaeus compiles at start) sets the budget.
    let slowest = spec
        .services
        .iter()
        .map(service_timeout_minutes)
        .max()
        .unwrap_or(5);
    let tenants_kustomization = platform_kustomization(
        "tenants",
        &tenants,
        true,
        format!("{}m", slowest + 5),
        &["infrastructure"],
    );
    tree.add_objects(
        env,
        &format!("{cluster}/tenants.yaml"),
        vec![Object::new(&tenants_kustomization)?],
    )?;

    let mut namespaces = Vec::with_capacity(spec.services.len());
    for service in &spec.services {
        namespaces.push(Object::new(&namespace(spec, service))?);
    }
    tree.add_objects(
        env,
        &format!("{infrastructure}/namespaces.yaml"),
        namespaces,
    )?;

    let callees = callees(spec);
    // Services are independent: serialise them on every core, then insert in one place (the
    // tree is ordered by path, so the result does not depend on which thread finished first).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = spec.services.len().div_ceil(workers).max(1);
    let rendered: Vec<Result<Vec<ServiceFiles>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = spec
            .services
            .chunks(chunk)
            .map(|services| {
                let callees = &callees;
                scope.spawn(move || {
                    services
                        .iter()
                        .map(|service| service_files(spec, service, env, callees))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rendering a service does not panic"))
            .collect()
    });
    for files in rendered {
        for service in files? {
            tree.add_root(&service.app_dir);
            for (path, objects) in service.files {
                tree.add_objects(env, &path, objects)?;
            }
        }
    }
    Ok(())
}

/// One service's files in one environment: its tenant files and its app directory.
struct ServiceFiles {
    app_dir: String,
    files: Vec<(String, Vec<Object>)>,
}

fn service_files(
    spec: &Spec,
    service: &spec::Service,
    env: &str,
    callees: &BTreeMap<&str, Vec<(&str, i32)>>,
) -> Result<ServiceFiles, Error> {
    let dir = format!("{}/{}", tenants_dir(env), service.name);
    let app = app_dir(&service.name, env);
    let (sa, tenant_binding) = tenant(spec, service);
    let (role, developer_binding) = developer_rbac(spec, service)?;
    let (repo, kustomization) = service_sync(spec, service, env);
    let empty = Vec::new();
    let policies = network_policies(
        spec,
        service,
        callees.get(service.name.as_str()).unwrap_or(&empty),
    );
    let mut files = vec![
        (
            format!("{dir}/flux-tenant.yaml"),
            vec![Object::new(&sa)?, Object::new(&tenant_binding)?],
        ),
        (
            format!("{dir}/developer-rbac.yaml"),
            vec![Object::new(&role)?, Object::new(&developer_binding)?],
        ),
        (
            format!("{dir}/sync.yaml"),
            vec![Object::new(&repo)?, Object::new(&kustomization)?],
        ),
        (
            format!("{app}/service-account.yaml"),
            vec![Object::new(&service_account(spec, service))?],
        ),
        (
            format!("{app}/deployment.yaml"),
            vec![Object::new(&deployment(spec, service, env)?)?],
        ),
        (
            format!("{app}/service.yaml"),
            vec![Object::new(&kube_service(spec, service))?],
        ),
        (
            format!("{app}/network-policies.yaml"),
            policies
                .iter()
                .map(Object::new)
                .collect::<Result<Vec<_>, _>>()?,
        ),
    ];
    if service.replicas_in(env) > 1 {
        files.push((
            format!("{app}/pod-disruption-budget.yaml"),
            vec![Object::new(&pdb(spec, service))?],
        ));
    }
    Ok(ServiceFiles {
        app_dir: app,
        files,
    })
}

fn labels(spec: &Spec, service: &spec::Service) -> BTreeMap<String, String> {
    meta::labels(&spec.platform.name, &service.name, &service.team)
}

/// `(callee, port)` pairs each service may call, from the callees' `[[callers]]`.
fn callees(spec: &Spec) -> BTreeMap<&str, Vec<(&str, i32)>> {
    let mut out: BTreeMap<&str, Vec<(&str, i32)>> = BTreeMap::new();
    for callee in &spec.services {
        for caller in &callee.callers {
            out.entry(caller.service.as_str())
                .or_default()
                .push((callee.name.as_str(), caller.port));
        }
    }
    out
}

/// Minutes a service's rollout may take: its startup (or readiness) budget plus two minutes to
/// pull and schedule, at least five.
fn service_timeout_minutes(service: &spec::Service) -> i64 {
    let probe = service
        .probes
        .startup
        .as_ref()
        .unwrap_or(&service.probes.readiness);
    let seconds = probe.budget_seconds() + 120;
    ((seconds + 59) / 60).max(5)
}

fn namespace(spec: &Spec, service: &spec::Service) -> Namespace {
    let mut labels = labels(spec, service);
    // Pod Security Admission as a backstop to the policy bundle: `restricted` unless the service
    // is exempt from running as non-root (the stock Antaeus image), then `baseline`.
    let level = if service.is_exempt(rules::RUN_AS_NON_ROOT) {
        "baseline"
    } else {
        "restricted"
    };
    labels.insert("pod-security.kubernetes.io/enforce".into(), level.into());
    labels.insert(
        "pod-security.kubernetes.io/warn".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: meta::object_meta(&service.name, None, labels),
        ..Default::default()
    }
}

fn tenant(spec: &Spec, service: &spec::Service) -> (ServiceAccount, RoleBinding) {
    let ns = Some(service.name.as_str());
    let sa = ServiceAccount {
        metadata: meta::object_meta(TENANT_RECONCILER, ns, labels(spec, service)),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    // flux2-multi-tenancy: cluster-admin, but through a RoleBinding, so only in this namespace.
    let binding = RoleBinding {
        metadata: meta::object_meta(TENANT_RECONCILER, ns, labels(spec, service)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: TENANT_RECONCILER.into(),
            namespace: Some(service.name.clone()),
            ..Default::default()
        }]),
    };
    (sa, binding)
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    }
}

/// The owning team may roll out and inspect this service, and nothing else.
fn developer_rbac(spec: &Spec, service: &spec::Service) -> Result<(Role, RoleBinding), Error> {
    let ns = Some(service.name.as_str());
    let read = ["get", "list", "watch"];
    let mut rules = vec![
        rule(
            "apps",
            &["deployments"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule("apps", &["deployments/scale"], &["get", "patch", "update"]),
        rule("apps", &["replicasets"], &read),
        rule("", &["pods", "services", "endpoints", "events"], &read),
        rule("", &["pods/log"], &["get"]),
        rule("events.k8s.io", &["events"], &read),
    ];
    if service.exec {
        // `create` for the SPDY path, `get` for the WebSocket upgrade kubectl ≥ 1.30 uses.
        rules.push(rule("", &["pods/exec"], &["create", "get"]));
    }
    let role = Role {
        metadata: meta::object_meta(DEVELOPER_ROLE, ns, labels(spec, service)),
        rules: Some(rules),
    };
    let team = spec.team(&service.team).ok_or_else(|| {
        Error::Reference(format!(
            "service `{}` names team `{}`, which is not declared",
            service.name, service.team
        ))
    })?;
    let subjects = team
        .groups
        .iter()
        .map(|g| ("Group", g))
        .chain(team.users.iter().map(|u| ("User", u)))
        .map(|(kind, name)| Subject {
            kind: kind.into(),
            name: name.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        })
        .collect();
    let binding = RoleBinding {
        metadata: meta::object_meta(DEVELOPER_ROLE, ns, labels(spec, service)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: DEVELOPER_ROLE.into(),
        },
        subjects: Some(subjects),
    };
    Ok((role, binding))
}

/// The service's own source and Kustomization, in its namespace, applied as its tenant account.
fn service_sync(spec: &Spec, service: &spec::Service, env: &str) -> (GitRepository, Kustomization) {
    let ns = Some(service.name.as_str());
    let app = app_dir(&service.name, env);
    let repo = GitRepository::new(
        meta::object_meta(&service.name, ns, labels(spec, service)),
        GitRepositorySpec {
            interval: "1m".into(),
            url: spec.platform.git.url.clone(),
            reference: GitRef {
                branch: Some(spec.platform.git.branch.clone()),
            },
            // The artifact holds this service's manifests only, nothing else of the repository.
            ignore: Some(only_directory(&app)),
            timeout: None,
        },
    );
    let kustomization = Kustomization::new(
        meta::object_meta(&service.name, ns, labels(spec, service)),
        KustomizationSpec {
            interval: "10m".into(),
            retry_interval: Some("1m".into()),
            timeout: format!("{}m", service_timeout_minutes(service)),
            path: format!("./{app}"),
            prune: true,
            wait: true,
            source_ref: SourceRef {
                kind: "GitRepository".into(),
                name: service.name.clone(),
            },
            depends_on: Vec::new(),
            service_account_name: TENANT_RECONCILER.into(),
            target_namespace: Some(service.name.clone()),
        },
    );
    (repo, kustomization)
}

/// `.sourceignore` patterns that keep `dir` and drop everything else. A gitignore pattern cannot
/// re-include a file whose parent directory is excluded, so each level is re-included in turn.
///
/// `flux/apps/x` → `/*`, `!/flux/`, `/flux/*`, `!/flux/apps/`, `/flux/apps/*`, `!/flux/apps/x/`.
fn only_directory(dir: &str) -> String {
    let mut out = String::from("/*\n");
    let mut prefix = String::new();
    let parts: Vec<&str> = dir.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        out.push_str(&format!("!{prefix}/\n"));
        if i + 1 < parts.len() {
            out.push_str(&format!("{prefix}/*\n"));
        }
    }
    out
}

fn service_account(spec: &Spec, service: &spec::Service) -> ServiceAccount {
    ServiceAccount {
        metadata: meta::object_meta(&service.name, Some(&service.name), labels(spec, service)),
        automount_service_account_token: Some(service.automount_service_account_token),
        ..Default::default()
    }
}

fn http_probe(probe: &spec::Probe) -> Probe {
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

fn quantities(q: &spec::Quantities) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(q.cpu.clone())),
        ("memory".to_owned(), Quantity(q.memory.clone())),
    ])
}

/// `/tmp` → `tmp`, `/var/cache/app` → `var-cache-app`.
fn volume_name(path: &str) -> String {
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

fn deployment(spec: &Spec, service: &spec::Service, env: &str) -> Result<Deployment, Error> {
    let run_as_non_root = !service.is_exempt(rules::RUN_AS_NON_ROOT);
    let read_only_root = !service.is_exempt(rules::READ_ONLY_ROOT_FILESYSTEM);
    let env_vars = service
        .env
        .iter()
        .map(|var| {
            let value = match (&var.value, &var.service_url) {
                (Some(value), _) => value.clone(),
                (None, Some(url)) => service_url(spec, url)?,
                (None, None) => {
                    return Err(Error::Reference(format!(
                        "env var `{}` of `{}` has neither `value` nor `service_url`",
                        var.name, service.name
                    )));
                }
            };
            Ok(EnvVar {
                name: var.name.clone(),
                value: Some(value),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let container = Container {
        name: service.name.clone(),
        image: Some(service.image_ref(&spec.platform.registry, env)),
        image_pull_policy: Some("IfNotPresent".into()),
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
    Ok(Deployment {
        metadata: meta::object_meta(&service.name, Some(&service.name), labels(spec, service)),
        spec: Some(DeploymentSpec {
            replicas: Some(service.replicas_in(env)),
            selector: meta::pod_selector(&service.name),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(labels(spec, service)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn kube_service(spec: &Spec, service: &spec::Service) -> Service {
    Service {
        metadata: meta::object_meta(&service.name, Some(&service.name), labels(spec, service)),
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
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Namespace AND pod selector in one peer: only that service's pods in that service's namespace.
fn service_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(meta::namespace_selector(name)),
        pod_selector: Some(meta::pod_selector(name)),
        ..Default::default()
    }
}

fn network_policies(
    spec: &Spec,
    service: &spec::Service,
    callees: &[(&str, i32)],
) -> Vec<NetworkPolicy> {
    let ns = Some(service.name.as_str());
    let policy =
        |name: &str, pod_selector: LabelSelector, types: &[&str], ingress, egress| NetworkPolicy {
            metadata: meta::object_meta(name, ns, labels(spec, service)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(pod_selector),
                policy_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
                ingress,
                egress,
            }),
        };
    let mut out = vec![
        // Everything in the namespace: nothing in, nothing out, unless allowed below.
        policy(
            "default-deny",
            LabelSelector::default(),
            &["Ingress", "Egress"],
            None,
            None,
        ),
        policy(
            "allow-dns",
            meta::pod_selector(&service.name),
            &["Egress"],
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(meta::namespace_selector("kube-system")),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "k8s-app".to_owned(),
                            "kube-dns".to_owned(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![
                    NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                    tcp(53),
                ]),
            }]),
        ),
    ];
    let mut ingress: Vec<NetworkPolicyIngressRule> = service
        .callers
        .iter()
        .map(|caller| NetworkPolicyIngressRule {
            from: Some(vec![service_peer(&caller.service)]),
            ports: Some(vec![tcp(caller.port)]),
        })
        .collect();
    if service.expose == Expose::LoadBalancer {
        // No `from`: any source, including clients outside the cluster through the load balancer.
        ingress.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(service.ports.iter().map(|p| tcp(p.port)).collect()),
        });
    }
    if !ingress.is_empty() {
        out.push(policy(
            "allow-ingress",
            meta::pod_selector(&service.name),
            &["Ingress"],
            Some(ingress),
            None,
        ));
    }
    if !callees.is_empty() {
        let egress = callees
            .iter()
            .map(|(callee, port)| NetworkPolicyEgressRule {
                to: Some(vec![service_peer(callee)]),
                ports: Some(vec![tcp(*port)]),
            })
            .collect();
        out.push(policy(
            "allow-egress",
            meta::pod_selector(&service.name),
            &["Egress"],
            None,
            Some(egress),
        ));
    }
    out
}

fn pdb(spec: &Spec, service: &spec::Service) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta::object_meta(&service.name, Some(&service.name), labels(spec, service)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(meta::pod_selector(&service.name)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Later rules win: the platform team owns everything, then each team its spec file and manifests.
/// Tenants (RBAC, sync) stay with the platform team, so widening a team's rights needs its review.
fn codeowners(spec: &Spec) -> String {
    let handle = |team: &str| spec.team(team).map_or("", |t| t.github.as_str()).to_owned();
    let mut out = format!(
        "{HEADER}\n# The platform team owns everything; each team owns its service's spec file and workload\n# manifests. Tenant RBAC and sync (flux/tenants/) stay with the platform team.\n* {}\n",
        handle(&spec.platform.owner)
    );
    for service in &spec.services {
        let owner = handle(&service.team);
        out.push_str(&format!("/infra/services/{}.toml {owner}\n", service.name));
        out.push_str(&format!("/flux/apps/{}/ {owner}\n", service.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        render(&Spec::embedded().expect("the shipped spec is valid")).expect("renders")
    }

    fn find<'a>(
        tree: &'a Tree,
        kind: &str,
        namespace: &str,
        name: &str,
        file_part: &str,
    ) -> &'a serde_json::Value {
        tree.objects()
            .find(|(file, v)| {
                file.contains(file_part)
                    && v["kind"] == kind
                    && v["metadata"]["name"] == name
                    && v["metadata"]["namespace"].as_str().unwrap_or("") == namespace
            })
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{kind}/{namespace}/{name} in {file_part}"))
    }

    #[test]
    fn every_generated_object_matches_its_snapshot() {
        let tree = tree();
        for entry in tree.entries() {
            let name = format!(
                "{}__{}",
                entry
                    .file
                    .trim_start_matches("flux/")
                    .replace(['/', '.'], "_"),
                entry.object.describe().replace('/', "_")
            );
            insta::assert_yaml_snapshot!(name, entry.object.value());
        }
        insta::assert_snapshot!(
            "codeowners",
            tree.render().expect("renders")[".github/CODEOWNERS"]
        );
    }

    #[test]
    fn antaeus_points_at_the_provider_service_url() {
        let tree = tree();
        let antaeus = find(&tree, "Deployment", "antaeus", "antaeus", "production");
        let env = &antaeus["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "PAYMENT_PROVIDER_ENDPOINT");
        assert_eq!(
            env["value"],
            "http://payment-provider.payment-provider.svc.cluster.local:9000/v1/charges"
        );
    }

    #[test]
    fn the_provider_admits_antaeus_only_with_namespace_and_pod_selector_in_one_peer() {
        let tree = tree();
        let policy = find(
            &tree,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            "production",
        );
        let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
        assert_eq!(rules.len(), 1);
        let from = rules[0]["from"].as_array().expect("peers");
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "antaeus"
        );
        assert_eq!(
            from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
            "antaeus"
        );
        assert_eq!(rules[0]["ports"][0]["port"], 9000);
    }

    #[test]
    fn antaeus_runs_as_root_only_through_its_exemption_and_stays_otherwise_hardened() {
        let tree = tree();
        let antaeus = find(&tree, "Deployment", "antaeus", "antaeus", "staging");
        let pod = &antaeus["spec"]["template"]["spec"];
        assert!(pod["securityContext"].get("runAsNonRoot").is_none());
        let container = &pod["containers"][0]["securityContext"];
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert_eq!(container["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let provider = find(
            &tree,
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
        let tree = tree();
        let prod = find(
            &tree,
            "Deployment",
            "payment-provider",
            "payment-provider",
            "production",
        );
        let staging = find(
            &tree,
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

    #[test]
    fn a_pod_disruption_budget_exists_only_where_replicas_exceed_one() {
        let files = tree().render().expect("renders");
        assert!(
            files.contains_key("flux/apps/payment-provider/production/pod-disruption-budget.yaml")
        );
        assert!(!files.contains_key("flux/apps/antaeus/production/pod-disruption-budget.yaml"));
    }

    #[test]
    fn the_developer_role_cannot_create_workloads_read_secrets_or_exec() {
        let tree = tree();
        let role = find(&tree, "Role", "antaeus", "developer", "production");
        for rule in role["rules"].as_array().expect("rules") {
            let verbs: Vec<_> = rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            let resources: Vec<_> = rule["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            assert!(
                !verbs.contains(&"create") && !verbs.contains(&"delete") && !verbs.contains(&"*"),
                "{rule}"
            );
            assert!(
                !resources.contains(&"secrets") && !resources.contains(&"pods/exec"),
                "{rule}"
            );
        }
    }

    #[test]
    fn exec_is_granted_only_when_the_spec_says_so() {
        let mut spec = Spec::embedded().expect("the shipped spec is valid");
        spec.services[0].exec = true;
        let tree = render(&spec).expect("renders");
        let role = find(
            &tree,
            "Role",
            &spec.services[0].name,
            "developer",
            "production",
        );
        let exec = role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["resources"][0] == "pods/exec");
        assert_eq!(
            exec.expect("exec rule")["verbs"],
            serde_json::json!(["create", "get"])
        );
        let other = find(
            &tree,
            "Role",
            &spec.services[1].name,
            "developer",
            "production",
        );
        assert!(!other.to_string().contains("pods/exec"));
    }

    #[test]
    fn a_hand_built_spec_with_a_dangling_reference_is_an_error_not_a_panic() {
        let mut spec = Spec::embedded().expect("the shipped spec is valid");
        spec.services[0].team = "nobody".into();
        let err = render(&spec).expect_err("team `nobody` is not declared");
        assert_eq!(
            err.to_string(),
            "the spec refers to something it does not declare: service `antaeus` names team `nobody`, which is not declared"
        );
    }

    #[test]
    fn codeowners_gives_each_team_its_spec_file_and_manifests() {
        let files = tree().render().expect("renders");
        let owners = &files[".github/CODEOWNERS"];
        assert!(owners.contains("\n* @billing-platform/platform\n"));
        assert!(owners.contains("\n/infra/services/antaeus.toml @billing-platform/invoicing\n"));
        assert!(owners.contains("\n/flux/apps/payment-provider/ @billing-platform/payments\n"));
    }

    #[test]
    fn the_platform_kustomizations_chain_and_name_the_controller_account() {
        let tree = tree();
        let tenants = find(
            &tree,
            "Kustomization",
            "flux-system",
            "tenants",
            "clusters/production",
        );
        assert_eq!(tenants["spec"]["dependsOn"][0]["name"], "infrastructure");
        assert_eq!(
            tenants["spec"]["serviceAccountName"],
            "kustomize-controller"
        );
        assert_eq!(tenants["spec"]["prune"], true);
        assert_eq!(tenants["spec"]["wait"], true);
        let sync = find(
            &tree,
            "Kustomization",
            "antaeus",
            "antaeus",
            "tenants/production",
        );
        assert_eq!(sync["spec"]["serviceAccountName"], "flux-reconciler");
        assert_eq!(sync["spec"]["path"], "./flux/apps/antaeus/production");
        // 90 × 10 s startup budget + 2 min: the rollout wait must outlast Antaeus's slow start.
        assert_eq!(sync["spec"]["timeout"], "17m");
    }

    #[test]
    fn a_tenant_source_keeps_only_its_own_directory_level_by_level() {
        assert_eq!(
            only_directory("flux/apps/antaeus/production"),
            "/*\n!/flux/\n/flux/*\n!/flux/apps/\n/flux/apps/*\n!/flux/apps/antaeus/\n/flux/apps/antaeus/*\n!/flux/apps/antaeus/production/\n"
        );
    }

    #[test]
    fn rendering_twice_gives_identical_bytes() {
        assert_eq!(
            tree().render().expect("renders"),
            tree().render().expect("renders")
        );
    }
}
