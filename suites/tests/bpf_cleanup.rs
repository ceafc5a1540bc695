//! No eBPF program outlives its lab. (Its own test binary: cargo runs test
//! binaries one after another, so no other lab loads programs meanwhile.)

use std::collections::BTreeSet;
use std::path::Path;

use cnlab::lab::{Lab, UpOptions};
use cnlab::topology::load_file;

/// Ids of loaded programs that carry one of the lab's program names.
fn lab_programs() -> BTreeSet<u32> {
    const OURS: [&str; 4] = ["trunk_egress", "vlan_pop", "hv_demux", "hv_mux"];
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| OURS.iter().any(|o| n.starts_with(o)))
        })
        .map(|p| p.id())
        .collect()
}

#[test]
fn trunk_programs_are_gone_when_the_lab_is() {
    assert!(cnlab::lab::is_root(), "run as root (sudo -E cargo test)");
    let before = lab_programs();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies/scenarios/t4-trunk-cross-node.yaml");
    let r = load_file(&path).unwrap_or_else(|e| panic!("{e}")).resolved;
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let during: BTreeSet<u32> = lab_programs().difference(&before).copied().collect();
    assert!(!during.is_empty(), "the trunk lab loaded no VLAN program");
    lab.down();
    let left: Vec<u32> = lab_programs().intersection(&during).copied().collect();
    assert!(left.is_empty(), "programs {left:?} outlived their lab");
    assert!(
        !Path::new("/sys/fs/bpf/cnlab").exists()
            || std::fs::read_dir("/sys/fs/bpf/cnlab")
                .map(|mut d| d.next().is_none())
                .unwrap_or(true)
    );
}
