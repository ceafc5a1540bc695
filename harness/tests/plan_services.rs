//! Services as plans, without root: kube-proxy's virtual servers per node
//! and version, masquerade placement, kube-ipvs0 binding in IPVS mode only,
//! deterministic allocation, the cloud controller's CLB backends, and the
//! `when:` conditions of expectations.

mod plan_support;

use cnlab::plan::{plan, Backends, LabPlan, Masquerade, VipKind};
use cnlab::topology::model::{Cni, ProxyMode};
use plan_support::{load_file, ns};

const K: &str = "scenarios/k-local-traffic-policy.yaml";

fn k_plan(version: &str, cni: Cni, proxy: ProxyMode, backends: Backends) -> LabPlan {
    let mut r = load_file(K);
    r.topo.cluster.kubernetes = version.into();
    r.topo.cluster.cni = cni;
    r.topo.cluster.proxy = proxy;
    plan(&r, backends).unwrap()
}

fn vs<'a>(p: &'a LabPlan, node: &str, kind: VipKind, svc: &str) -> &'a cnlab::plan::VirtualServer {
    p.proxy_nodes
        .iter()
        .find(|n| n.node == node)
        .unwrap()
        .virtual_servers
        .iter()
        .find(|v| v.kind == kind && v.service == svc)
        .unwrap()
}

#[test]
fn local_policy_real_servers_follow_the_version() {
    for (version, want_on_c) in [
        ("1.21", 0),
        ("1.22", 0),
        ("1.23", 0),
        ("1.24", 2),
        ("1.30", 2),
    ] {
        let p = k_plan(version, Cni::TerwayVpc, ProxyMode::Ipvs, Backends::PORTABLE);
        for kind in [VipKind::NodePort, VipKind::LoadBalancer] {
            assert_eq!(
                vs(&p, "node-c", kind, "demo/nginx").real_servers.len(),
                want_on_c,
                "{version} {kind:?}"
            );
            let a = vs(&p, "node-a", kind, "demo/nginx");
            assert_eq!(
                a.real_servers.len(),
                1,
                "{version}: node-a keeps its local endpoint only"
            );
            assert_eq!(a.real_servers[0].pod, "pod/demo/nginx-a");
        }
        // ClusterIP (internalTrafficPolicy Cluster) always has every endpoint.
        assert_eq!(
            vs(&p, "node-c", VipKind::ClusterIp, "demo/nginx")
                .real_servers
                .len(),
            2
        );
    }
}

#[test]
fn masquerade_only_where_kube_proxy_does() {
    let p = k_plan("1.24", Cni::TerwayVpc, ProxyMode::Ipvs, Backends::PORTABLE);
    assert_eq!(
        vs(&p, "node-c", VipKind::NodePort, "demo/nginx").masquerade,
        Masquerade::Never
    );
    assert_eq!(
        vs(&p, "node-c", VipKind::LoadBalancer, "demo/nginx").masquerade,
        Masquerade::Never
    );
    assert_eq!(
        vs(&p, "node-a", VipKind::NodePort, "demo/web").masquerade,
        Masquerade::Always
    );
    assert_eq!(
        vs(&p, "node-a", VipKind::ClusterIp, "demo/web").masquerade,
        Masquerade::NodeOrigin
    );
    let nft = ns(&p, "node/node-a").nft.clone().unwrap();
    // Pod → ClusterIP (forwarded) is never marked; the node's own traffic is.
    let fwd = nft
        .split("chain services_fwd")
        .nth(1)
        .unwrap()
        .split("chain services_node")
        .next()
        .unwrap();
    let local = nft
        .split("chain services_node")
        .nth(1)
        .unwrap()
        .split("chain no_endpoints")
        .next()
        .unwrap();
    let cip = vs(&p, "node-a", VipKind::ClusterIp, "demo/web")
        .addr
        .to_string();
    let line = |chain: &str| {
        chain
            .lines()
            .find(|l| l.contains(&format!("ip daddr {cip} ")))
            .unwrap()
            .to_string()
    };
    assert!(!line(fwd).contains("0x4000"), "{}", line(fwd));
    assert!(
        line(local).contains("meta mark | 0x4000"),
        "{}",
        line(local)
    );
    let lb_local = fwd
        .lines()
        .find(|l| l.contains("demo/nginx load-balancer"))
        .unwrap();
    assert!(
        !lb_local.contains("0x4000"),
        "Local never masquerades: {lb_local}"
    );
    assert!(nft.contains("masquerade comment \"kube-proxy: masquerade\""));
}

