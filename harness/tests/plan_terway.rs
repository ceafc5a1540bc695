//! Terway ENI, ENIIP (veth, ipvlan) and trunking plans, without root, for
//! both backend sets.

mod plan_support;

use cnlab::plan::podeni::podenis;
use cnlab::plan::*;
use cnlab::topology::model::EniLimits;
use plan_support::*;
use std::net::Ipv4Addr;

const BOTH: [Backends; 2] = [Backends::NATIVE, Backends::PORTABLE];

fn plan_of(rel: &str, b: Backends) -> LabPlan {
    plan(&load_file(rel), b).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Names fit, every referenced link exists (adopted links count), for
/// every terway scenario and both backends.
#[test]
fn terway_plans_are_well_formed() {
    for f in shipped().into_iter().filter(|f| {
        f.contains("/t")
            || f.contains("/m2")
            || f.contains("/m3")
            || f.contains("/m4")
            || f.contains("/m5")
    }) {
        for b in BOTH {
            let p = plan_of(&f, b);
            for (i, ns) in p.namespaces.iter().enumerate() {
                let mut links = links_of(&p, i);
                links.extend(ns.adopted_links.iter().map(|a| a.link.name.clone()));
                for n in &links {
                    assert!(n.len() <= 15, "{f}: {} {n}", ns.key);
                }
                let mut refs: Vec<String> = ns.addrs.iter().map(|a| a.dev.clone()).collect();
                refs.extend(ns.routes.iter().filter_map(|r| r.dev.clone()));
                refs.extend(ns.neighs.iter().map(|n| n.dev.clone()));
                refs.extend(ns.link_settings.iter().map(|s| s.name.clone()));
                for r in refs {
                    assert!(
                        links.contains(&r),
                        "{f} {b:?}: {} references missing {r}",
                        ns.key
                    );
                }
                for a in &ns.adopted_links {
                    let LinkKind::Ipvlan { parent } = &a.link.kind else {
                        panic!("{f}: adopted {:?}", a.link)
                    };
                    assert!(
                        links_of(&p, a.parent_ns).contains(parent),
                        "{f}: parent {parent} missing"
                    );
                }
            }
        }
    }
}

#[test]
fn eni_mode_pod_owns_its_eni_and_overflow_is_pending() {
    for b in BOTH {
        let p = plan_of("scenarios/m2-terway-eni.yaml", b);
        let centos = p
            .enis
            .iter()
            .find(|e| e.pod.as_deref() == Some("default/centos"))
            .unwrap();
        assert_eq!(centos.role, EniRole::Pod);
        assert_eq!(centos.ips, vec![ip("10.0.4.27")]);
        let eni_ns = ns(&p, &format!("eni/{}", centos.id));
        assert!(eni_ns.nft.as_deref().unwrap().contains("sg-node"));
        let pod = ns(&p, "pod/default/centos");
        assert!(pod.routes.iter().any(|r| r.dev.as_deref() == Some("eth0")
            && r.via == Some(ip("10.0.4.253"))
            && r.onlink));
        assert!(pod
            .routes
            .iter()
            .any(|r| r.dev.as_deref() == Some("veth1") && r.dst.to_string() == "192.168.0.0/16"));
        assert!(pod
            .routes
            .iter()
            .any(|r| r.dev.as_deref() == Some("veth1") && r.dst.to_string() == "10.0.4.20/32"));
        assert_eq!(p.pending.len(), 1);
        assert_eq!(p.pending[0].pod, "default/overflow");
        assert_eq!(
            p.pending[0].reason,
            "no free ENI on node cn-hongkong.10.0.4.20"
        );
    }
}

#[test]
fn eniip_policy_routes_each_pod_out_of_its_eni() {
    let p = plan_of("scenarios/m3-terway-eniip.yaml", Backends::PORTABLE);
    let node = ns(&p, "node/cn-hongkong.10.0.4.20");
    // busybox is the third pod: 2 IPs per ENI put it on eth2 (table 1002).
    let busy = ip("10.0.4.24");
    assert!(node.rules.iter().any(|r| r.priority == 512
        && r.to.map(|t| t.addr()) == Some(busy.into())
        && r.table == TABLE_MAIN));
    assert!(node.rules.iter().any(|r| r.priority == 2048
        && r.from.map(|t| t.addr()) == Some(busy.into())
        && r.table == 1002));
    assert!(node.routes.iter().any(|r| r.table == 1002
        && r.dev.as_deref() == Some("eth2")
        && r.via == Some(ip("10.0.4.253"))
        && r.onlink));
    let secondary: Vec<_> = p
        .enis
        .iter()
        .filter(|e| e.role == EniRole::Secondary && e.instance == "cn-hongkong.10.0.4.20")
        .collect();
    assert_eq!(secondary.len(), 2);
    assert_eq!(secondary[0].ips, vec![ip("10.0.4.27"), ip("10.0.4.30")]);
    // The VPC routes every secondary IP to its ENI.
    let vpc = ns(&p, "vpc");
    assert!(vpc
        .routes
        .iter()
        .any(|r| r.dst.to_string() == "10.0.4.30/32"
            && r.dev.as_deref() == Some(secondary[0].id.as_str())));
}

#[test]
fn eniip_capacity_is_enis_minus_one_times_ips() {
    let mut r = load_file("scenarios/m3-terway-eniip.yaml");
    let mut extra = r.pods[0].clone();
    for k in 0..3 {
        extra.metadata.name = format!("more-{k}");
        extra.status.pod_ip = None;
        r.pods.push(extra.clone());
    }
    let p = plan(&r, Backends::PORTABLE).unwrap();
    // Node .20: (3 − 1) × 2 = 4 pods; it has 3, so one more fits, two pend.
    let pend: Vec<_> = p
        .pending
        .iter()
        .map(|x| (x.pod.as_str(), x.reason.as_str()))
        .collect();
    assert_eq!(
        pend,
        [
            (
                "default/more-1",
                "no free ENI on node cn-hongkong.10.0.4.20"
            ),
            (
                "default/more-2",
                "no free ENI on node cn-hongkong.10.0.4.20"
            )
        ]
    );
    assert!(p.endpoint("pod/default/more-0").is_some());
}

#[test]
fn ipvlan_pod_eth0_is_a_child_of_the_eni() {
    for b in BOTH {
        let p = plan_of("scenarios/m4-terway-eniip-ipvlan.yaml", b);
        let pod = ns(&p, "pod/default/centos");
        assert_eq!(pod.adopted_links.len(), 1);
        let a = &pod.adopted_links[0];
        assert_eq!(a.link.name, "eth0");
        assert_eq!(
            a.link.kind,
            LinkKind::Ipvlan {
                parent: "eth1".into()
            }
        );
        assert_eq!(p.namespaces[a.parent_ns].key, "node/cn-hongkong.10.0.4.20");
        assert!(pod
            .routes
            .iter()
            .any(|r| r.via == Some(ip("10.0.4.253")) && r.dev.as_deref() == Some("eth0")));
        let node = ns(&p, "node/cn-hongkong.10.0.4.20");
        assert!(node.links.iter().any(|l| l.name == "ipvl_1"));
        assert!(node
            .routes
            .iter()
            .any(|r| r.dst.to_string() == "10.0.4.27/32" && r.dev.as_deref() == Some("ipvl_1")));
        assert!(
            node.rules.iter().all(|r| r.priority != 2048),
            "ipvlan pods bypass host policy routing"
        );
    }
}

#[test]
fn trunk_pods_get_podeni_records_and_vlans_per_node() {
    let p = plan_of("scenarios/t4-trunk-cross-node.yaml", Backends::PORTABLE);
    let recs = podenis(&p);
    assert_eq!(recs.len(), 5);
    let centos = recs.iter().find(|r| r.pod == "trunking/centos").unwrap();
    assert_eq!(
        (centos.ipv4, centos.vlan_id, centos.vswitch.as_str()),
        (ip("10.0.4.27"), 1027, "vsw-a")
    );
    assert_eq!(centos.security_group_ids, ["sg-open"]);
    assert_eq!(centos.instance_id, "cn-hongkong.10.0.4.20");
    let trunk = p.eni(&centos.trunk_eni_id).unwrap();
    assert_eq!(trunk.role, EniRole::Trunk);
    let busy = recs.iter().find(|r| r.pod == "trunking/busybox").unwrap();
    assert_eq!(busy.vlan_id, 1028, "second member on node .22");
    let nginx_b = recs.iter().find(|r| r.pod == "trunking/nginx-b").unwrap();
    assert_eq!(
        (nginx_b.vswitch.as_str(), nginx_b.security_group_ids.clone()),
        ("vsw-b", vec!["sg-strict".to_string()])
    );
}

#[test]
fn trunk_vlan_backends_ebpf_and_8021q() {
    let bpf = plan_of("scenarios/t4-trunk-cross-node.yaml", Backends::PORTABLE);
    let node = ns(&bpf, "node/cn-hongkong.10.0.4.20");
    assert_eq!(
        node.tc,
        vec![TcPlan::Trunk {
            link: "eth1".into(),
            pods: vec![(ip("10.0.4.27"), 1027)]
        }]
    );
    assert!(node
        .routes
        .iter()
        .any(|r| r.table == 2027 && r.dev.as_deref() == Some("eth1") && r.onlink));
    assert!(node
        .rules
        .iter()
        .any(|r| r.priority == 2048 && r.table == 2027));
    let hv = ns(&bpf, "hv/cn-hongkong.10.0.4.20");
    assert_eq!(
        hv.tc,
        vec![TcPlan::Hv {
            trunk_link: "trunk".into(),
            members: vec![("m1027".into(), 1027)]
        }]
    );
    // The member ENI lives in hv: no namespace of its own, its link goes
    // to the VPC, hv routes its VLAN (the eBPF demux marks it) out of it.
    let member = bpf.enis.iter().find(|e| e.role == EniRole::Member).unwrap();
    assert!(bpf.ns_index(&format!("eni/{}", member.id)).is_none());
    assert!(bpf.veths.iter().any(|v| {
        let (a, b) = (&v.a, &v.b);
        bpf.namespaces[a.ns].key == "hv/cn-hongkong.10.0.4.20"
            && a.name == "m1027"
            && bpf.namespaces[b.ns].key == "vpc"
            && b.name == member.id
    }));
    assert!(hv.rules.iter().any(|r| r.priority == 100
        && r.iif.as_deref() == Some("trunk")
        && r.fwmark == Some((1027, u32::MAX))
        && r.table == 2027));
    assert!(hv.routes.iter().any(|r| r.table == 2027
        && r.dev.as_deref() == Some("m1027")
        && r.via == Some(ip("10.0.4.253"))));
    assert!(hv.routes.iter().any(|r| r.table == TABLE_MAIN
        && r.dev.as_deref() == Some("trunk")
        && r.dst.to_string() == "10.0.4.27/32"));
    let script = hv.nft.as_deref().unwrap();
    assert!(
        script.contains("ct zone set iifname map { \"m1027\" : 1027 }"),
        "{script}"
    );
    assert!(script.contains("iifname \"trunk\" ct zone set meta mark map { 1027 : 1027 }"));
    assert!(script.contains(&format!(
        "comment \"eni/{}: default ingress drop\"",
        member.id
    )));

    let native = plan_of("scenarios/t4-trunk-cross-node.yaml", Backends::NATIVE);
    let node = ns(&native, "node/cn-hongkong.10.0.4.20");
    assert!(node.tc.is_empty());
    assert!(node.links.iter().any(|l| l.name == "eth1.1027"
        && l.kind
            == LinkKind::Vlan {
                parent: "eth1".into(),
                id: 1027
            }));
    assert!(node
        .routes
        .iter()
        .any(|r| r.table == 2027 && r.dev.as_deref() == Some("eth1.1027")));
    let hv = ns(&native, "hv/cn-hongkong.10.0.4.20");
    assert!(hv.tc.is_empty());
    assert!(hv.links.iter().any(|l| l.name == "t1027"
        && l.kind
            == LinkKind::Vlan {
                parent: "trunk".into(),
                id: 1027
            }));
    assert!(hv.rules.iter().any(|r| r.priority == 100
        && r.iif.as_deref() == Some("t1027")
        && r.fwmark.is_none()
        && r.table == 2027));
    assert!(hv.routes.iter().any(|r| r.table == TABLE_MAIN
        && r.dev.as_deref() == Some("t1027")
        && r.dst.to_string() == "10.0.4.27/32"));
    let script = hv.nft.as_deref().unwrap();
    assert!(script.contains("\"t1027\" : jump egress_1027"), "{script}");
    assert!(!script.contains("meta mark"), "{script}");
}

#[test]
fn podnetworking_ready_selection_and_shared_fallback() {
    let p = plan_of("scenarios/m5-terway-trunking.yaml", Backends::PORTABLE);
    let trunked: Vec<String> = podenis(&p).into_iter().map(|r| r.pod).collect();
    assert_eq!(trunked, ["default/centos", "default/nginx", "default/db"]);
    // web is selected only by a not-Ready PodNetworking: shared ENI (eth2).
    let web = p.endpoint("pod/default/web").unwrap();
    let shared = p.enis.iter().find(|e| e.ips.contains(&web.ip)).unwrap();
    assert_eq!(shared.role, EniRole::Secondary);
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("not-yet") && n.contains("not Ready")));
}

