//! No eBPF program outlives its lab.

use std::collections::BTreeSet;
use std::path::Path;

use cnlab::lab::{Lab, UpOptions};
use cnlab::topology::load_file;

/// Ids of the eBPF programs this process holds a descriptor of
/// (`/proc/self/fdinfo` of every `anon_inode:bpf-prog`). Other processes'
/// labs, running meanwhile, are not counted.
fn own_programs() -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf-prog")
        })
        .filter_map(|e| {
            std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .ok()
        })
        .filter_map(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("prog_id:")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .collect()
}

fn loaded_programs() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| p.id())
        .collect()
}

#[test]
fn trunk_programs_are_gone_when_the_lab_is() {
    assert!(cnlab::lab::is_root(), "run as root (sudo -E cargo test)");
    let before = own_programs();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies/scenarios/t4-trunk-cross-node.yaml");
    let r = load_file(&path).unwrap_or_else(|e| panic!("{e}")).resolved;
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let ours: BTreeSet<u32> = own_programs().difference(&before).copied().collect();
    if lab.plan().backends.vlan_devices {
        // 802.1Q sub-interfaces carry the VLANs: no program may be loaded.
        assert!(
            ours.is_empty(),
            "the native VLAN backend loaded eBPF programs {ours:?}"
        );
        lab.down();
        return;
    }
    assert!(!ours.is_empty(), "the trunk lab loaded no VLAN program");
    assert!(
        ours.is_subset(&loaded_programs()),
        "the kernel lists the lab's programs while it runs"
    );
    lab.down();
    // The kernel frees a program after an RCU grace period: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut left: Vec<u32> = loaded_programs().intersection(&ours).copied().collect();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = loaded_programs().intersection(&ours).copied().collect();
    }
    assert!(left.is_empty(), "programs {left:?} outlived their lab");
    let pins = Path::new(cnlab::lab::registry::BPF_PIN_DIR);
    assert!(
        !pins.exists()
            || std::fs::read_dir(pins)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true),
        "pins left in {}",
        pins.display()
    );
}
