//! The printed figures of `bench flux`: one line a size as it finishes, then the table of every
//! size, what each initial reconcile and each one-commit change cost, and the growth between
//! sizes.

use std::time::Duration;

use super::{Figures, Phase};

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()))
}

pub(super) fn one_line(f: &Figures) -> String {
    let mut line = format!(
        "{} services: {} GitRepositories and {} OCIRepositories Ready {} s, {}/{} Kustomizations Ready {} s after the bootstrap",
        f.services,
        f.git_repositories,
        f.oci_repositories,
        secs(f.sources_ready),
        f.kustomizations_ready,
        f.kustomizations,
        secs(f.all_ready)
    );
    if let Some(problem) = &f.problem {
        line.push_str(&format!(" ({problem})"));
    }
    line
}

/// The table of every size, then the growth of each figure from the baseline and between the
/// two largest sizes.
pub(crate) fn report(rows: &[Figures]) -> String {
    let mut out = String::from("\n");
    out.push_str(&format!(
        "{:>8} {:>13} {:>6} {:>7} | {:>9} {:>9} | {:>17} | {:>17} | {:>31} | {:>13}\n",
        "services",
        "sources",
        "Ks",
        "objects",
        "sources",
        "all Ks",
        "initial CPU s",
        "steady CPU s/min",
        "steady requests/min",
        "peak RSS MB"
    ));
    out.push_str(&format!(
        "{:>8} {:>13} {:>6} {:>7} | {:>9} {:>9} | {:>17} | {:>17} | {:>31} | {:>13}\n",
        "",
        "git oci",
        "",
        "",
        "Ready s",
        "Ready s",
        "source kustomize",
        "source kustomize",
        "git: adverts packs oci: HEADs blobs",
        "src kust"
    ));
    for f in rows {
        let steady = f.steady.as_ref();
        let per_minute = |value: fn(&Phase) -> f64| {
            steady.map_or("-".to_string(), |p| {
                format!("{:.1}", p.per_minute(value(p)))
            })
        };
        let ready = if f.all_ready.is_some() {
            secs(f.all_ready)
        } else {
            format!("{}/{}", f.kustomizations_ready, f.kustomizations)
        };
        out.push_str(&format!(
            "{:>8} {:>6} {:>6} {:>6} {:>7} | {:>9} {:>9} | {:>8.1} {:>8.1} | {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} | {:>6} {:>6}\n",
            f.services,
            f.git_repositories,
            f.oci_repositories,
            f.kustomizations,
            f.objects,
            secs(f.sources_ready),
            ready,
            f.initial.source.as_secs_f64(),
            f.initial.kustomize.as_secs_f64(),
            per_minute(|p| p.source.as_secs_f64()),
            per_minute(|p| p.kustomize.as_secs_f64()),
            per_minute(|p| (p.fetches.advertisements + p.fetches.ls_refs) as f64),
            per_minute(|p| p.fetches.packs as f64),
            per_minute(|p| p.pulls.manifest_heads as f64),
            per_minute(|p| p.pulls.blob_gets as f64),
            f.peak_rss.0 / 1_000_000,
            f.peak_rss.1 / 1_000_000,
        ));
    }
    out.push('\n');
    for f in rows {
        out.push_str(&format!(
            "{:>6} services: initial reconcile {:.0} s of wall time; git: {} advertisements + {} packs ({:.1} MB); registry: {} manifest HEADs, {} manifest GETs, {} blob GETs ({:.2} MB); readiness polled every {:.0} s{}\n",
            f.services,
            f.initial.wall.as_secs_f64(),
            f.initial.fetches.advertisements + f.initial.fetches.ls_refs,
            f.initial.fetches.packs,
            f.initial.fetches.pack_bytes as f64 / 1e6,
            f.initial.pulls.manifest_heads,
            f.initial.pulls.manifest_gets,
            f.initial.pulls.blob_gets,
            f.initial.pulls.blob_bytes as f64 / 1e6,
            f.poll.as_secs_f64(),
            f.steady.map_or(String::new(), |p| format!(
                "; steady window {:.0} s: {} advertisements, {} packs ({:.1} MB), {} manifest HEADs, {} blob GETs, source-controller {:.1} s CPU ({:.1}% of a core)",
                p.wall.as_secs_f64(),
                p.fetches.advertisements + p.fetches.ls_refs,
                p.fetches.packs,
                p.fetches.pack_bytes as f64 / 1e6,
                p.pulls.manifest_heads,
                p.pulls.blob_gets,
                p.source.as_secs_f64(),
                100.0 * p.source.as_secs_f64() / p.wall.as_secs_f64().max(1e-9),
            )),
        ));
    }
    for f in rows {
        if let Some(c) = &f.commit {
            out.push_str(&format!(
                "{:>6} services: one commit ({}: {} of {} artifacts changed): every source and Kustomization Ready at its new revision {} s after the commit (found by Flux's own polling); git: {} advertisements + {} packs ({:.1} MB); registry: {} manifest HEADs, {} blob GETs ({:.2} MB); CPU source-controller {:.1} s, kustomize-controller {:.1} s\n",
                f.services,
                c.what,
                c.changed_artifacts,
                f.oci_repositories,
                secs(c.all_ready),
                c.phase.fetches.advertisements + c.phase.fetches.ls_refs,
                c.phase.fetches.packs,
                c.phase.fetches.pack_bytes as f64 / 1e6,
                c.phase.pulls.manifest_heads,
                c.phase.pulls.blob_gets,
                c.phase.pulls.blob_bytes as f64 / 1e6,
                c.phase.source.as_secs_f64(),
                c.phase.kustomize.as_secs_f64(),
            ));
        }
    }
    let pairs: Vec<(&Figures, &Figures)> = match rows {
        [] | [_] => Vec::new(),
        [first, last] => vec![(first, last)],
        [first, .., before, last] => vec![(first, last), (before, last)],
    };
    for (small, large) in pairs {
        out.push_str(&growth(small, large));
    }
    out
}

