//! Native backends carry the packets themselves: 802.1Q sub-interfaces tag
//! the trunk, pods' eth0 are ipvlan children, kube-proxy's Services are
//! IPVS virtual servers. These need a kernel with 8021q, ipvlan, dummy and
//! IPVS; `CNLAB_VM_MATRIX=1 scripts/test` runs them on Debian kernels in `cnlab vm`
//! (`--include-ignored`), the development host has none of them.

use cnlab::check;
use cnlab::kernel::caps::BackendChoice;
use cnlab::lab::{Lab, UpOptions};
use cnlab::plan::podeni::podenis;
use cnlab::topology::model::Proto;

fn native_lab(rel: &str) -> (Lab, cnlab::topology::Resolved) {
    let r = cnlab_suites::topology(&format!("scenarios/{rel}"));
    let opts = UpOptions {
        backend: BackendChoice::Native,
        ..UpOptions::default()
    };
    let lab = Lab::up(&r, &opts).unwrap_or_else(|e| panic!("{rel} with --backend native: {e}"));
    (lab, r)
}

/// `ip -d -j link` inside a lab namespace.
fn links(ns: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-d", "-j", "link", "show"])
        .output()
        .unwrap_or_else(|e| panic!("ip -n {ns} -d -j link: {e}"));
    assert!(
        out.status.success(),
        "ip -n {ns} -d link: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ip -j output: {e}"))
}

fn kind(l: &serde_json::Value) -> &str {
    l["linkinfo"]["info_kind"].as_str().unwrap_or("")
}

/// The tag a capture on `trunk/<node>` decodes is the id of a real 802.1Q
/// sub-interface in that node, and no eBPF program is involved.
#[test]
#[ignore = "needs 802.1Q sub-interfaces: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1, whose kernels have it"]
fn trunk_tags_come_from_vlan_sub_interfaces() {
    let (lab, _) = native_lab("t4-trunk-cross-node.yaml");
    assert!(
        lab.plan().backends.vlan_devices,
        "native plan uses VLAN devices"
    );
    let records = podenis(lab.plan());
    let client = records
        .iter()
        .find(|p| p.pod == "trunking/centos")
        .expect("centos has a PodENI");
    let server = records
        .iter()
        .find(|p| p.pod == "trunking/nginx-a")
        .expect("nginx-a has a PodENI");
    let o = check::observe(
        &lab,
        "native-vlan",
        "pod/trunking/centos",
        "pod/trunking/nginx-a:80",
        Proto::Tcp,
        check::DEFAULT_DEADLINE,
        true,
    );
    for (rec, hops, dir) in [(client, &o.request, "request"), (server, &o.reply, "reply")] {
        let point = format!("trunk/{}", rec.instance_id);
        let tag = hops.iter().find(|h| h.point == point).and_then(|h| h.vlan);
        assert_eq!(tag, Some(rec.vlan_id), "{dir} on {point}; hops {hops:?}");
        let node = lab
            .netns_by_key(&format!("node/{}", rec.instance_id))
            .unwrap_or_else(|| panic!("no namespace for node {}", rec.instance_id));
        let vlans: Vec<u64> = links(node.name())
            .iter()
            .filter(|l| kind(l) == "vlan")
            .filter_map(|l| l["linkinfo"]["info_data"]["id"].as_u64())
            .collect();
        assert!(
            vlans.contains(&u64::from(rec.vlan_id)),
            "node {} has 802.1Q sub-interfaces {vlans:?}, none with id {}",
            rec.instance_id,
            rec.vlan_id
        );
    }
    lab.down();
}

