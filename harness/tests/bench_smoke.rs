//! The smallest benchmark (flat, N=3, one run, no Mininet), so `cnlab bench`
//! cannot rot. Root only. Asserts that it completed and that every probe
//! connected — never on time.

use cnlab::bench::{self, BenchOptions, Case};

fn require_root() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("bench_smoke builds a lab from network namespaces: run it as root (sudo -E cargo test -p cnlab --test bench_smoke)");
    }
}

#[test]
fn flat_three_pods_completes_and_every_probe_connects() {
    require_root();
    let opts = BenchOptions {
        cases: vec![Case::Flat],
        sizes: vec![3],
        repeat: 1,
        mininet: false,
        topologies: concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies").into(),
        ..BenchOptions::default()
    };
    let mut lines = Vec::new();
    let report = bench::run(&opts, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(report.cases.len(), 1, "{lines:?}");
    let c = &report.cases[0];
    assert_eq!(c.case, "flat-3");
    assert_eq!(c.probes, 6, "3 pods: 3·2 ordered pairs");
    assert_eq!(c.connected, 6, "first failure: {:?}", c.first_failure);
    assert_eq!(c.passed, 6, "first failure: {:?}", c.first_failure);
    for phase in ["up", "probe", "down", "total"] {
        let row = c.row(phase).unwrap_or_else(|| panic!("no {phase} row"));
        assert_eq!(row.cnlab_ms.len(), 1, "{phase}");
    }
    assert_eq!(c.row("up").unwrap().floor_ms.len(), 1, "the floor ran too");
    assert!(
        c.row("probe").unwrap().mininet_ms.is_empty(),
        "Mininet was off"
    );
    let table = report.to_table();
    assert!(table.contains("flat-3"), "{table}");
    assert!(report.to_json().contains("\"case\": \"flat-3\""));
}
