//! Bring-up of the real node, in order: containerd (with `ghcr.io` mirrored to the run's loopback
//! registry) and the pause image, the kubelet and kube-proxy, kube-router, the loopback registry
//! with the provider's image pushed under the tree's repository and tag, and the namespace
//! placement that puts the provider's pods on the node. Prints what it did and how long it took.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use xshell::Shell;

use super::cluster::Cluster;
use super::components::Binaries;
use super::containerd::{Containerd, PAUSE_IMAGE};
use super::netns::Inside;
use super::node::{self, RealNode};
use super::node_images;
use super::procs::{Processes, free_port};
use super::realnode_checks::RealRun;
use super::tree::Tree;
use super::{kube_router, tree};

/// A started node and what the checks need from the bring-up.
pub struct NodeRun {
    pub node: RealNode,
    pub containerd: Containerd,
    pub digest: String,
    pub started: SystemTime,
    /// From the start of the bring-up to the node's Ready condition.
    pub ready: Duration,
    pub bring_up: Duration,
}

impl NodeRun {
    pub fn checks<'a>(
        &'a self,
        sh: &'a Shell,
        cluster: &'a Cluster,
        tree: &'a Tree,
    ) -> RealRun<'a> {
        RealRun {
            sh,
            cluster,
            tree,
            node: &self.node,
            containerd: &self.containerd,
            digest: self.digest.clone(),
            node_started: self.started,
            node_ready: self.ready,
        }
    }
}

/// Starts everything of the node and returns once it is Ready, kube-router filters and the image
/// is in the registry.
pub fn start(
    sh: &Shell,
    bins: &Binaries,
    dir: &Path,
    cluster: &Cluster,
    inside: &Inside,
    tree: &Tree,
    procs: &mut Processes,
) -> anyhow::Result<NodeRun> {
    let t0 = Instant::now();
    let started = SystemTime::now();
    let registry_port = free_port()?;
    let registry = format!("127.0.0.1:{registry_port}");
    let containerd = Containerd::start(sh, dir, &registry, procs)?;
    containerd
        .import(sh, &node_images::pause_tar(dir), PAUSE_IMAGE)
        .context("importing the pause image into containerd")?;
    let t_containerd = t0.elapsed();
    let real = node::start(sh, cluster, bins, &containerd, inside, procs)?;
    let t_node = t0.elapsed();
    let router = kube_router::start(sh, cluster, bins, &real.name, procs)?;
    let t_router = t0.elapsed();
    let reference = provider_reference(tree)?;
    let digest = node_images::publish(sh, bins, dir, registry_port, &reference, procs)?;
    node::placement(sh, cluster)?;
    let bring_up = t0.elapsed();
    println!(
        "2b. real node {} Ready ({}, pods {}): containerd + pause {:.1?}, kubelet → Ready {:.1?}, kube-router filtering {:.1?} later ({router:.1?} wait), image {} pushed to {registry} ({:.1?}); bring-up {bring_up:.1?}",
        real.name,
        real.ip,
        real.pod_cidr,
        t_containerd,
        real.ready_after,
        t_router - t_node,
        digest,
        bring_up - t_router,
    );
    Ok(NodeRun {
        node: real,
        containerd,
        digest,
        started,
        ready: t_node,
        bring_up,
    })
}

/// The provider image reference of the tree (`ghcr.io/billing-platform/payment-provider:0.1.0`,
/// with `@sha256:…` in production).
fn provider_reference(tree: &Tree) -> anyhow::Result<String> {
    tree.of_kind("Deployment")
        .into_iter()
        .find(|d| tree::str_at(d, "/metadata/namespace") == super::checks::PROVIDER_SERVICE)
        .map(|d| tree::str_at(d, "/spec/template/spec/containers/0/image").to_string())
        .filter(|image| !image.is_empty())
        .context("the tree has no payment-provider Deployment with an image")
}