#[test]
fn fixed_allocation_keeps_the_ip_across_a_replan() {
    let r = load_file("scenarios/m5-terway-trunking.yaml");
    let before = plan(&r, Backends::PORTABLE)
        .unwrap()
        .endpoint("pod/default/db")
        .unwrap()
        .ip;
    // Another trunk pod in the same vSwitch, planned first.
    let mut r2 = r.clone();
    let mut other = r
        .pods
        .iter()
        .find(|p| p.metadata.name == "nginx")
        .unwrap()
        .clone();
    other.metadata.name = "nginx-2".into();
    r2.pods.insert(0, other);
    let p2 = plan(&r2, Backends::PORTABLE).unwrap();
    assert_eq!(p2.endpoint("pod/default/db").unwrap().ip, before);
    // An Elastic pod takes the first free address instead, so it moves.
    assert_ne!(
        p2.endpoint("pod/default/nginx").unwrap().ip,
        plan(&r, Backends::PORTABLE)
            .unwrap()
            .endpoint("pod/default/nginx")
            .unwrap()
            .ip
    );
}

/// Terway attaches a node's trunk ENI when its daemon starts, before any
/// pod (`daemon/builder.go` `setupENIManager` → `initTrunk`): the trunk is
/// `eth1` even when the node's first pod takes a shared ENI, which then
/// becomes `eth2`. (Found by the planner fuzz target: the shared ENI and
/// the trunk were both `eth1`; `fuzz/corpus/planner/` keeps the input.)
#[test]
fn trunk_is_attached_before_a_shared_eni_pod() {
    let mut r = load_file("scenarios/m5-terway-trunking.yaml");
    // web (shared ENI) before centos (member ENI), both on node .20.
    let web = r
        .pods
        .iter()
        .position(|p| p.metadata.name == "web")
        .unwrap();
    let web = r.pods.remove(web);
    r.pods.insert(0, web);
    for b in BOTH {
        let p = plan(&r, b).unwrap();
        let v = invariants::violations(&p);
        assert!(v.is_empty(), "{b:?}: {}", v.join("\n"));
        let web_ip = p.endpoint("pod/default/web").unwrap().ip;
        let shared = p.enis.iter().find(|e| e.ips.contains(&web_ip)).unwrap();
        assert_eq!(shared.role, EniRole::Secondary);
        let point = |id: &str| {
            let named = |x: &&ObsPoint| {
                x.id.to_string() == id || x.aliases.iter().any(|a| a.to_string() == id)
            };
            p.points.iter().find(named).unwrap()
        };
        let eth2 = point("eni/secondary:cn-hongkong.10.0.4.20/eth2");
        assert_eq!(eth2.id.to_string(), format!("eni/{}", shared.id));
        let trunk = point("trunk/cn-hongkong.10.0.4.20");
        assert_eq!(trunk.ifname.as_deref(), Some("eth1"));
        assert!(p.pending.is_empty(), "{:?}", p.pending);
    }
}

