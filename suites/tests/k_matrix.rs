//! The K scenarios as a matrix: one topology file, run for every proxy mode
//! × Kubernetes version × CNI column below. The file's `expect[].when`
//! conditions say which outcomes apply; nothing here knows the expected
//! answers. Adding a version, a mode or a CNI is one line in `RUNS` /
//! `COLUMNS`.
//! Needs root (`sudo -E cargo test -p cnlab-suites --test k_matrix`).

use std::collections::BTreeMap;
use std::path::Path;

use cnlab::check::{self, CheckResult};
use cnlab::lab::{Lab, UpOptions};
use cnlab::topology::load_file;
use cnlab::topology::model::{Cni, ProxyMode};

const FILE: &str = "scenarios/k-local-traffic-policy.yaml";

/// (proxy mode, the Kubernetes versions it runs at): nftables mode exists
/// from 1.29 only.
const RUNS: &[(ProxyMode, &[&str])] = &[
    (ProxyMode::Ipvs, &["1.21", "1.22", "1.23", "1.24", "1.30"]),
    (ProxyMode::Iptables, &["1.23", "1.30"]),
    (ProxyMode::Nftables, &["1.30"]),
];

/// (column name, CNI, backend pods on the host network).
const COLUMNS: &[(&str, Cni, bool)] = &[
    ("flannel", Cni::Flannel, false),
    ("terway-eniip", Cni::TerwayEniip, false),
    ("terway-vpc", Cni::TerwayVpc, false),
    ("hostNetwork", Cni::TerwayVpc, true),
];

fn cell(r: &CheckResult) -> String {
    if r.is_na() {
        return "n/a".into();
    }
    let o = &r.observed.outcome;
    let mut s = if r.observed.error.is_some() {
        "error".to_string()
    } else {
        o.verdict.as_str().to_string()
    };
    if let (Some(seen), Some(local)) = (o.seen_peer, o.local) {
        if seen.ip() == local.ip() {
            s += " client";
        } else {
            s += &format!(" src {}", seen.ip());
        }
    }
    if !r.passed() {
        s += " FAIL";
    }
    s
}

#[test]
fn k_matrix_versions_by_cni() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(FILE);
    let base = match load_file(&path) {
        Ok(l) => l.resolved,
        Err(r) => panic!("{r}"),
    };
    // case name → column → cell
    let mut table: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut columns = Vec::new();
    let mut failures = Vec::new();
    for (mode, versions) in RUNS {
        for version in *versions {
            for (col, cni, host_network) in COLUMNS {
                let mut r = base.clone();
                r.topo.cluster.proxy = *mode;
                r.topo.cluster.kubernetes = version.to_string();
                r.topo.cluster.cni = *cni;
                for p in &mut r.pods {
                    p.spec.host_network = *host_network;
                }
                let column = format!("{} {version} {col}", mode.as_str());
                let lab =
                    Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{column}: {e}"));
                let results = check::run(&lab, &r.topo.expect, 8);
                lab.down();
                assert_eq!(
                    results.len(),
                    r.topo.expect.len(),
                    "{column}: every expectation reported"
                );
                for res in &results {
                    table
                        .entry(res.expect.name.clone())
                        .or_default()
                        .insert(column.clone(), cell(res));
                    if !res.passed() {
                        failures.push(format!("{column}: {}: {:?}", res.expect.name, res.failures));
                    }
                }
                columns.push(column);
            }
        }
    }
    let mut out = String::from("case");
    for c in &columns {
        out += &format!(" | {c}");
    }
    out += "\n";
    for (case, cells) in &table {
        out += &case.split(" (").next().unwrap_or(case).to_string();
        for c in &columns {
            out += &format!(" | {}", cells.get(c).map(String::as_str).unwrap_or("—"));
        }
        out += "\n";
    }
    println!("{out}");
    assert!(
        failures.is_empty(),
        "K matrix failures:\n{}\n{out}",
        failures.join("\n")
    );
    // Every case applies somewhere: a `when` that never matches is a typo.
    for (case, cells) in &table {
        assert!(
            cells.values().any(|c| c != "n/a"),
            "{case} applies to no column"
        );
    }
}
