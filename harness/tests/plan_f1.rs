//! F1 planned without root: what the flannel (ali-vpc) lab consists of.

mod plan_support;

use cnlab::plan::*;
use plan_support::*;
use std::net::Ipv4Addr;

const N1: &str = "cn-hangzhou.10.0.4.20";
const N2: &str = "cn-hangzhou.10.0.4.21";

fn f1() -> LabPlan {
    plan_file("scenarios/f1-flannel-vpc-routes.yaml")
}

fn addr_strings(n: &NsPlan) -> Vec<String> {
    n.addrs
        .iter()
        .map(|a| format!("{} dev {}", a.addr, a.dev))
        .collect()
}

fn route_strings(n: &NsPlan) -> Vec<String> {
    n.routes
        .iter()
        .map(cnlab::plan::render::route_line)
        .collect()
}

#[test]
fn namespaces_are_the_cloud_the_nodes_and_the_pods() {
    let p = f1();
    let mut kinds: Vec<(String, NsKind)> = p
        .namespaces
        .iter()
        .map(|n| (n.key.clone(), n.kind.unwrap()))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    let eni1 = p.enis.iter().find(|e| e.instance == N1).unwrap().id.clone();
    let eni2 = p.enis.iter().find(|e| e.instance == N2).unwrap().id.clone();
    let mut want = vec![
        ("vpc".to_string(), NsKind::Vpc),
        (format!("eni/{eni1}"), NsKind::Eni),
        (format!("eni/{eni2}"), NsKind::Eni),
        (format!("node/{N1}"), NsKind::Node),
        (format!("node/{N2}"), NsKind::Node),
        ("pod/default/client".into(), NsKind::Pod),
        ("pod/default/web".into(), NsKind::Pod),
        ("pod/default/web-local".into(), NsKind::Pod),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(kinds, want);
    assert_eq!(ns(&p, &format!("node/{N1}")).short, format!("n-{N1}"));
    assert_eq!(ns(&p, "pod/default/web-local").short, "p-default-web-local");
}

#[test]
fn enis_are_primary_with_the_node_security_group() {
    let p = f1();
    assert_eq!(p.enis.len(), 2);
    for (e, (node, ip)) in p
        .enis
        .iter()
        .zip([(N1, [10, 0, 4, 20]), (N2, [10, 0, 4, 21])])
    {
        assert_eq!(e.role, EniRole::Primary);
        assert_eq!(e.instance, node);
        assert_eq!(e.ips, vec![Ipv4Addr::from(ip)]);
        assert_eq!(e.security_groups, vec!["sg-bp1node0001".to_string()]);
        assert_eq!(e.vswitch, "vsw-bp1a7d4x2k");
        assert!(e.id.starts_with("eni-") && e.id.len() == 14, "{}", e.id);
        // The ENI's MAC is the node's eth0.
        let node_ns = p.ns_index(&format!("node/{node}")).unwrap();
        let eth0 = p
            .veths
            .iter()
            .flat_map(|v| [&v.a, &v.b])
            .find(|end| end.ns == node_ns && end.name == "eth0")
            .unwrap();
        assert_eq!(eth0.mac, Some(e.mac));
    }
}

#[test]
fn vpc_router_holds_gateway_eni_routes_and_route_entries() {
    let p = f1();
    let vpc = ns(&p, "vpc");
    assert_eq!(addr_strings(vpc), ["10.0.4.253/32 dev lo"]);
    let e1 = &p.enis[0].id;
    let e2 = &p.enis[1].id;
    let routes = route_strings(vpc);
    for want in [
        format!("10.0.4.20/32 dev {e1} scope link"),
        format!("10.0.4.21/32 dev {e2} scope link"),
        format!("172.16.0.0/24 dev {e1} scope link"),
        format!("172.16.1.0/24 dev {e2} scope link"),
    ] {
        assert!(routes.contains(&want), "missing {want} in {routes:#?}");
    }
    let entries: Vec<(String, String, String)> = p
        .route_entries
        .iter()
        .map(|r| (r.dest.to_string(), r.next_hop.clone(), r.eni.clone()))
        .collect();
    assert_eq!(
        entries,
        [
            ("172.16.0.0/24".into(), N1.into(), e1.clone()),
            ("172.16.1.0/24".into(), N2.into(), e2.clone())
        ]
    );
    assert!(vpc
        .sysctls
        .contains(&("net/ipv4/ip_forward".into(), "1".into())));
    assert!(vpc
        .sysctls
        .contains(&("net/ipv4/conf/all/rp_filter".into(), "0".into())));
}

#[test]
fn eni_namespace_is_a_routed_bump_with_proxy_arp() {
    let p = f1();
    let e1 = p.enis[0].id.clone();
    let eni = ns(&p, &format!("eni/{e1}"));
    assert_eq!(
        route_strings(eni),
        [
            "default via 10.0.4.253 dev vpc onlink",
            "default via 10.0.4.20 dev inst table 100 onlink"
        ]
    );
    assert_eq!(eni.rules.len(), 1);
    assert_eq!(
        (
            eni.rules[0].priority,
            eni.rules[0].iif.as_deref(),
            eni.rules[0].table
        ),
        (100, Some("vpc"), 100)
    );
    for link in ["vpc", "inst"] {
        assert!(eni
            .sysctls
            .contains(&(format!("net/ipv4/conf/{link}/proxy_arp"), "1".into())));
        assert!(eni
            .sysctls
            .contains(&(format!("net/ipv4/neigh/{link}/proxy_delay"), "0".into())));
        assert!(eni
            .sysctls
            .contains(&(format!("net/ipv4/conf/{link}/rp_filter"), "0".into())));
    }
    // vpc side named after the ENI, instance side eth0 in the node.
    let eni_idx = p.ns_index(&format!("eni/{e1}")).unwrap();
    let vpc_idx = p.ns_index("vpc").unwrap();
    let node_idx = p.ns_index(&format!("node/{N1}")).unwrap();
    let pairs: Vec<_> = p
        .veths
        .iter()
        .map(|v| ((v.a.ns, v.a.name.as_str()), (v.b.ns, v.b.name.as_str())))
        .collect();
    assert!(pairs.contains(&((vpc_idx, e1.as_str()), (eni_idx, "vpc"))));
    assert!(pairs.contains(&((eni_idx, "inst"), (node_idx, "eth0"))));
    let nft = eni.nft.as_deref().unwrap();
    assert!(nft.contains("table inet cnlab_sg"), "{nft}");
}

#[test]
fn nodes_have_eth0_cni0_and_flannel_masquerade() {
    let p = f1();
    let n1 = ns(&p, &format!("node/{N1}"));
    assert_eq!(
        addr_strings(n1),
        ["10.0.4.20/24 dev eth0", "172.16.0.1/24 dev cni0"]
    );
    assert_eq!(route_strings(n1), ["default via 10.0.4.253 dev eth0"]);
    assert!(n1
        .links
        .iter()
        .any(|l| l.name == "cni0" && l.kind == LinkKind::Bridge));
    let nft = n1.nft.as_deref().unwrap();
    let rules: Vec<&str> = nft
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ip "))
        .collect();
    assert_eq!(
        rules,
        [
            "ip saddr 172.16.0.0/16 ip daddr 172.16.0.0/16 counter return comment \"flannel: pod to pod\"",
            "ip saddr 172.16.0.0/16 ip daddr != 224.0.0.0/4 counter masquerade comment \"flannel: pod to outside\"",
            "ip saddr != 172.16.0.0/16 ip daddr 172.16.0.0/24 counter return comment \"flannel: outside to this node's pods\"",
            "ip saddr != 172.16.0.0/16 ip daddr 172.16.0.0/16 counter masquerade comment \"flannel: outside to another node's pods\"",
        ]
    );
    let n2 = ns(&p, &format!("node/{N2}"));
    assert!(n2
        .nft
        .as_deref()
        .unwrap()
        .contains("ip daddr 172.16.1.0/24 counter return"));
    for s in [
        "net/ipv4/ip_forward",
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/cni0/rp_filter",
        "net/ipv4/conf/eth0/rp_filter",
    ] {
        assert!(n1.sysctls.iter().any(|(k, _)| k == s), "missing {s}");
    }
}

#[test]
fn pods_get_slice_addresses_and_hang_off_cni0() {
    let p = f1();
    let ips: Vec<(String, Ipv4Addr)> = p
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Pod)
        .map(|e| (e.id.to_string(), e.ip))
        .collect();
    assert_eq!(
        ips,
        [
            ("pod/default/client".into(), Ipv4Addr::new(172, 16, 0, 2)),
            ("pod/default/web".into(), Ipv4Addr::new(172, 16, 1, 2)),
            ("pod/default/web-local".into(), Ipv4Addr::new(172, 16, 0, 3)),
        ]
    );
    let pod = ns(&p, "pod/default/web");
    assert_eq!(addr_strings(pod), ["172.16.1.2/24 dev eth0"]);
    assert_eq!(route_strings(pod), ["default via 172.16.1.1 dev eth0"]);
    assert_eq!(
        pod.servers,
        [ServerPlan {
            identity: "pod/default/web".into(),
            port: 80,
            tcp: true,
            udp: false,
            bind: None,
            http: None,
        }]
    );
    let n2 = ns(&p, &format!("node/{N2}"));
    let hv = p
        .points
        .iter()
        .find(|pt| pt.id == "host-veth/default/web")
        .unwrap();
    let veth = hv.ifname.as_deref().unwrap();
    assert!(veth.starts_with("veth") && veth.len() == 12);
    assert_eq!(hv.ns, p.ns_index(&format!("node/{N2}")).unwrap());
    let setting = n2.link_settings.iter().find(|s| s.name == veth).unwrap();
    assert_eq!(setting.master.as_deref(), Some("cni0"));
    assert!(setting.up);
    // kube-flannel.yml: the bridge plugin runs with `"hairpinMode": true`.
    assert!(setting.hairpin, "cni0 ports are in hairpin mode");
}

