//! Each CNI mode's service matrix (F7, F8, M1b…M5b) rests on mechanisms the
//! mode plumbs: a VPC route entry, a vxlan route, a host route to a veth,
//! a policy rule, Terway's masquerade, the IPVLAN tc redirect, a bridge
//! port's hairpin mode, kube-proxy's KUBE-LOOP-BACK masquerade, the
//! `host_stack_cidrs` redirect and veth1 route. For each
//! mode one expectation of its matrix is shown to hold in a live lab, the
//! mechanism it depends on is removed from the running kernel, and the
//! same expectation is probed again: it must no longer hold.
//! Needs root (`sudo -E cargo test -p cnlab-suites --test cni_modes`).

use std::net::Ipv4Addr;
use std::process::Command;

use cnlab::check::{self, CheckResult};
use cnlab::kernel::netlink::Netlink;
use cnlab::kernel::nft;
use cnlab::lab::{Lab, UpOptions};
use cnlab::plan::RoutePlan;
use cnlab::topology::model::ProxyMode;
use cnlab::topology::model::Verdict;
use cnlab::topology::{PointId, Resolved};

const NODE_1: &str = "node/node-1";
const NODE_2: &str = "node/node-2";

fn up(file: &str, adapt: impl FnOnce(&mut Resolved)) -> (Resolved, Lab) {
    assert!(
        cnlab::lab::is_root(),
        "run as root (sudo -E cargo test -p cnlab-suites --test cni_modes)"
    );
    let mut r = cnlab_suites::topology(&format!("scenarios/{file}"));
    adapt(&mut r);
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
    (r, lab)
}

fn probe(lab: &Lab, r: &Resolved, name: &str) -> CheckResult {
    let e = r
        .topo
        .expect
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("the scenario states {name:?}"));
    check::check_one(lab, e)
}

/// `name` holds, `remove` takes its mechanism away, `name` fails, and the
/// verdict (or, with `path_only`, the path) is what changed.
fn flips(file: &str, name: &str, path_only: bool, remove: impl FnOnce(&Lab)) {
    flips_with(file, |_| {}, name, path_only, remove)
}

/// As [`flips`], on the scenario as `adapt` changes it first.
fn flips_with(
    file: &str,
    adapt: impl FnOnce(&mut Resolved),
    name: &str,
    path_only: bool,
    remove: impl FnOnce(&Lab),
) {
    let (r, lab) = up(file, adapt);
    let before = probe(&lab, &r, name);
    assert!(
        before.passed(),
        "{name} must hold before the change: {:?}",
        before.failures
    );
    remove(&lab);
    let after = probe(&lab, &r, name);
    assert!(
        !after.passed(),
        "{name} still holds with its mechanism removed: {}",
        after.observed.outcome.detail
    );
    if path_only {
        assert_eq!(
            after.observed.outcome.verdict, before.observed.outcome.verdict,
            "only the path was meant to change: {:?}",
            after.failures
        );
    } else {
        assert_ne!(
            after.observed.outcome.verdict,
            Verdict::Connected,
            "verdict unchanged: {:?}",
            after.failures
        );
    }
    lab.down();
}

fn pod_ip(lab: &Lab, pod: &str) -> Ipv4Addr {
    lab.plan()
        .endpoint(pod)
        .unwrap_or_else(|| panic!("{pod} has an address"))
        .ip
}

/// Deletes, in namespace `key`, the planned route `pick` chooses.
fn del_route(lab: &Lab, key: &str, pick: impl Fn(&RoutePlan) -> bool) {
    let plan = lab.plan();
    let i = plan
        .ns_index(key)
        .unwrap_or_else(|| panic!("{key} planned"));
    let route = plan.namespaces[i]
        .routes
        .iter()
        .find(|r| pick(r))
        .unwrap_or_else(|| panic!("{key}: no such planned route"))
        .clone();
    lab.netns(i)
        .run(|| Netlink::open()?.del_route(&route))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
}