/// In ENIIP ipvlan mode every pod's eth0 is an ipvlan L2 child of its
/// node's ENI, and the pods reach each other through them.
#[test]
#[ignore = "needs ipvlan: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1, whose kernels have it"]
fn eniip_ipvlan_pods_are_ipvlan_children() {
    let (lab, r) = native_lab("m4-terway-eniip-ipvlan.yaml");
    let pods: Vec<String> = lab
        .namespace_names()
        .iter()
        .filter(|n| n.contains("-p-"))
        .cloned()
        .collect();
    assert!(!pods.is_empty(), "m4 has pods");
    for ns in &pods {
        let eth0 = links(ns)
            .into_iter()
            .find(|l| l["ifname"] == "eth0")
            .unwrap_or_else(|| panic!("{ns} has no eth0"));
        assert_eq!(kind(&eth0), "ipvlan", "{ns}: eth0 is {eth0}");
        assert_eq!(
            eth0["linkinfo"]["info_data"]["mode"].as_str(),
            Some("l2"),
            "{ns}: {eth0}"
        );
    }
    for res in check::run(&lab, &r.topo.expect, 4) {
        assert!(res.passed(), "{}: {:?}", res.expect.name, res.failures);
    }
    lab.down();
}

/// With kube-proxy in IPVS mode every node's kernel holds a virtual server
/// for each Service port (`ipvsadm -Ln` inside the node), and kube-ipvs0
/// is a real dummy device.
#[test]
#[ignore = "needs IPVS and dummy: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1, whose kernels have it"]
fn ipvsadm_lists_the_services_on_every_node() {
    let (lab, _) = native_lab("c1-c4-clb-bound-to-kube-ipvs0.yaml");
    assert!(lab.plan().backends.ipvs, "native plan uses IPVS");
    let nodes: Vec<String> = lab
        .plan()
        .proxy_nodes
        .iter()
        .map(|p| p.node.clone())
        .collect();
    assert!(!nodes.is_empty(), "c1-c4 has nodes running kube-proxy");
    for node in &nodes {
        let ns = lab
            .netns_by_key(&format!("node/{node}"))
            .unwrap_or_else(|| panic!("no namespace for node {node}"));
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns.name(), "ipvsadm", "-Ln"])
            .output()
            .unwrap_or_else(|e| panic!("ipvsadm in {node}: {e}"));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ipvsadm -Ln in {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for svc in &lab.plan().services {
            let Some(ip) = svc.cluster_ip else { continue };
            for p in svc.ports.iter().filter(|p| p.protocol == Proto::Tcp) {
                let want = format!("TCP  {ip}:{} ", p.port);
                assert!(
                    table.contains(&want),
                    "node {node}: no virtual server {want}for {}/{} in\n{table}",
                    svc.ns,
                    svc.name
                );
            }
        }
        let ipvs0 = links(ns.name())
            .into_iter()
            .find(|l| l["ifname"] == "kube-ipvs0")
            .unwrap_or_else(|| panic!("{node} has no kube-ipvs0"));
        assert_eq!(kind(&ipvs0), "dummy", "{node}: kube-ipvs0 is {ipvs0}");
    }
    lab.down();
}

/// terway-eniip-ipvlan on real IPVS: IPVS leaves no NAT status in conntrack
/// (`ip_vs_update_conntrack` only rewrites the reply tuple), so the Cilium
/// stand-in's `ct status dnat` rules never see its flows; the rules keyed on
/// "first packet addressed to the host" (ct mark 0x2000) carry them. Both
/// cells hold, the two rules are deleted, both time out: the backend answers
/// the client straight over ipvlan/eth1, bypassing the host's conntrack.
#[test]
#[ignore = "needs ipvlan and IPVS: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1, whose kernels have them"]
fn eniip_ipvlan_service_replies_under_real_ipvs_need_the_host_flow_masquerade() {
    let (lab, r) = native_lab("m4b-terway-eniip-ipvlan-matrix.yaml");
    assert!(lab.plan().backends.ipvs, "native plan uses IPVS");
    let cells = [
        "M4b pod same node -> ClusterIP, backend on node-1",
        "M4b ECS outside -> NodePort of the Local LB on node-1 (local endpoint)",
    ];
    let probe = |name: &str| {
        let e = r
            .topo
            .expect
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("m4b states {name:?}"));
        check::check_one(&lab, e)
    };
    for name in cells {
        let res = probe(name);
        assert!(res.passed(), "{name}: {:?}", res.failures);
    }
    for comment in [
        "cilium stand-in: a pod's flow IPVS translated answers through the host",
        "cilium stand-in: a flow IPVS sent to a pod answers through the host",
    ] {
        cnlab_suites::delete_nft_rules(&lab, "node/node-1", "cnlab_terway_ipvlan", comment);
    }
    for name in cells {
        let res = probe(name);
        assert_ne!(
            res.observed.outcome.verdict,
            cnlab::topology::model::Verdict::Connected,
            "{name} still connects without the host-flow masquerade: {}",
            res.observed.outcome.detail
        );
    }
    lab.down();
}

