//! `caps::probe` asks the real kernel (root only) and cleans up after itself.

use cnlab::kernel::caps::{self, BackendChoice};
use cnlab::kernel::netns;

fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "kernel tests need root: run them with sudo"
    );
}

#[test]
fn probe_reports_basics_and_leaves_no_namespace() {
    require_root();
    let prefix = format!("cnl-doctor-{}-", std::process::id());
    let c = caps::probe().unwrap();
    assert!(
        netns::list(&prefix).is_empty(),
        "scratch namespace left behind: {:?}",
        netns::list(&prefix)
    );
    // Every kernel cnlab supports has these (this machine and CI runners).
    for (ok, name) in [
        (c.veth, "veth"),
        (c.bridge, "bridge"),
        (c.macvlan, "macvlan"),
        (c.vxlan, "vxlan"),
        (c.nft, "nft"),
        (c.nft_nat, "nft_nat"),
        (c.conntrack, "conntrack"),
        (c.policy_routing, "policy_routing"),
    ] {
        assert!(ok, "{name} not detected: {:?}", c.details);
    }
    // A missing feature is reported as "not supported", not a probe failure;
    // br_netfilter is only asked about ("not loaded"), never loaded.
    for (f, d) in &c.details {
        assert!(
            d.starts_with("ok")
                || d.contains("not supported")
                || f == "cls_bpf"
                || (f == "br_netfilter" && d.starts_with("not loaded")),
            "{f}: {d}"
        );
    }
    let auto = caps::choose(&c, BackendChoice::Auto).unwrap();
    assert_eq!(auto.ipvlan, c.ipvlan);
    assert_eq!(auto.dummy, c.dummy);
    assert_eq!(auto.ipvs, c.ipvs);
    assert_eq!(auto.vlan_devices, c.vlan);
    assert_eq!(auto.br_netfilter, c.br_netfilter);
    let table = caps::render(&c, &auto);
    println!("{table}");
    assert!(table.starts_with("feature"));
}
