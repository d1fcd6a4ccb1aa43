//! A synthetic platform for benchmarks: `services` services across `teams` teams in two
//! environments, with call edges, written as TOML sources so parsing is measured too.

use std::collections::BTreeMap;

use crate::spec::{
    Caller, DigestSource, EnvVar, Environment, ExemptionSpec, Expose, Git, Override, Platform,
    PlatformFile, Port, Probe, Probes, Quantities, Resources, Service, ServiceUrl, SourceFile,
    Team,
};

/// The spec files of a synthetic platform: `(platform.toml, services/*.toml)`.
///
/// Service `k` is called by services `k+1` and `k+7` (mod n) on its port, and reaches service
/// `k-1` through an env var, so every service has two callers and two callees; every tenth is
/// exposed through a load balancer, every fiftieth carries a policy exemption.
pub fn sources(services: usize, teams: usize) -> (SourceFile, Vec<SourceFile>) {
    let teams = teams.max(1);
    let platform = PlatformFile {
        platform: Platform {
            name: "synthetic".into(),
            registry: "ghcr.io/synthetic-org".into(),
            owner: "team-000".into(),
            git: Git {
                url: "https://github.com/synthetic-org/platform".into(),
                branch: "main".into(),
            },
            artifacts: None,
        },
        teams: (0..teams)
            .map(|t| Team {
                name: format!("team-{t:03}"),
                github: format!("@synthetic-org/team-{t:03}"),
                groups: vec![format!("synthetic:team-{t:03}")],
                users: if t % 10 == 0 {
                    vec![format!("lead-{t:03}@synthetic.example")]
                } else {
                    Vec::new()
                },
            })
            .collect(),
        environments: vec![
            Environment {
                name: "production".into(),
                require_digest: true,
                scanner_skips: Vec::new(),
            },
            Environment {
                name: "staging".into(),
                require_digest: false,
                scanner_skips: Vec::new(),
            },
        ],
    };
    let name = |k: usize| format!("svc-{:04}", k % services.max(1));
    let probe = |path: &str| Probe {
        path: path.into(),
        port: 8080,
        initial_delay_seconds: 0,
        period_seconds: 10,
        timeout_seconds: 1,
        failure_threshold: 3,
    };
    let service_files = (0..services)
        .map(|k| {
            let mut callers = Vec::new();
            if services > 1 {
                callers.push(Caller {
                    service: name(k + 1),
                    port: 8080,
                });
            }
            if services > 7 {
                callers.push(Caller {
                    service: name(k + 7),
                    port: 8080,
                });
            }
            let env = if services > 1 {
                vec![EnvVar {
                    name: "UPSTREAM_URL".into(),
                    value: None,
                    service_url: Some(ServiceUrl {
                        service: name(k + services - 1),
                        port: None,
                        path: "/api".into(),
                    }),
                    secret: None,
                }]
            } else {
                Vec::new()
            };
            let service = Service {
                name: name(k),
                team: format!("team-{:03}", k % teams),
                image: name(k),
                tag: format!("1.{}.0", k % 17),
                replicas: 1 + (k % 3) as i32,
                ports: vec![Port {
                    name: "http".into(),
                    port: 8080,
                }],
                resources: Resources {
                    requests: Quantities {
                        cpu: "100m".into(),
                        memory: "128Mi".into(),
                    },
                    limits: Quantities {
                        cpu: "1".into(),
                        memory: "512Mi".into(),
                    },
                },
                probes: Probes {
                    startup: None,
                    liveness: probe("/healthz"),
                    readiness: probe("/readyz"),
                },
                env,
                scratch_dirs: vec!["/tmp".into()],
                run_as_user: Some(65532),
                expose: if k % 10 == 0 {
                    Expose::LoadBalancer
                } else {
                    Expose::Cluster
                },
                callers,
                exec: k % 20 == 0,
                max_replicas: None,
                automount_service_account_token: false,
                policy_exemptions: if k % 50 == 0 {
                    vec![ExemptionSpec {
                        rule: "read-only-root-filesystem".into(),
                        reason: "synthetic exemption".into(),
                        scanner_checks: vec!["CKV_K8S_22".into()],
                    }]
                } else {
                    Vec::new()
                },
                environments: BTreeMap::from([
                    (
                        "production".to_owned(),
                        Override {
                            tag: None,
                            digest: Some(format!("sha256:{:064x}", k)),
                            digest_source: Some(DigestSource::External),
                            digest_reason: Some("synthetic service: no image exists".into()),
                            replicas: Some(2),
                        },
                    ),
                    ("staging".to_owned(), Override::default()),
                ]),
            };
            SourceFile {
                path: format!("services/{}.toml", service.name),
                text: toml::to_string(&service).expect("spec structs serialise to TOML"),
            }
        })
        .collect();
    let platform = SourceFile {
        path: "platform.toml".into(),
        text: toml::to_string(&platform).expect("spec structs serialise to TOML"),
    };
    (platform, service_files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    #[test]
    fn a_synthetic_platform_validates_renders_and_passes_the_checks() {
        let (platform, services) = sources(30, 4);
        let spec = Spec::parse(&platform, &services).expect("synthetic spec is valid");
        assert_eq!(spec.services.len(), 30);
        let tree = crate::render(&spec).expect("renders");
        assert_eq!(crate::checks::run(&tree), Vec::new());
        let deployments = tree.kind_counts()["Deployment"];
        assert_eq!(deployments, 60, "30 services × 2 environments");
    }
}