#[test]
fn empty_virtual_servers_reject_with_port_unreachable() {
    let p = k_plan("1.22", Cni::Flannel, ProxyMode::Ipvs, Backends::PORTABLE);
    let nft = ns(&p, "node/node-c").nft.clone().unwrap();
    let empty = nft
        .split("chain no_endpoints")
        .nth(1)
        .unwrap()
        .split("chain prerouting")
        .next()
        .unwrap();
    assert!(
        empty.contains(
            "ip daddr 10.0.4.168 tcp dport 30745 counter reject with icmp type port-unreachable"
        ),
        "{empty}"
    );
    assert!(
        empty.contains("ip daddr 203.0.113.10 tcp dport 80"),
        "{empty}"
    );
    let nft_a = ns(&p, "node/node-a").nft.clone().unwrap();
    let empty_a = nft_a
        .split("chain no_endpoints")
        .nth(1)
        .unwrap()
        .split("chain prerouting")
        .next()
        .unwrap();
    assert!(
        !empty_a.contains("reject"),
        "node-a has a local endpoint: {empty_a}"
    );
}

#[test]
fn ipvs_binds_vips_and_iptables_binds_nothing() {
    for backends in [Backends::PORTABLE, Backends::NATIVE] {
        let p = k_plan("1.24", Cni::Flannel, ProxyMode::Ipvs, backends);
        let node = ns(&p, "node/node-b");
        assert!(node.links.iter().any(|l| l.name == "kube-ipvs0"));
        let bound: Vec<String> = node
            .addrs
            .iter()
            .filter(|a| a.dev == "kube-ipvs0")
            .map(|a| a.addr.to_string())
            .collect();
        for ip in ["203.0.113.10/32", "203.0.113.11/32"] {
            assert!(bound.contains(&ip.to_string()), "{bound:?}");
        }
        let cip = p.service("demo", "nginx").unwrap().cluster_ip.unwrap();
        assert!(bound.contains(&format!("{cip}/32")));
        assert!(
            !bound.contains(&"10.0.4.77/32".to_string()),
            "node IPs are not bound"
        );
        let label = if backends.ipvs {
            "native kernel IPVS"
        } else {
            "EMULATION"
        };
        assert!(p.notes.iter().any(|n| n.contains(label)), "{:?}", p.notes);
        // Native: real IPVS services, no emulated DNAT and no re-route rule.
        assert_eq!(backends.ipvs, !node.ipvs.is_empty());
        assert_eq!(
            backends.ipvs,
            !node.nft.as_deref().unwrap_or("").contains("dnat ip to")
        );

        let p = k_plan("1.24", Cni::Flannel, ProxyMode::Iptables, backends);
        let node = ns(&p, "node/node-b");
        assert!(!node.links.iter().any(|l| l.name == "kube-ipvs0"));
        assert!(node.addrs.iter().all(|a| a.dev != "kube-ipvs0"));
        let ipt = node
            .iptables
            .as_deref()
            .expect("iptables mode writes iptables rules");
        assert!(ipt.contains("-j DNAT --to-destination"), "{ipt}");
        assert!(
            !node
                .nft
                .as_deref()
                .unwrap_or("")
                .contains("cnlab_kube_proxy"),
            "no IPVS emulation in iptables mode"
        );
        assert!(
            node.rules.iter().all(|r| r.priority != 1024),
            "no IPVS re-route rule in iptables mode"
        );
    }
}

