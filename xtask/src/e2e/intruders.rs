//! Step 8.3, intruders: pods that the tree's NetworkPolicies do not allow to reach the provider
//! get no answer, every time; and the control: with the provider's Flux Kustomization suspended
//! and its policies deleted the first intruder gets through, and once Flux has put them back it
//! is dropped again (both polled: the dataplane takes a while to converge).

use std::time::{Duration, Instant};

use anyhow::bail;

use super::checks::PROVIDER_SERVICE;
use super::drain;
use super::probe_pods::{self, Outcome, ProbePod};
use super::procs::wait_until;
use super::realnode_checks::{CONVERGE, RealRun, Setup, since};
use super::tree::str_at;

/// 3: each intruder is dropped; the control deletes the provider's NetworkPolicies (Flux
/// suspended), the first intruder must then get through, Flux restores them and it is dropped
/// again.
pub fn run(
    run: &RealRun,
    setup: &Setup,
    timeline: &mut Vec<(String, f64)>,
) -> anyhow::Result<String> {
    let mut evidence = Vec::new();
    for intruder in &setup.intruders {
        let (took, how) = wait_dropped(run, intruder, &setup.url)?;
        evidence.push(format!(
            "{} dropped after {took:.1?} ({how})",
            intruder.describe()
        ));
    }
    timeline.push(("every intruder dropped".into(), since(run.node_started)));
    let control = &setup.intruders[0];
    let flux = drain::FluxHold::suspend(run)?;
    run.cluster.kubectl(
        run.sh,
        &["delete", "networkpolicy", "--all", "-n", PROVIDER_SERVICE],
        None,
    )?;
    let through = wait_until(
        &format!(
            "{} to get through without the NetworkPolicies",
            control.describe()
        ),
        CONVERGE,
        || {
            let outcome = probe_pods::charge(
                run.sh,
                run.cluster,
                control,
                &setup.url,
                &["--timeout", "2s"],
            )?;
            Ok(outcome.iter().all(Outcome::is_antaeus_readable))
        },
    )?;
    flux.resume()?;
    let policies = run
        .tree
        .of_kind("NetworkPolicy")
        .into_iter()
        .filter(|p| str_at(p, "/metadata/namespace") == PROVIDER_SERVICE)
        .count();
    wait_until(
        "Flux to restore the provider's NetworkPolicies",
        CONVERGE,
        || {
            let names = run.cluster.kubectl_read(
                run.sh,
                &["get", "networkpolicy", "-n", PROVIDER_SERVICE, "-o", "name"],
            )?;
            Ok(names.lines().count() == policies)
        },
    )?;
    let (again, how) = wait_dropped(run, control, &setup.url)?;
    evidence.push(format!("control: policies deleted → {} got through after {through:.1?}; restored by Flux → dropped again after {again:.1?} ({how})", control.describe()));
    println!("8.3 intruders:");
    for line in &evidence {
        println!("   {line}");
    }
    Ok(format!(
        "{} intruders dropped; without the policies the first got through, restored it was dropped again",
        setup.intruders.len()
    ))
}

/// Polls until a charge from `pod` gets no answer, then asks twice more: dropped means dropped
/// every time, not once.
fn wait_dropped(run: &RealRun, pod: &ProbePod, url: &str) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let mut how = String::new();
    wait_until(
        &format!("{} to be dropped", pod.describe()),
        CONVERGE,
        || {
            let outcome = probe_pods::charge(run.sh, run.cluster, pod, url, &["--timeout", "2s"])?;
            match outcome.first() {
                Some(Outcome::NoAnswer(error)) => {
                    how = error.clone();
                    Ok(true)
                }
                other => bail!(
                    "it got {}",
                    other.map(Outcome::describe).unwrap_or_default()
                ),
            }
        },
    )?;
    let took = started.elapsed();
    let again = probe_pods::charge(
        run.sh,
        run.cluster,
        pod,
        url,
        &["--count", "2", "--timeout", "2s"],
    )?;
    if let Some(reached) = again.iter().find(|o| matches!(o, Outcome::Answered { .. })) {
        bail!(
            "{} was dropped once, then got {}",
            pod.describe(),
            reached.describe()
        );
    }
    Ok((took, how))
}