/// kube-proxy's own IPVS unit-test facts (pkg/proxy/ipvs/proxier_test.go
/// TestNodePortIPv4, re-expressed in
/// topologies/conformance/kube-proxy/ipvs-virtual-servers.yaml): node-a's
/// kernel holds these virtual servers, scheduler rr, with exactly these
/// real servers (`ipvsadm -Ln` inside the node). The addresses are the
/// upstream case's (endpoints as that file says it adapts them).
#[test]
#[ignore = "needs IPVS and dummy: scripts/test runs it in cnlab vm on Debian 6.12 and 6.1, whose kernels have it"]
fn ipvsadm_matches_the_upstream_proxier_test_cases() {
    use std::collections::{BTreeMap, BTreeSet};
    let rel = "conformance/kube-proxy/ipvs-virtual-servers.yaml";
    let r = cnlab_suites::topology(rel);
    let opts = UpOptions {
        backend: BackendChoice::Native,
        ..UpOptions::default()
    };
    let lab = Lab::up(&r, &opts).unwrap_or_else(|e| panic!("{rel} with --backend native: {e}"));
    let ns = lab.netns_by_key("node/node-a").expect("node-a");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ipvsadm", "-Ln"])
        .output()
        .unwrap_or_else(|e| panic!("ipvsadm: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ipvsadm -Ln: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "TCP  10.20.30.41:80 rr" → {"10.180.0.2:80"}
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [proto @ ("TCP" | "UDP"), addr, rest @ ..] => {
                let key = format!("{proto} {addr} {}", rest.join(" "));
                listed.entry(key.clone()).or_default();
                current = Some(key);
            }
            ["->", rs, ..] if *rs != "RemoteAddress:Port" => {
                if let Some(k) = &current {
                    listed.get_mut(k).unwrap().insert(rs.to_string());
                }
            }
            _ => {}
        }
    }
    let want: &[(&str, &[&str])] = &[
        // "1 service with node port, has 2 endpoints" (one is IPv6)
        ("TCP 10.20.30.41:80 rr", &["10.180.0.2:80"]),
        ("TCP 100.101.102.103:30001 rr", &["10.180.0.2:80"]),
        // "1 UDP service with node port, has endpoints"
        ("UDP 10.20.30.42:80 rr", &["10.180.0.3:80"]),
        ("UDP 100.101.102.103:30002 rr", &["10.180.0.3:80"]),
        // "service has node port but no endpoints"
        ("TCP 10.20.30.43:80 rr", &[]),
        ("TCP 100.101.102.103:30003 rr", &[]),
        // "… externalTrafficPolicy local" (SCTP upstream, TCP here)
        ("TCP 10.20.30.44:80 rr", &["10.180.0.4:80", "10.180.1.2:80"]),
        ("TCP 100.101.102.103:30004 rr", &["10.180.0.4:80"]),
    ];
    for (vs, rs) in want {
        let want: BTreeSet<String> = rs.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            listed.get(*vs),
            Some(&want),
            "virtual server {vs}: real servers in node-a's ipvsadm -Ln:\n{text}"
        );
    }
    // Nothing else on the ClusterIPs or the node IP the cases name.
    for vs in listed.keys() {
        let on_case_address = vs.contains(" 10.20.30.") || vs.contains(" 100.101.102.103:");
        assert!(
            !on_case_address || want.iter().any(|(w, _)| w == vs),
            "unexpected virtual server {vs} in:\n{text}"
        );
    }
    lab.down();
}