#[test]
fn observation_points_cover_the_f1_path() {
    let p = f1();
    let e1 = &p.enis[0].id;
    let find = |id: &str| {
        p.points
            .iter()
            .find(|pt| pt.id == id || pt.aliases.iter().any(|a| a == id))
            .unwrap_or_else(|| panic!("no point {id}"))
    };
    for id in [
        "pod/default/client",
        "host-veth/default/client",
        &format!("eth0/{N1}"),
        &format!("eni/primary:{N1}"),
        "vpc",
        &format!("eni/primary:{N2}"),
        &format!("eth0/{N2}"),
        "host-veth/default/web",
        "pod/default/web",
    ] {
        find(id);
    }
    let eni_pt = find(&format!("eni/primary:{N1}"));
    assert_eq!(eni_pt.id, format!("eni/{e1}"));
    assert_eq!(eni_pt.ifname, None);
    assert_eq!(find(&format!("eth0/{N1}")).ifname.as_deref(), Some("eth0"));
    assert!(
        p.points
            .iter()
            .all(|pt| !matches!(pt.id, cnlab::topology::PointId::Node(_))),
        "node/<n> is added by the check layer"
    );
}

#[test]
fn render_reads_like_ip_output() {
    let p = f1();
    let text = render(&p);
    assert!(
        text.contains(&format!("== node/{N1} (cnl-<lab>-n-{N1})")),
        "{text}"
    );
    assert!(text.contains("veth eth0 <-> inst@eni/eni-"), "{text}");
    assert!(text.contains("default via 10.0.4.20 dev inst table 100 onlink"));
    assert!(text.contains("100: from all iif vpc lookup 100"));
    assert!(text.contains("172.16.0.0/24 -> cn-hangzhou.10.0.4.20 (eni-"));
    assert!(text.contains("tcp 80 answers as pod/default/web"));
}
