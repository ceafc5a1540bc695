//! kube-proxy conformance: every topology under topologies/conformance/
//! kube-proxy/ (kube-proxy's own packet-flow test cases as real packets),
//! run once per proxy mode. The files' `when: {proxy: …}` clauses hold the
//! outcomes that differ by mode; nothing here knows the expected answers.
//! Every case must apply to some mode, and every file must hold in every
//! mode its cluster allows. Needs root.

use std::path::Path;

use cnlab::check;
use cnlab::lab::{Lab, UpOptions};
use cnlab::topology::load_file;
use cnlab::topology::model::ProxyMode;

const DIR: &str = "conformance/kube-proxy";
const MODES: &[ProxyMode] = &[ProxyMode::Ipvs, ProxyMode::Iptables, ProxyMode::Nftables];
/// Files that hold version gates also run at these Kubernetes versions
/// (besides their own `cluster.kubernetes`): their `when: {kubernetes: …}`
/// cases then show the verdict change with real packets.
const ALSO_AT: &[(&str, &[&str])] = &[("traffic-policies-by-version.yaml", &["1.24", "1.25"])];

#[test]
fn kube_proxy_conformance_in_every_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(DIR);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no conformance topologies in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut report = String::new();
    for f in &files {
        let base = match load_file(f) {
            Ok(l) => l.resolved,
            Err(r) => panic!("{r}"),
        };
        let mut applied = vec![false; base.topo.expect.len()];
        let fname = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let mut versions = vec![base.topo.cluster.kubernetes.clone()];
        for (file, extra) in ALSO_AT {
            if *file == fname {
                versions.extend(extra.iter().map(|v| v.to_string()));
            }
        }
        let runs = versions
            .iter()
            .flat_map(|v| MODES.iter().map(move |m| (v.clone(), *m)));
        for (version, mode) in runs {
            let mode = &mode;
            let mut r = base.clone();
            r.topo.cluster.proxy = *mode;
            r.topo.cluster.kubernetes = version.clone();
            let label = format!(
                "{} kubernetes {version} proxy {}",
                f.display(),
                mode.as_str()
            );
            // A mode this version lacks (nftables before 1.29) is refused
            // at validation; say so instead of running it.
            let v = cnlab::plan::proxy::version::ProxyVersion::parse(&version)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            if let Err(why) = cnlab::plan::proxy::driver(*mode).check_version(v) {
                report += &format!("{label}: not run ({why})\n");
                continue;
            }
            let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
            let results = check::run(&lab, &r.topo.expect, 8);
            lab.down();
            assert_eq!(results.len(), r.topo.expect.len(), "{label}");
            let held = results.iter().filter(|x| !x.is_na() && x.passed()).count();
            let na = results.iter().filter(|x| x.is_na()).count();
            report += &format!("{label}: {held}/{} hold\n", results.len() - na);
            for (i, res) in results.iter().enumerate() {
                if !res.is_na() {
                    applied[i] = true;
                }
                if !res.passed() {
                    failures.push(format!("{label}: {}: {:?}", res.expect.name, res.failures));
                }
            }
        }
        for (e, a) in base.topo.expect.iter().zip(&applied) {
            assert!(*a, "{}: {} applies to no proxy mode", f.display(), e.name);
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}