#[test]
fn hostname_annotation_unbinds_the_lb_ip() {
    let p = plan(
        &load_file("scenarios/c5-c6-clb-hostname.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    let svc = p.service("default", "svc1").unwrap();
    assert!(svc.lb_hostname);
    for n in ["node/node-1", "node/node-2"] {
        assert!(
            ns(&p, n)
                .addrs
                .iter()
                .all(|a| a.addr.to_string() != "192.168.1.200/32"),
            "{n}"
        );
    }
    let p = plan(
        &load_file("scenarios/c1-c4-clb-bound-to-kube-ipvs0.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    assert!(ns(&p, "node/node-2")
        .addrs
        .iter()
        .any(|a| a.dev == "kube-ipvs0" && a.addr.to_string() == "192.168.1.200/32"));
}

#[test]
fn ccm_reuses_the_clb_and_attaches_only_nodes_with_endpoints_for_local() {
    let p = plan(
        &load_file("scenarios/c1-c4-clb-bound-to-kube-ipvs0.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    assert_eq!(p.slbs.len(), 1, "svc1 reuses lb-clb1");
    let slb = &p.slbs[0];
    let ports: Vec<u16> = slb.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [443, 80]);
    let who: Vec<&str> = slb.listeners[1]
        .backends
        .iter()
        .map(|b| b.who.as_str())
        .collect();
    assert_eq!(
        who,
        ["pod/default/pod1"],
        "backend-type eni: the pod itself"
    );
    assert_eq!(slb.listeners[1].backends[0].port, 80);
    let k = k_plan("1.24", Cni::Flannel, ProxyMode::Ipvs, Backends::PORTABLE);
    let web = k
        .slbs
        .iter()
        .find(|s| s.ip.to_string() == "203.0.113.11")
        .unwrap();
    assert_eq!(
        web.listeners[0].backends.len(),
        3,
        "Cluster, ecs: every node's NodePort"
    );
    let nginx = k
        .slbs
        .iter()
        .find(|s| s.ip.to_string() == "203.0.113.10")
        .unwrap();
    let who: Vec<&str> = nginx.listeners[0]
        .backends
        .iter()
        .map(|b| b.who.as_str())
        .collect();
    assert_eq!(
        who,
        ["node/node-a", "node/node-b"],
        "Local, ecs: nodes with endpoints only"
    );
    let p = plan(
        &load_file("scenarios/c5-c6-clb-hostname.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    let l80 = p.slbs[0].listeners.iter().find(|l| l.port == 80).unwrap();
    let who: Vec<&str> = l80.backends.iter().map(|b| b.who.as_str()).collect();
    assert_eq!(
        who,
        ["node/node-1"],
        "Local: only the node with an endpoint"
    );
    // The VPC router sends the SLB's backend flows' replies back to it.
    let vpc = ns(&p, "vpc");
    assert!(vpc
        .rules
        .iter()
        .any(|r| r.fwmark == Some((p.slbs[0].mark, 0xffff_ffff)) && r.table == p.slbs[0].table));
    assert!(vpc.nft.as_deref().unwrap().contains("ct direction reply"));
    assert!(ns(&p, "slb/lb-clb1")
        .nft
        .as_deref()
        .unwrap()
        .contains("dnat ip to 192.168.1.10:"));
}

#[test]
fn internet_hosts_reach_load_balancers_only() {
    let p = plan(
        &load_file("scenarios/f6-service-types.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    let lb = p.service("shop", "api-lb").unwrap().lb_ip.unwrap();
    let nft = ns(&p, "vpc").nft.clone().unwrap();
    assert!(nft.contains(&format!("elements = {{ {lb} }}")), "{nft}");
    // ports by name resolve per endpoint
    let api = p.service("shop", "api").unwrap();
    assert_eq!(api.endpoints[0].target_ports, [Some(8000)]);
}

#[test]
fn allocation_is_deterministic() {
    let a = plan(
        &load_file("scenarios/f6-service-types.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    let b = plan(
        &load_file("scenarios/f6-service-types.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    assert_eq!(a.services, b.services);
    let np = a.service("shop", "api-np").unwrap().ports[0]
        .node_port
        .unwrap();
    assert!((30000..=32767).contains(&np));
    let cips: std::collections::BTreeSet<_> =
        a.services.iter().filter_map(|s| s.cluster_ip).collect();
    assert_eq!(cips.len(), a.services.len(), "cluster IPs are unique");
    let cidr: ipnet::Ipv4Net = "172.21.0.0/20".parse().unwrap();
    assert!(cips.iter().all(|ip| cidr.contains(ip)));
}

#[test]
fn when_conditions_select_by_version_cni_and_proxy() {
    use cnlab::topology::model::{Cluster, When};
    let cluster = |k: &str, cni| Cluster {
        kubernetes: k.into(),
        cni,
        ..Default::default()
    };
    let w = |k: &str| When {
        kubernetes: Some(k.into()),
        ..Default::default()
    };
    assert!(w(">=1.24").matches(&cluster("1.24", Cni::Flannel)).unwrap());
    assert!(w(">=1.24")
        .matches(&cluster("v1.30.2", Cni::Flannel))
        .unwrap());
    assert!(!w(">=1.24")
        .matches(&cluster("1.23.17", Cni::Flannel))
        .unwrap());
    assert!(w("<1.24").matches(&cluster("1.21", Cni::Flannel)).unwrap());
    assert!(w("1.22").matches(&cluster("1.22.3", Cni::Flannel)).unwrap());
    assert!(!w("1.22").matches(&cluster("1.23", Cni::Flannel)).unwrap());
    assert!(w("bogus").matches(&cluster("1.22", Cni::Flannel)).is_err());
    let by_cni = When {
        cni: vec![Cni::TerwayEniip, Cni::TerwayVpc],
        ..Default::default()
    };
    assert!(by_cni.matches(&cluster("1.24", Cni::TerwayVpc)).unwrap());
    assert!(!by_cni.matches(&cluster("1.24", Cni::Flannel)).unwrap());
    let by_proxy = When {
        proxy: vec![ProxyMode::Iptables],
        ..Default::default()
    };
    assert!(!by_proxy.matches(&cluster("1.24", Cni::Flannel)).unwrap());
}

#[test]
fn malformed_when_is_reported_with_its_line() {
    let text = std::fs::read_to_string(plan_support::topologies_dir().join(K))
        .unwrap()
        .replace("when: {kubernetes: \"<1.24\", proxy: ipvs}\n    from: external/x\n    to: nodeport/node-a", "when: {kubernetes: \"<=one\", cni: [calico]}\n    from: external/x\n    to: nodeport/node-a");
    let err = cnlab::topology::load_str(&text, "k.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expect[0].when.kubernetes"), "{err}");
    assert!(err.contains("expect[0].when.cni"), "{err}");
    assert!(err.contains("line"), "{err}");
}

/// Pod status decides endpoint conditions; only ready endpoints become
/// real servers; a pasted EndpointSlice is taken as it is.
#[test]
fn pod_status_and_endpoint_slices_decide_endpoints() {
    let p = plan(
        &load_file("examples/service-endpoints.yaml"),
        Backends::PORTABLE,
    )
    .unwrap();
    let web = p.service("shop", "web").unwrap();
    let cond = |pod: &str| {
        let e = web.endpoints.iter().find(|e| e.pod == pod).unwrap();
        (e.ready, e.serving, e.terminating)
    };
    assert_eq!(cond("pod/shop/web-1"), (true, true, false));
    assert_eq!(cond("pod/shop/web-unready"), (false, false, false));
    assert_eq!(cond("pod/shop/web-leaving"), (false, true, true));
    let vs = |svc: &str| {
        p.proxy_nodes[0]
            .virtual_servers
            .iter()
            .find(|v| v.service == svc)
            .unwrap()
            .real_servers
            .iter()
            .map(|r| r.pod.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(vs("shop/web"), ["pod/shop/web-1", "pod/shop/web-2"]);
    let stale = p.service("shop", "stale").unwrap();
    assert_eq!(stale.endpoints.len(), 1);
    assert_eq!(stale.endpoints[0].ip.to_string(), "172.16.1.99");
    assert_eq!(stale.endpoints[0].target_ports, [Some(8080)]);
    assert_eq!(stale.endpoints[0].node, "node-b");
    assert!(p.notes.iter().any(|n| n.contains("EndpointSlice")));
}