/// Every trunk-capable node gets its trunk at daemon start, member pods or
/// not (M5b's node-2 has only shared-ENI pods): its shared ENI is `eth2`
/// and no VLAN program is loaded for a trunk nothing rides.
#[test]
fn every_trunk_capable_node_gets_a_trunk() {
    let p = plan_of(
        "scenarios/m5b-terway-trunking-matrix.yaml",
        Backends::PORTABLE,
    );
    let trunks: Vec<&str> = p
        .enis
        .iter()
        .filter(|e| e.role == EniRole::Trunk)
        .map(|e| e.instance.as_str())
        .collect();
    assert_eq!(trunks, ["node-1", "node-2"]);
    assert!(ns(&p, "node/node-2").tc.is_empty());
    assert!(ns(&p, "hv/node-2").tc.is_empty());
    assert!(!ns(&p, "hv/node-1").tc.is_empty());
    assert!(p
        .points
        .iter()
        .any(|x| x.id.to_string() == "eni/secondary:node-2/eth2"
            || x.aliases
                .iter()
                .any(|a| a.to_string() == "eni/secondary:node-2/eth2")));
}

#[test]
fn trunk_on_a_node_without_trunk_support_is_pending() {
    let mut r = load_file("scenarios/m5-terway-trunking.yaml");
    r.topo.nodes[0].instance_type = Some("ecs.t6-c1m2.large".into());
    let p = plan(&r, Backends::PORTABLE).unwrap();
    let why = pending_reason(&p, "default/centos");
    assert!(why.contains("cannot carry a trunk ENI"), "{why}");
}

