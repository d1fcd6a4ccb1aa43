//! The pinned components of the e2e: each Go module, its version (the cache key) and the binaries
//! built from it, in build order. Bumping a version is an edit here and
//! `cargo xtask e2e --update-modules`.

/// How to stamp a binary with its version at link time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stamp {
    /// No version variables: the binary reports what its module says.
    None,
    /// Kubernetes components read their version from `-X` variables; unstamped they say
    /// `v0.0.0-master`, and clients (kubectl, Flux's server-side apply) misread the server version.
    Kubernetes,
}

/// One Go module built into one or more binaries.
#[derive(Debug)]
pub struct Component {
    /// The wrapper folder under `e2e/` and the first part of the cache key.
    pub name: &'static str,
    /// The upstream module the wrapper requires.
    pub module: &'static str,
    /// The upstream module version; the second part of the cache key.
    pub version: &'static str,
    /// Binary name and the main package it is built from.
    pub binaries: &'static [(&'static str, &'static str)],
    pub stamp: Stamp,
    /// A module path prefix the checksum database has no entries for (np-guard's modules): those
    /// are trusted on first use and pinned by the committed go.sum instead (GONOSUMDB, that prefix
    /// only).
    pub no_sumdb: Option<&'static str>,
}

/// Kubernetes v1.36.x matches the workspace's k8s-openapi feature `v1_36`.
pub const KUBERNETES_VERSION: &str = "v1.36.3";

/// Every component, in build order (quick ones first, so a missing proxy shows at once).
pub const COMPONENTS: &[Component] = &[
    Component {
        name: "etcd",
        module: "go.etcd.io/etcd/server/v3",
        version: "v3.6.16",
        binaries: &[("etcd", "go.etcd.io/etcd/server/v3")],
        stamp: Stamp::None,
        no_sumdb: None,
    },
    Component {
        name: "kubernetes",
        module: "k8s.io/kubernetes",
        version: KUBERNETES_VERSION,
        binaries: &[
            ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
            (
                "kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
            ),
            ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
            // The real node's agents (`node`): the same module and version as the control plane.
            ("kubelet", "k8s.io/kubernetes/cmd/kubelet"),
            ("kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"),
        ],
        stamp: Stamp::Kubernetes,
        no_sumdb: None,
    },
    Component {
        name: "kwok",
        module: "sigs.k8s.io/kwok",
        version: "v0.8.0",
        binaries: &[("kwok", "sigs.k8s.io/kwok/cmd/kwok")],
        stamp: Stamp::None,
        no_sumdb: None,
    },
    // source-controller and kustomize-controller v1.9.0 are the pair Flux v2.9.0 shipped; later
    // v1.9.x patches need a fluxcd/pkg/artifact patch release the module proxy does not serve.
    Component {
        name: "source-controller",
        module: "github.com/fluxcd/source-controller",
        version: "v1.9.0",
        binaries: &[("source-controller", "github.com/fluxcd/source-controller")],
        stamp: Stamp::None,
        no_sumdb: None,
    },
    Component {
        name: "kustomize-controller",
        module: "github.com/fluxcd/kustomize-controller",
        version: "v1.9.0",
        binaries: &[(
            "kustomize-controller",
            "github.com/fluxcd/kustomize-controller",
        )],
        stamp: Stamp::None,
        no_sumdb: None,
    },
    Component {
        name: "netpol-analyzer",
        module: "github.com/np-guard/netpol-analyzer",
        version: "v1.4.2",
        binaries: &[(
            "netpolicy",
            "github.com/np-guard/netpol-analyzer/cmd/netpolicy",
        )],
        stamp: Stamp::None,
        no_sumdb: Some("github.com/np-guard"),
    },
    // The real node's NetworkPolicy dataplane, firewall only (`kube_router`). v2.1.0 is the only v2
    // the module proxy serves, and security flaws are reported against it: it runs only inside the
    // run's own network namespace, as a test dataplane, never as advice for a cluster.
    Component {
        name: "kube-router",
        module: "github.com/cloudnativelabs/kube-router/v2",
        version: "v2.1.0",
        binaries: &[(
            "kube-router",
            "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",
        )],
        stamp: Stamp::None,
        no_sumdb: None,
    },
    // The CNCF registry: `cargo xtask image --check` and the e2e push the provider's image to it
    // on 127.0.0.1 and pull it back by digest.
    Component {
        name: "registry",
        module: "github.com/distribution/distribution/v3",
        version: "v3.1.2",
        binaries: &[(
            "registry",
            "github.com/distribution/distribution/v3/cmd/registry",
        )],
        stamp: Stamp::None,
        no_sumdb: None,
    },
];
