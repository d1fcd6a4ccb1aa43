//! Bring-up of the real node, in order: containerd (with `ghcr.io` mirrored to the run's loopback
//! registry, where the provider's image was pushed under the tree's repository and tag) and the
//! pause image, the kubelet and kube-proxy, kube-router, and the namespace placement that puts
//! the provider's pods on the node. Prints what it did and how long it took.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use xshell::Shell;

use super::cluster::Cluster;
use super::components::Binaries;
use super::containerd::{Containerd, PAUSE_IMAGE};
use super::kube_router;
use super::netns::Inside;
use super::node::{self, RealNode};
use super::node_images;
use super::procs::Processes;
use super::realnode_checks::RealRun;
use super::tree::Tree;

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

/// Starts everything of the node and returns once it is Ready and kube-router filters; `registry`
/// serves the provider's image, whose manifest digest is `digest`.
#[allow(clippy::too_many_arguments)]
pub fn start(
    sh: &Shell,
    bins: &Binaries,
    dir: &Path,
    cluster: &Cluster,
    inside: &Inside,
    registry: SocketAddr,
    digest: &str,
    procs: &mut Processes,
) -> anyhow::Result<NodeRun> {
    let t0 = Instant::now();
    let started = SystemTime::now();
    let containerd = Containerd::start(sh, dir, &registry.to_string(), procs)?;
    containerd
        .import(sh, &node_images::pause_tar(dir), PAUSE_IMAGE)
        .context("importing the pause image into containerd")?;
    let t_containerd = t0.elapsed();
    let real = node::start(sh, cluster, bins, &containerd, inside, procs)?;
    let t_node = t0.elapsed();
    let router = kube_router::start(sh, cluster, bins, &real.name, procs)?;
    let t_router = t0.elapsed();
    node::placement(sh, cluster)?;
    let bring_up = t0.elapsed();
    println!(
        "2b. real node {} Ready ({}, pods {}): containerd + pause {:.1?}, kubelet → Ready {:.1?}, kube-router filtering {:.1?} later ({router:.1?} of it waiting for its chains); bring-up {bring_up:.1?}; ghcr.io pulls go to {registry}",
        real.name,
        real.ip,
        real.pod_cidr,
        t_containerd,
        real.ready_after,
        t_router - t_node,
    );
    Ok(NodeRun {
        node: real,
        containerd,
        digest: digest.to_string(),
        started,
        ready: t_node,
        bring_up,
    })
}