/// Why the plan leaves `pod` (`<ns>/<name>`) pending.
fn pending_reason<'p>(p: &'p LabPlan, pod: &str) -> &'p str {
    match p.pending.iter().find(|x| x.pod == pod) {
        Some(x) => &x.reason,
        None => panic!("{pod} is not pending: {:?}", p.pending),
    }
}

/// `n` more pods like `of`, named `<prefix>0`, `<prefix>1`, ….
fn add_copies(r: &mut cnlab::topology::Resolved, of: &str, prefix: &str, n: usize) {
    let mut extra = r
        .pods
        .iter()
        .find(|p| p.metadata.name == of)
        .unwrap()
        .clone();
    for k in 0..n {
        extra.metadata.name = format!("{prefix}{k}");
        r.pods.push(extra.clone());
    }
}

/// Terway's member-ENI quota (`EniTotalQuantity − EniQuantity`,
/// `MemberAdapterLimit`): ecs.g7.2xlarge's recorded 10 − 4 = 6 member ENIs
/// carry six trunk pods on one node; the seventh stays pending, and pods
/// on the other node are untouched.
#[test]
fn member_enis_stop_at_the_instance_quota() {
    let mut r = load_file("scenarios/m5-terway-trunking.yaml");
    r.topo.nodes[0].instance_type = Some("ecs.g7.2xlarge".into());
    add_copies(&mut r, "centos", "c", 6);
    let p = plan(&r, Backends::PORTABLE).unwrap();
    let pending: Vec<&str> = p.pending.iter().map(|x| x.pod.as_str()).collect();
    assert_eq!(pending, ["default/c5"], "{:?}", p.pending);
    assert!(
        p.pending[0].reason.contains(
            "no aliyun/member-eni left: its 6 member ENIs (EniTotalQuantity 10 − EniQuantity 4)"
        ),
        "{}",
        p.pending[0].reason
    );
    let members = |node: &str| {
        p.enis
            .iter()
            .filter(|e| e.role == EniRole::Member && e.instance == node)
            .count()
    };
    assert_eq!(members("cn-hongkong.10.0.4.20"), 6);
    assert_eq!(members("cn-hongkong.10.0.4.22"), 2, "nginx and db");
    // The other node (ecs.g7.xlarge) has no recorded total: said, not capped.
    assert!(
        p.notes.iter().any(
            |n| n.contains("member ENIs are not capped on cn-hongkong.10.0.4.22")
                && !n.contains("cn-hongkong.10.0.4.20")
        ),
        "{:?}",
        p.notes
    );
}

