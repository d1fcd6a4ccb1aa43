//! Spec → typed objects → [`Tree`]: every environment fully rendered, no overlays.
//!
//! Layout (per environment `<env>`):
//! - `flux/clusters/<env>/`: the bootstrap sync (`flux-system`) and the platform Kustomizations
//!   `infrastructure` then `tenants`;
//! - `flux/infrastructure/<env>/`: Namespaces and, under `policies/`, the policy bundle as
//!   ValidatingAdmissionPolicies + Bindings (one file per rule, exemptions in its match conditions);
//! - `flux/tenants/<env>/<service>/`: the Flux tenant, the developer RBAC and the service's sync;
//! - `flux/apps/<service>/<env>/`: the workload, applied as the service's own tenant.

mod network;
mod tenant;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;

use crate::Error;
use crate::flux::{
    DependsOn, GitRef, GitRepository, GitRepositorySpec, Kustomization, KustomizationSpec,
    SourceRef,
};
use crate::meta;
use crate::spec::{self, Spec, rules};
use crate::tree::{HEADER, Object, Tree};
use network::network_policies;
use tenant::{developer_rbac, service_sync, tenant};
pub use workload::service_url;
use workload::{deployment, kube_service, pdb, service_account};

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
    // Compiled once per process (shared with validation and checks); every environment gets the
    // same rules, less those limited to other environments.
    let bundle = policies::Bundle::builtin().map_err(Error::Policy)?;
    let exemptions = spec.policy_exemptions();
    for env in &spec.environments {
        render_environment(spec, &env.name, &mut tree)?;
        admission_policies(spec, &env.name, bundle, &exemptions, &mut tree)?;
    }
    tree.add_text(".github/CODEOWNERS", codeowners(spec))?;
    Ok(tree)
}

/// The policy bundle for `env` as ValidatingAdmissionPolicies + Bindings, one file per rule, in
/// the infrastructure layer: applied before any tenant, so the cluster rejects what verify does.
fn admission_policies(
    spec: &Spec,
    env: &str,
    bundle: &policies::Bundle,
    exemptions: &[policies::Exemption],
    tree: &mut Tree,
) -> Result<(), Error> {
    let platform = &spec.platform;
    let dir = format!("{}/policies", infrastructure_dir(env));
    for (mut policy, mut binding) in bundle
        .admission_objects(env, exemptions)
        .map_err(Error::Policy)?
    {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let labels = meta::labels(&platform.name, &name, &platform.owner);
        policy.metadata.labels = Some(labels.clone());
        binding.metadata.labels = Some(labels);
        let file = format!("{dir}/{}.yaml", name.trim_start_matches("platform-"));
        tree.add_objects(
            env,
            &file,
            vec![Object::new(&policy)?, Object::new(&binding)?],
        )?;
    }
    Ok(())
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

pub(super) fn labels(spec: &Spec, service: &spec::Service) -> BTreeMap<String, String> {
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
pub(super) fn service_timeout_minutes(service: &spec::Service) -> i64 {
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
        // The scanner sees the same exemptions, with the same reasons.
        let skips = antaeus["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        assert!(skips.values().any(|v| {
            v.as_str()
                .is_some_and(|v| v.starts_with("CKV_K8S_23=the stock tinjis image"))
        }));
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
    fn rendering_twice_gives_identical_bytes() {
        assert_eq!(
            tree().render().expect("renders"),
            tree().render().expect("renders")
        );
    }
}