/// Runs `ip`/`tc` inside namespace `key` of the lab.
fn run_in(lab: &Lab, key: &str, argv: &[&str]) {
    let ns = lab
        .netns_by_key(key)
        .unwrap_or_else(|| panic!("{key} planned"));
    let out = Command::new(argv[0])
        .arg("-n")
        .arg(ns.name())
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv[0]));
    assert!(
        out.status.success(),
        "{argv:?} in {key}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node-side interface of `pod`'s link (`host-veth/<ns>/<name>`).
fn host_veth(lab: &Lab, ns: &str, name: &str) -> String {
    let id = PointId::host_veth(ns, name);
    lab.plan()
        .points
        .iter()
        .find(|p| p.id == id)
        .and_then(|p| p.ifname.clone())
        .unwrap_or_else(|| panic!("{id} planned"))
}

fn delete_nft_table(lab: &Lab, key: &str, table: &str) {
    let ns = lab
        .netns_by_key(key)
        .unwrap_or_else(|| panic!("{key} planned"));
    nft::apply(ns, &format!("delete table ip {table}\n")).unwrap_or_else(|e| panic!("{e}"));
}

/// flannel: node-1's pod subnet is a VPC route entry; without it a pod on
/// node-2 cannot reach web.
#[test]
fn flannel_pod_to_pod_needs_the_vpc_route_entry() {
    flips(
        "f7-flannel-matrix.yaml",
        "F7 pod other node -> pod IP",
        false,
        |lab| {
            let web = pod_ip(lab, "pod/default/web");
            del_route(lab, "vpc", |r| {
                r.dst.prefix_len() == 24 && r.dst.contains(&std::net::IpAddr::V4(web))
            });
        },
    );
}

/// flannel-vxlan: node-2 reaches node-1's subnet only through flannel.1.
#[test]
fn flannel_vxlan_pod_to_pod_needs_the_vtep_route() {
    flips(
        "f8-flannel-vxlan-matrix.yaml",
        "F8 pod other node -> pod IP",
        false,
        |lab| {
            let web = pod_ip(lab, "pod/default/web");
            del_route(lab, NODE_2, |r| {
                r.dev.as_deref() == Some("flannel.1") && r.dst.contains(&std::net::IpAddr::V4(web))
            });
        },
    );
}

/// terway-vpc: the host reaches a pod only by its `podIP/32 dev cali…`.
#[test]
fn terway_vpc_pod_needs_its_host_route() {
    flips(
        "m1b-terway-vpc-matrix.yaml",
        "M1b pod other node -> pod IP",
        false,
        |lab| {
            let web = pod_ip(lab, "pod/default/web");
            del_route(lab, NODE_1, |r| {
                r.dst.to_string() == format!("{web}/32") && r.via.is_none()
            });
        },
    );
}

/// terway-eni: without terway-masq the reply of a pod's service flow goes
/// straight to the pod's own ENI and misses the host's conntrack.
#[test]
fn terway_eni_service_reply_needs_terway_masq() {
    flips(
        "m2b-terway-eni-matrix.yaml",
        "M2b pod same node -> ClusterIP, backend on node-2",
        false,
        |lab| delete_nft_table(lab, NODE_1, "cnlab_terway_masq"),
    );
}

/// terway-eniip: pod traffic leaves by its own ENI because of
/// `2048: from podIP lookup <ENI table>`; without it, by eth0.
#[test]
fn terway_eniip_pod_traffic_needs_its_source_rule() {
    flips(
        "m3b-terway-eniip-matrix.yaml",
        "M3b pod other node -> pod IP",
        true,
        |lab| {
            let client = pod_ip(lab, "pod/default/client-b");
            run_in(
                lab,
                NODE_2,
                &[
                    "ip",
                    "rule",
                    "del",
                    "priority",
                    "2048",
                    "from",
                    &client.to_string(),
                ],
            );
        },
    );
}

/// terway-eniip-ipvlan: the service CIDR reaches the host only through
/// Terway's tc redirect on eth1.
#[test]
fn terway_ipvlan_service_needs_the_tc_redirect() {
    flips(
        "m4b-terway-eniip-ipvlan-matrix.yaml",
        "M4b pod same node -> ClusterIP, backend on node-2",
        false,
        |lab| {
            run_in(
                lab,
                NODE_1,
                &["tc", "filter", "del", "dev", "eth1", "egress"],
            )
        },
    );
}

/// terway-eniip-ipvlan: the reply of a flow DNATed to an ipvlan pod comes
/// back through the host only with the Cilium stand-in's masquerade.
#[test]
fn terway_ipvlan_local_nodeport_reply_needs_the_host_nat() {
    flips(
        "m4b-terway-eniip-ipvlan-matrix.yaml",
        "M4b ECS outside -> NodePort of the Local LB on node-1 (local endpoint)",
        false,
        |lab| delete_nft_table(lab, NODE_1, "cnlab_terway_ipvlan"),
    );
}

/// terway-trunking: the VPC reaches a trunk pod through its member ENI.
#[test]
fn terway_trunking_pod_needs_its_member_eni_route() {
    flips(
        "m5b-terway-trunking-matrix.yaml",
        "M5b pod other node -> pod IP",
        false,
        |lab| {
            let web = pod_ip(lab, "pod/default/web");
            del_route(lab, "vpc", |r| r.dst.to_string() == format!("{web}/32"));
        },
    );
}

/// flannel: web reaches its own Service because the bridge plugin set
/// hairpin on web's cni0 port (kube-flannel.yml `"hairpinMode": true`).
/// Run with kube-proxy in iptables mode: its DNAT happens while the frame is
/// bridged (br_netfilter), so the bridge must send it back out of the port
/// it came in on. (Real IPVS routes the request through the host instead;
/// the lab's IPVS emulation DNATs in prerouting like iptables mode.)
#[test]
fn flannel_hairpin_needs_the_bridge_port_hairpin_mode() {
    flips_with(
        "f7-flannel-matrix.yaml",
        |r| r.topo.cluster.proxy = ProxyMode::Iptables,
        "F7 web itself -> its own Service (hairpin)",
        false,
        |lab| {
            let port = host_veth(lab, "default", "web");
            let ns = lab.netns_by_key(NODE_1).expect("node-1 planned");
            ns.run(|| Netlink::open()?.set_hairpin(&port, false))
                .and_then(|r| r)
                .unwrap_or_else(|e| panic!("{e}"));
        },
    );
}

/// terway-eniip: web reaching its own Service comes back into web with
/// web's own address as the source unless kube-proxy's KUBE-LOOP-BACK
/// masquerades it; web drops it.
#[test]
fn terway_eniip_hairpin_needs_the_loop_back_masquerade() {
    flips(
        "m3b-terway-eniip-matrix.yaml",
        "M3b web itself -> its own Service (hairpin)",
        false,
        |lab| cnlab_suites::delete_nft_rules(lab, NODE_1, "cnlab_kube_proxy", "KUBE-LOOP-BACK"),
    );
}

/// terway-eniip-ipvlan: node-local-dns's 169.254.20.10 is reached through
/// the host only because eni-config `host_stack_cidrs` put it in Terway's tc
/// redirect; the u32 filter for that address alone is deleted from eth1 and
/// the query leaves by the ENI to a VPC with no route for it.
#[test]
fn terway_ipvlan_node_local_dns_needs_host_stack_cidrs() {
    flips(
        "m4b-terway-eniip-ipvlan-matrix.yaml",
        "M4b pod same node -> node-local DNS (host_stack_cidrs)",
        false,
        |lab| {
            let dns = lab
                .plan()
                .namespaces
                .iter()
                .flat_map(|n| &n.addrs)
                .find(|a| a.dev == "nodelocaldns")
                .expect("node-local-dns planned")
                .addr;
            let std::net::IpAddr::V4(ip) = dns.addr() else {
                panic!("{dns}: not IPv4")
            };
            let mask = u32::MAX
                .checked_shl(32 - u32::from(dns.prefix_len()))
                .unwrap_or(0);
            // `tc filter show` prints a u32 key as `match <hex addr>/<hex mask> at 16`.
            let key = format!("match {:08x}/{mask:08x} at 16", u32::from(ip) & mask);
            let ns = lab.netns_by_key(NODE_1).expect("node-1 planned");
            let out = Command::new("tc")
                .args(["-n", ns.name(), "filter", "show", "dev", "eth1", "egress"])
                .output()
                .expect("tc");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut handle = None;
            let mut last = None;
            for line in text.lines() {
                if let Some(fh) = line.split(" fh ").nth(1) {
                    last = fh.split_whitespace().next().map(str::to_string);
                }
                if line.trim() == key {
                    handle = last.clone();
                }
            }
            let handle = handle.unwrap_or_else(|| panic!("no filter {key:?} on eth1:\n{text}"));
            run_in(
                lab,
                NODE_1,
                &[
                    "tc", "filter", "del", "dev", "eth1", "egress", "protocol", "ip", "pref",
                    "40000", "handle", &handle, "u32",
                ],
            );
        },
    );
}

/// terway-eni: with eni-config `host_stack_cidrs` the pod has one more
/// route via veth1 (generateVeth1Cfg extraRoutes); without it the DNS
/// query follows the default route out of the pod's own ENI.
#[test]
fn terway_eni_node_local_dns_needs_the_host_stack_route() {
    flips(
        "m2b-terway-eni-matrix.yaml",
        "M2b pod same node -> node-local DNS (host_stack_cidrs)",
        false,
        |lab| {
            del_route(lab, "pod/default/client-a", |r| {
                r.dst.to_string() == "169.254.20.10/32"
            })
        },
    );
}
