//! Security-group ordering, IPAM corner cases and planning errors, on small
//! inline topologies.

mod plan_support;

use cnlab::plan::*;
use plan_support::*;

const BASE: &str = r#"
name: t-rules
cluster: {cni: flannel, pod_cidr: 172.16.0.0/16, node_cidr_prefix: 30}
vpc:
  vswitches: [{id: vsw-a, cidr: 10.0.4.0/24}]
  security_groups:
    - id: sg-a
      rules:
        - {direction: ingress, action: accept, proto: tcp, ports: "80,8000-9000", cidr: 10.0.0.0/8, priority: 5}
        - {direction: ingress, action: drop, proto: tcp, ports: 80, cidr: 10.0.3.0/24, priority: 5}
        - {direction: ingress, action: accept, proto: icmp, priority: 2}
        - {direction: egress, action: drop, cidr: 203.0.113.0/24}
    - id: sg-b
      inner_access: drop
      rules:
        - {direction: ingress, action: accept, proto: udp, ports: "53"}
nodes:
  - {name: n1, vswitch: vsw-a, security_groups: [sg-a, sg-b]}
  - {name: n2, vswitch: vsw-a, security_groups: [sg-a]}
kubernetes:
  - {apiVersion: v1, kind: Pod, metadata: {name: p1}, spec: {nodeName: n1}}
  - {apiVersion: v1, kind: Pod, metadata: {name: p2}, spec: {nodeName: n1}}
  - {apiVersion: v1, kind: Pod, metadata: {name: p3, namespace: ops}, spec: {nodeName: n9}}
  - {apiVersion: v1, kind: Pod, metadata: {name: p4}, spec: {}}
  - {apiVersion: v1, kind: Pod, metadata: {name: p5}, spec: {nodeName: n2}}
"#;

fn chain<'a>(nft: &'a str, name: &str) -> Vec<&'a str> {
    let start = nft
        .find(&format!("chain {name} {{"))
        .unwrap_or_else(|| panic!("no chain {name} in {nft}"));
    nft[start..]
        .lines()
        .skip(1)
        .map(str::trim)
        .take_while(|l| *l != "}")
        .collect()
}

#[test]
fn sg_rules_sorted_by_priority_drop_wins_ties_with_comments() {
    let p = plan(&load(BASE), Backends::PORTABLE).unwrap();
    let n1_eni = p.enis.iter().find(|e| e.instance == "n1").unwrap();
    let nft = ns(&p, &format!("eni/{}", n1_eni.id)).nft.clone().unwrap();
    assert_eq!(
        chain(&nft, "ingress"),
        [
            "meta l4proto udp th dport { 53 } counter accept comment \"sg-b rule 0\"",
            "meta l4proto icmp counter accept comment \"sg-a rule 2\"",
            "ip saddr 10.0.3.0/24 meta l4proto tcp th dport { 80 } counter drop comment \"sg-a rule 1\"",
            "ip saddr 10.0.0.0/8 meta l4proto tcp th dport { 80, 8000-9000 } counter accept comment \"sg-a rule 0\"",
            "ip saddr @grp_0 counter accept comment \"sg-a inner_access\"",
            "counter drop comment \"default ingress drop\"",
        ]
    );
    assert_eq!(
        chain(&nft, "egress"),
        [
            "ip daddr 203.0.113.0/24 counter drop comment \"sg-a rule 3\"",
            "ip daddr @grp_0 counter accept comment \"sg-a inner_access\"",
            "counter accept comment \"default egress accept\"",
        ]
    );
    // sg-a's members: both nodes' primary IPs and both pod CIDR slices.
    assert!(
        nft.contains("elements = { 10.0.4.1, 10.0.4.2, 172.16.0.0/29 }"),
        "{nft}"
    );
    assert!(
        !nft.contains("grp_1"),
        "sg-b has inner_access drop: no set, no rule"
    );
    assert_eq!(
        chain(&nft, "forward")[1..],
        [
            "ct state established,related accept",
            "iifname \"inst\" jump egress",
            "iifname \"vpc\" jump ingress"
        ]
    );
}

#[test]
fn ipam_allocates_in_order_and_leaves_pods_pending_with_reasons() {
    let p = plan(&load(BASE), Backends::NATIVE).unwrap();
    assert_eq!(
        p.endpoint("node/n1").unwrap().ip.to_string(),
        "10.0.4.1",
        "first free vSwitch address"
    );
    assert_eq!(
        p.endpoint("pod/default/p1").unwrap().ip.to_string(),
        "172.16.0.2"
    );
    assert_eq!(
        p.endpoint("pod/default/p5").unwrap().ip.to_string(),
        "172.16.0.6"
    );
    let pending: Vec<(String, Option<String>, String)> = p
        .pending
        .iter()
        .map(|x| (x.pod.clone(), x.node.clone(), x.reason.clone()))
        .collect();
    assert_eq!(
        pending,
        [
            (
                "default/p2".into(),
                Some("n1".into()),
                "no IP left in pod CIDR slice 172.16.0.0/30 of node n1".into()
            ),
            (
                "ops/p3".into(),
                Some("n9".into()),
                "node n9 is not in nodes".into()
            ),
            ("default/p4".into(), None, "spec.nodeName is not set".into()),
        ]
    );
    assert!(p.endpoint("pod/default/p2").is_none() && p.ns_index("pod/default/p2").is_none());
    assert!(render(&p)
        .contains("default/p2 on n1: no IP left in pod CIDR slice 172.16.0.0/30 of node n1"));
}