/// A trunk-capable instance whose total equals its ENI count has no member
/// ENI: Terway turns trunking off there (`TrunkPod() <= 0`), and the node
/// keeps eth1 for a shared ENI.
#[test]
fn a_zero_member_quota_turns_trunking_off() {
    let mut r = load_file("scenarios/m5-terway-trunking.yaml");
    r.topo.nodes[0].enis = Some(EniLimits {
        max: 4,
        ips_per_eni: 15,
        trunk: true,
        total: Some(4),
    });
    let p = plan(&r, Backends::PORTABLE).unwrap();
    let why = pending_reason(&p, "default/centos");
    assert!(why.contains("member-ENI quota is 0"), "{why}");
    assert!(!p
        .enis
        .iter()
        .any(|e| e.role == EniRole::Trunk && e.instance == "cn-hongkong.10.0.4.20"));
    assert!(
        p.endpoint("pod/default/web").is_some(),
        "a shared-ENI pod still runs"
    );
}

#[test]
fn member_vswitch_exhaustion_is_reported() {
    let mut r = load_file("scenarios/m5-terway-trunking.yaml");
    let b = r
        .topo
        .vpc
        .vswitches
        .iter_mut()
        .find(|v| v.id == "vsw-b")
        .unwrap();
    b.cidr = "10.0.5.0/29".parse().unwrap(); // .1 .2 .3 .4 usable
    add_copies(&mut r, "nginx", "n", 4);
    let p = plan(&r, Backends::PORTABLE).unwrap();
    assert!(
        p.pending
            .iter()
            .any(|x| x.reason == "vSwitch vsw-b has no free IP"),
        "{:?}",
        p.pending
    );
    assert!(
        p.endpoint("pod/default/centos").is_some(),
        "the rest of the lab still plans"
    );
}