/// `large` against `small`: how many times each figure grew, with the size factor to read it by.
fn growth(small: &Figures, large: &Figures) -> String {
    let ratio = |a: f64, b: f64| {
        if a > 0.0 && b.is_finite() {
            format!("{:.1}x", b / a)
        } else {
            "-".into()
        }
    };
    let time = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    let steady = |f: &Figures, value: fn(&Phase) -> f64| {
        f.steady.map_or(f64::NAN, |p| p.per_minute(value(&p)))
    };
    let adverts = |p: &Phase| (p.fetches.advertisements + p.fetches.ls_refs) as f64;
    let heads = |p: &Phase| p.pulls.manifest_heads as f64;
    let source = |p: &Phase| p.source.as_secs_f64();
    format!(
        "growth {}→{} services ({:.0}x): all Ready {}, initial CPU source {} kustomize {}, steady source CPU/min {}, advertisements/min {}, manifest HEADs/min {}\n",
        small.services,
        large.services,
        large.services as f64 / small.services.max(1) as f64,
        ratio(time(small.all_ready), time(large.all_ready)),
        ratio(
            small.initial.source.as_secs_f64(),
            large.initial.source.as_secs_f64()
        ),
        ratio(
            small.initial.kustomize.as_secs_f64(),
            large.initial.kustomize.as_secs_f64()
        ),
        ratio(steady(small, source), steady(large, source)),
        ratio(steady(small, adverts), steady(large, adverts)),
        ratio(steady(small, heads), steady(large, heads)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::flux::CommitFigures;
    use crate::e2e::git::Fetches;
    use crate::e2e::registry::Pulls;

    fn figures(services: usize, ready: Option<u64>) -> Figures {
        let s = |secs: u64| Duration::from_secs(secs);
        Figures {
            services,
            git_repositories: 1 + services / 10,
            oci_repositories: services,
            kustomizations: services + 2 + services / 5,
            objects: services * 13,
            sources_ready: Some(s(services as u64 / 10)),
            all_ready: ready.map(s),
            kustomizations_ready: services,
            poll: s(2),
            initial: Phase {
                wall: s(100),
                source: s(services as u64 / 10),
                kustomize: s(services as u64 / 5),
                fetches: Fetches {
                    advertisements: services as u64,
                    packs: services as u64,
                    ls_refs: 0,
                    pack_bytes: 1_000_000 * services as u64,
                },
                pulls: Pulls {
                    manifest_heads: services as u64,
                    manifest_gets: services as u64,
                    blob_gets: 2 * services as u64,
                    blob_bytes: 2_000 * services as u64,
                },
            },
            steady: Some(Phase {
                wall: s(120),
                source: s(services as u64 / 20),
                kustomize: s(1),
                fetches: Fetches {
                    advertisements: 2 * services as u64,
                    packs: 0,
                    ls_refs: 0,
                    pack_bytes: 0,
                },
                pulls: Pulls {
                    manifest_heads: 4 * services as u64,
                    ..Pulls::default()
                },
            }),
            commit: Some(CommitFigures {
                what: "svc-0000 replicas 1 → 2".into(),
                changed_artifacts: 1,
                all_ready: Some(s(70)),
                phase: Phase {
                    wall: s(70),
                    source: s(3),
                    kustomize: s(2),
                    fetches: Fetches {
                        advertisements: services as u64 / 10,
                        packs: services as u64 / 10,
                        ls_refs: 0,
                        pack_bytes: 100_000 * services as u64,
                    },
                    pulls: Pulls {
                        manifest_heads: services as u64,
                        manifest_gets: 1,
                        blob_gets: 2,
                        blob_bytes: 3_000,
                    },
                },
            }),
            peak_rss: (80_000_000, 120_000_000),
            problem: None,
        }
    }

    #[test]
    fn steady_figures_are_per_minute_of_the_window() {
        let report = report(&[figures(10, Some(20)), figures(100, Some(60))]);
        // 200 advertisements over a 120 s window: 100 a minute; 5 s of CPU: 2.5 s a minute.
        let row = report
            .lines()
            .find(|l| l.trim_start().starts_with("100 "))
            .expect("a row for 100 services");
        assert!(row.contains("   100.0"), "{row}");
        assert!(row.contains("     2.5"), "{row}");
        assert!(row.contains("60.0"), "{row}");
        assert!(
            report.contains("growth 10→100 services (10x): all Ready 3.0x"),
            "{report}"
        );
        assert!(report.contains("advertisements/min 10.0x"), "{report}");
        assert!(report.contains("100 packs (100.0 MB)"), "{report}");
        // 400 manifest HEADs over the 120 s window: 200 a minute.
        assert!(row.contains("   200.0"), "{row}");
        assert!(
            report.contains(
                "registry: 100 manifest HEADs, 100 manifest GETs, 200 blob GETs (0.20 MB)"
            ),
            "{report}"
        );
    }

    #[test]
    fn a_size_that_did_not_reconcile_shows_how_far_it_got_and_no_ratio() {
        let mut late = figures(1000, None);
        late.kustomizations_ready = 700;
        late.steady = None;
        let report = report(&[figures(10, Some(20)), figures(100, Some(60)), late]);
        let row = report
            .lines()
            .find(|l| l.trim_start().starts_with("1000 "))
            .expect("a row for 1000 services");
        assert!(row.contains("700/1202"), "{row}");
        assert!(
            report.contains("growth 10→1000 services (100x): all Ready -"),
            "{report}"
        );
        assert!(report.contains("growth 100→1000"), "{report}");
        assert!(!report.contains("NaN"), "{report}");
    }
}