#[test]
fn pinned_pod_ips_are_skipped_by_allocation() {
    let text = BASE
        .replace("node_cidr_prefix: 30", "node_cidr_prefix: 24")
        .replace(
            "{name: p2}, spec: {nodeName: n1}}",
            "{name: p2}, spec: {nodeName: n1}, status: {podIP: 172.16.0.2}}",
        );
    let p = plan(&load(&text), Backends::NATIVE).unwrap();
    assert_eq!(
        p.endpoint("pod/default/p2").unwrap().ip.to_string(),
        "172.16.0.2"
    );
    assert_eq!(
        p.endpoint("pod/default/p1").unwrap().ip.to_string(),
        "172.16.0.3"
    );
}

fn err(text: &str) -> String {
    plan(&load(text), Backends::PORTABLE)
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_the_object() {
    assert_eq!(
        err(&BASE.replace("{name: n2, vswitch: vsw-a", "{name: n2, vswitch: vsw-x")),
        "node/n2: unknown vswitch \"vsw-x\""
    );
    assert_eq!(
        err(&BASE.replace(", pod_cidr: 172.16.0.0/16", "")),
        "cluster.pod_cidr is required for cni flannel"
    );
    let e = err(&BASE.replace("security_groups:\n    - id: sg-a", "route_entries: [{dest: 192.168.9.0/24, next_hop: 10.9.9.9}]\n  security_groups:\n    - id: sg-a"));
    assert_eq!(
        e,
        "route entry 192.168.9.0/24: next hop \"10.9.9.9\" is neither a node nor an ENI address"
    );
    let e = err(&BASE.replace("security_groups: [sg-a]}", "security_groups: [sg-a], ports: [53]}").replace(
        "{name: p5}, spec: {nodeName: n2}}",
        "{name: p5}, spec: {nodeName: n2, hostNetwork: true, containers: [{name: dns, ports: [{containerPort: 53}]}]}}",
    ));
    assert_eq!(
        e,
        "node/n2: port 53 is served by both pod/default/p5 and node/n2"
    );
    let e = err(&BASE
        .replace(
            "{name: n2, vswitch: vsw-a",
            "{name: n2, ip: 10.0.4.1, vswitch: vsw-a",
        )
        .replace("{name: n1, vswitch", "{name: n1, ip: 10.0.4.1, vswitch"));
    assert_eq!(e, "node/n2: address 10.0.4.1 is already used by node/n1");
    let e = err(&BASE.replace("ports: \"53\"", "ports: \"fifty\""));
    assert_eq!(
        e,
        "security group sg-b rule 0: bad port \"fifty\" in \"fifty\""
    );
}

#[test]
fn route_entries_by_ip_and_internet_hosts() {
    let text = BASE.replace("security_groups:\n    - id: sg-a", "route_entries: [{dest: 192.168.9.0/24, next_hop: 10.0.4.2}]\n  security_groups:\n    - id: sg-a")
        + "externals:\n  - {name: internet, ip: 203.0.113.7, internet: true}\n";
    let p = plan(&load(&text), Backends::PORTABLE).unwrap();
    let n2_eni = p
        .enis
        .iter()
        .find(|e| e.instance == "n2")
        .unwrap()
        .id
        .clone();
    assert_eq!(p.route_entries[0].dest.to_string(), "192.168.9.0/24");
    assert_eq!(p.route_entries[0].eni, n2_eni);
    let vpc = ns(&p, "vpc");
    assert!(vpc
        .routes
        .iter()
        .any(|r| render::route_line(r) == "203.0.113.7/32 dev inet0 scope link"));
    assert!(vpc
        .nft
        .as_deref()
        .unwrap()
        .contains("iifname \"inet*\" counter drop"));
    let inet = ns(&p, "external/internet");
    assert_eq!(inet.addrs[0].addr.to_string(), "203.0.113.7/32");
    assert_eq!(
        render::route_line(&inet.routes[0]),
        "default dev eth0 scope link"
    );
    assert!(vpc
        .sysctls
        .contains(&("net/ipv4/conf/inet0/proxy_arp".into(), "1".into())));
}