/// T6's asymmetry: the nftables emulation needs the fwmark re-route rule;
/// native IPVS re-routes by destination itself, so that backend has none
/// and programs the ClusterIP as a real IPVS service instead.
#[test]
fn t6_reroute_rule_only_on_the_ipvs_emulation() {
    let f = "scenarios/t6-trunk-clusterip-asymmetric.yaml";
    let node = "node/cn-hongkong.10.0.4.20";
    let emulated = plan_of(f, Backends::PORTABLE);
    assert!(ns(&emulated, node).rules.iter().any(|r| r.priority == 1024));
    assert!(ns(&emulated, node).ipvs.is_empty());
    let native = plan_of(f, Backends::NATIVE);
    let n = ns(&native, node);
    assert!(!n.rules.iter().any(|r| r.priority == 1024), "{:?}", n.rules);
    assert!(!n.ipvs.is_empty());
    assert!(n
        .sysctls
        .iter()
        .any(|(k, v)| k == "net/ipv4/vs/conntrack" && v == "1"));
}

/// eni-config `host_stack_cidrs`: IPVLAN redirects them to ipvl_N before
/// the service CIDR (ipvlan_linux.go `append(cfg.HostStackCIDRs,
/// cfg.ServiceCIDR.IPv4)`); exclusive ENI routes them via veth1. node-local-dns
/// is a dummy `nodelocaldns` with its address and a port-53 server per node.
#[test]
fn host_stack_cidrs_reach_the_redirect_and_veth1() {
    let dns: ipnet::Ipv4Net = "169.254.20.10/32".parse().unwrap();
    for b in BOTH {
        let p = plan_of("scenarios/m4b-terway-eniip-ipvlan-matrix.yaml", b);
        let node = &p.namespaces[p.ns_index("node/node-1").unwrap()];
        let redirects: Vec<&Vec<ipnet::Ipv4Net>> = node
            .tc
            .iter()
            .filter_map(|t| match t {
                TcPlan::RedirectToHost { cidrs, .. } => Some(cidrs),
                _ => None,
            })
            .collect();
        assert!(!redirects.is_empty(), "node-1 redirects to ipvl_N");
        for cidrs in redirects {
            assert_eq!(cidrs, &vec![dns, "192.168.0.0/16".parse().unwrap()]);
        }
        assert!(node.links.iter().any(|l| l.name == "nodelocaldns"));
        assert!(node
            .addrs
            .iter()
            .any(|a| a.dev == "nodelocaldns" && a.addr.to_string() == "169.254.20.10/32"));
        assert!(node
            .servers
            .iter()
            .any(|s| s.port == 53 && s.identity == "node/node-1" && s.tcp && s.udp));

        let p = plan_of("scenarios/m2b-terway-eni-matrix.yaml", b);
        let pod = &p.namespaces[p.ns_index("pod/default/client-a").unwrap()];
        let r = pod
            .routes
            .iter()
            .find(|r| r.dst.to_string() == "169.254.20.10/32")
            .expect("a host_stack_cidrs route in the pod");
        assert_eq!(r.dev.as_deref(), Some("veth1"));
    }
}

