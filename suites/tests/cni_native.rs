//! Reference CNI plugins that need kernel devices the development host
//! lacks: `ipvlan` on a node's ENI and `vlan` (802.1Q) on it. The kernel
//! matrix runs these in `cnlab vm` (`--include-ignored`, scripts/vm-matrix);
//! on a kernel without the device each test FAILS naming the missing kernel
//! feature and quoting the plugin's own error (never a silent skip).

use std::path::Path;

use cnlab::check::file::check_loaded;
use cnlab::lab::{Lab, UpOptions};
use cnlab::topology::load_str;

const REFERENCE: &str = "/usr/lib/cni";

/// Two nodes, each with its own chain; `web` on node-2, `client` and
/// `web-local` on node-1. Each node's pod subnet is routed to it by a VPC
/// route entry.
fn two_nodes(name: &str, chain1: &str, chain2: &str, expect: &str) -> String {
    format!(
        r#"
name: {name}
description: {name}
cluster:
  cni: plugins
vpc:
  cidr: 10.0.0.0/8
  vswitches: [{{id: vsw-a, cidr: 10.0.4.0/24}}]
  route_entries: [{{dest: 172.22.1.0/24, next_hop: node-1}}, {{dest: 172.22.2.0/24, next_hop: node-2}}]
  security_groups:
    - id: sg-node
      rules:
        - {{direction: ingress, action: accept, cidr: 10.0.0.0/8}}
        - {{direction: ingress, action: accept, cidr: 172.16.0.0/12}}
nodes:
  - {{name: node-1, vswitch: vsw-a, security_groups: [sg-node], cni_plugins: {{bin_dir: {REFERENCE}, conflist: {chain1}}}}}
  - {{name: node-2, vswitch: vsw-a, security_groups: [sg-node], cni_plugins: {{bin_dir: {REFERENCE}, conflist: {chain2}}}}}
kubernetes:
  - {{apiVersion: v1, kind: Pod, metadata: {{name: web}}, spec: {{nodeName: node-2, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - {{apiVersion: v1, kind: Pod, metadata: {{name: web-local}}, spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - {{apiVersion: v1, kind: Pod, metadata: {{name: client}}, spec: {{nodeName: node-1, containers: [{{name: c}}]}}}}
expect:
{expect}
"#
    )
}

fn caps() -> cnlab::kernel::caps::Capabilities {
    assert!(
        cnlab::lab::is_root(),
        "these tests build labs: run them as root"
    );
    assert!(
        Path::new(REFERENCE).join("ipvlan").is_file(),
        "{REFERENCE}/ipvlan missing: install containernetworking-plugins (scripts/setup)"
    );
    cnlab::lab::capabilities().unwrap_or_else(|e| panic!("{e}"))
}

/// The failure a kernel without the device gets: the feature named, and
/// what the plugin itself answered on the report.
fn missing(feature: &str, o: &cnlab::check::file::FileOutcome) -> ! {
    panic!(
        "this kernel ({}) lacks {feature}: the plugin cannot create its device \
         (`cnlab doctor` lists it; the kernel matrix runs this test in cnlab vm). \
         The report said: {:?}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        o.pending
    )
}

fn failures(o: &cnlab::check::file::FileOutcome) -> Vec<String> {
    o.results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {:?}", r.expect.name, r.failures))
        .chain(o.error.iter().cloned())
        .chain(o.pending.iter().cloned())
        .collect()
}

/// `ipvlan` (L3 mode, master = the node's primary ENI `eth0`), a 1.0.0
/// chain on node-1 and a 0.4.0 one on node-2: pods on one node reach each
/// other inside the ipvlan without leaving the node; across nodes the
/// packets leave and enter by the ENIs (the VPC's route entries send each
/// pod subnet to its node) and the server sees the client's own address.
#[test]
#[ignore = "needs the kernel's ipvlan device, absent on the development host: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1"]
fn ipvlan_on_the_node_eni_plumbs_pods_that_connect_with_their_own_source() {
    let caps = caps();
    let chain = |v: &str, subnet: &str, gw: &str| {
        format!("{{cniVersion: {v}, name: ipvl, plugins: [{{type: ipvlan, master: eth0, mode: l3, ipam: {{type: host-local, ranges: [[{{subnet: {subnet}, gateway: {gw}}}]], routes: [{{dst: 0.0.0.0/0}}]}}}}]}}")
    };
    let expect = r#"  - {name: across nodes, from: pod/default/client, to: pod/default/web:80, result: connected, source: client,
     path: [pod/default/client, node/node-1:eth0, eni/primary:node-1, vpc, eni/primary:node-2, node/node-2:eth0, pod/default/web]}
  - {name: same node inside the ipvlan, from: pod/default/client, to: pod/default/web-local:80, result: connected, source: client, avoids: [vpc]}
  - {name: nothing on 8080, from: pod/default/client, to: pod/default/web:8080, result: refused}"#;
    let text = two_nodes(
        "cni-ipvlan-l3",
        &chain("1.0.0", "172.22.1.0/24", "172.22.1.1"),
        &chain("0.4.0", "172.22.2.0/24", "172.22.2.1"),
        expect,
    );
    let o = check_loaded(
        Path::new("cni-ipvlan-l3"),
        load_str(&text, "cni-ipvlan-l3"),
        &UpOptions::default(),
        2,
    );
    if !caps.ipvlan {
        missing("ipvlan (CONFIG_IPVLAN)", &o);
    }
    assert!(o.passed(), "{:#?}", failures(&o));
    assert_eq!(o.results.len(), 3);
}

/// `vlan` (an 802.1Q sub-interface of the node's ENI `eth0`, id 100 on
/// node-1 and 200 on node-2, moved into the pod): ADD plumbs the pods and
/// their `eth0` is that VLAN device on the node's `eth0`. The mock VPC has
/// no member ENI for a VLAN a plugin chose (Terway's trunking assigns
/// those), so nothing answers on VLAN 100: the pod's ARP for its gateway
/// goes unanswered and the probe never leaves the pod (no ENI, no VPC hop).
#[test]
#[ignore = "needs the kernel's 802.1Q (8021q) device, absent on the development host: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1"]
fn vlan_on_the_node_eni_plumbs_pods_whose_eth0_is_the_tagged_device() {
    let caps = caps();
    let chain = |id: u16, subnet: &str, gw: &str| {
        format!("{{cniVersion: 1.0.0, name: vl, plugins: [{{type: vlan, master: eth0, vlanId: {id}, ipam: {{type: host-local, ranges: [[{{subnet: {subnet}, gateway: {gw}}}]], routes: [{{dst: 0.0.0.0/0}}]}}}}]}}")
    };
    let expect = r#"  - {name: nothing answers on VLAN 100, from: pod/default/client, to: pod/default/web:80, result: timeout,
     avoids: [vpc, eni/*]}"#;
    let text = two_nodes(
        "cni-vlan",
        &chain(100, "172.22.1.0/24", "172.22.1.1"),
        &chain(200, "172.22.2.0/24", "172.22.2.1"),
        expect,
    )
    // One pod per VLAN and node: a second sub-interface with the same id
    // on the same parent is refused by the kernel.
    .replace(
        "  - {apiVersion: v1, kind: Pod, metadata: {name: web-local}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}\n",
        "",
    );
    let r = load_str(&text, "cni-vlan")
        .unwrap_or_else(|e| panic!("{e}"))
        .resolved;
    if !caps.vlan {
        let o = check_loaded(
            Path::new("cni-vlan"),
            load_str(&text, "cni-vlan"),
            &UpOptions::default(),
            1,
        );
        missing("802.1Q VLAN devices (CONFIG_VLAN_8021Q)", &o);
    }
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(lab.plan().pending.is_empty(), "{:?}", lab.plan().pending);
    for (pod, id) in [("client", 100), ("web", 200)] {
        let ns = format!("cnl-{}-p-default-{pod}", lab.id());
        let out = std::process::Command::new("ip")
            .args(["-n", &ns, "-d", "link", "show", "eth0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("vlan protocol 802.1Q id {id}")),
            "{pod}: eth0 is not the VLAN {id} device:\n{text}"
        );
    }
    let results = cnlab::check::run(&lab, &r.topo.expect, 1);
    let failed: Vec<_> = results
        .iter()
        .filter(|c| !c.passed())
        .map(|c| format!("{}: {:?}", c.expect.name, c.failures))
        .collect();
    assert!(!results.is_empty() && failed.is_empty(), "{failed:#?}");
    lab.down();
}