/// Rule 2048 follows `cluster.terway_version`: bound to the host veth up to
/// Terway v1.4.1 (and when absent), source only from v1.4.2 (commit
/// efd05996). The IPVS emulation's `fwmark 0x1000 lookup main` (1024) stands
/// for real IPVS missing the iif-bound rule, so it exists only with it.
#[test]
fn rule_2048_and_the_emulated_reroute_follow_the_terway_version() {
    let text = std::fs::read_to_string(
        plan_support::topologies_dir().join("scenarios/m3b-terway-eniip-matrix.yaml"),
    )
    .unwrap();
    for (version, iif) in [("1.4.1", true), ("1.4.2", false), ("1.17.5", false)] {
        let t = text.replace(
            "terway_version: \"1.17.5\"",
            &format!("terway_version: \"{version}\""),
        );
        let topo = load(&t);
        for b in BOTH {
            let p = plan(&topo, b).unwrap();
            let node = ns(&p, "node/node-1");
            let r2048: Vec<&RulePlan> = node.rules.iter().filter(|r| r.priority == 2048).collect();
            assert!(!r2048.is_empty(), "{version}: no rule 2048");
            assert!(
                r2048.iter().all(|r| r.iif.is_some() == iif),
                "{version}: rule 2048 iif {:?}",
                r2048.iter().map(|r| &r.iif).collect::<Vec<_>>()
            );
            let reroute = node.rules.iter().any(|r| r.priority == 1024);
            assert_eq!(reroute, iif && !b.ipvs, "{version} {b:?}: rule 1024");
        }
    }
    let t = text.replace("  terway_version: \"1.17.5\"\n", "");
    let topo = load(&t);
    let p = plan(&topo, Backends::PORTABLE).unwrap();
    assert!(
        ns(&p, "node/node-1")
            .rules
            .iter()
            .any(|r| r.priority == 2048 && r.iif.is_some()),
        "absent: iif-bound"
    );
}

/// `avoids:` entries that name nothing in the lab would always hold; the
/// check fails them instead. Which entries name a point, on the quota
/// example (node .22 has no trunk, a3 never runs).
#[test]
fn avoid_entries_must_name_a_point_of_the_lab() {
    use cnlab::check::PointPattern;
    let p = plan_of("examples/trunk-member-eni-quota.yaml", Backends::PORTABLE);
    let names = |s: &str| PointPattern::new(&p, s).names_a_point(&p);
    assert!(names("trunk/cn-hongkong.10.0.4.20"));
    assert!(names("trunk/cn-hongkong.10.0.4.20@vlan=1027"));
    assert!(names("eni/member:default/a1"), "an alias");
    assert!(names("eni/member:*"), "a prefix with a match");
    assert!(names("node/cn-hongkong.10.0.4.22"), "a node's own stack");
    assert!(!names("trunk/cn-hongkong.10.0.4.22"), "no trunk on .22");
    assert!(!names("eni/member:default/a3"), "a3 never got one");
    assert!(!names("slb/*"), "a prefix matching nothing");
    assert!(!names("node/nowhere"));
}
