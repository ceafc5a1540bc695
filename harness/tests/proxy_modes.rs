//! kube-proxy modes as plans, without root: each mode renders its own
//! upstream objects (iptables chains, the nftables table, kube-ipvs0), the
//! version gates refuse or warn at `cluster.proxy` with its line, and no
//! mode carries another mode's mechanism.

mod plan_support;

use cnlab::plan::{plan, Backends, LabPlan};
use cnlab::topology::load_str;
use cnlab::topology::model::{Cni, ProxyMode};
use plan_support::{load_file, ns};

const K: &str = "scenarios/k-local-traffic-policy.yaml";

fn k_plan(version: &str, cni: Cni, proxy: ProxyMode) -> LabPlan {
    let mut r = load_file(K);
    r.topo.cluster.kubernetes = version.into();
    r.topo.cluster.cni = cni;
    r.topo.cluster.proxy = proxy;
    plan(&r, Backends::PORTABLE).unwrap()
}

fn k_text(version: &str, proxy: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(K);
    std::fs::read_to_string(path)
        .unwrap()
        .replace(
            "kubernetes: \"1.24\"",
            &format!("kubernetes: \"{version}\""),
        )
        .replace("proxy: ipvs", &format!("proxy: {proxy}"))
}

#[test]
fn nftables_mode_is_refused_before_1_29_at_cluster_proxy() {
    let r = load_str(&k_text("1.28", "nftables"), "k.yaml").unwrap_err();
    let text = r.to_string();
    assert!(text.contains("cluster.proxy"), "{text}");
    assert!(text.contains("1.29"), "{text}");
    assert!(text.contains("(line 16)"), "{text}");
    assert!(load_str(&k_text("1.29", "nftables"), "k.yaml").is_ok());
}

#[test]
fn ipvs_deprecation_is_warned_from_1_35() {
    let warned = |v: &str| {
        load_str(&k_text(v, "ipvs"), "k.yaml")
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.path == "cluster.proxy" && w.to_string().contains("deprecated"))
    };
    assert!(!warned("1.34"));
    assert!(warned("1.35"));
}

#[test]
fn iptables_mode_writes_upstream_chains_and_binds_nothing() {
    let p = k_plan("1.25", Cni::Flannel, ProxyMode::Iptables);
    let c = ns(&p, "node/node-c");
    let ipt = c.iptables.as_deref().unwrap();
    for want in [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000",
        // node-c has no local nginx endpoint: external traffic is dropped…
        "\"demo/nginx has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30745 -j DROP",
        // …while pods (flannel's pod CIDR) and the node short-circuit to every endpoint.
        "\"pod traffic for demo/nginx external destinations\" -s 172.16.0.0/16 -j KUBE-SVC-",
        "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    ] {
        assert!(ipt.contains(want), "missing {want:?} in\n{ipt}");
    }
    assert!(
        !ipt.contains("KUBE-SVL-"),
        "no local endpoint chain on node-c"
    );
    assert!(c
        .sysctls
        .iter()
        .any(|(k, v)| k == "net/ipv4/conf/all/route_localnet" && v == "1"));
    assert!(c.links.iter().all(|l| l.name != "kube-ipvs0"));
    assert!(c.rules.iter().all(|r| r.priority != 1024));
    assert!(!c.nft.as_deref().unwrap_or("").contains("cnlab_kube_proxy"));
    // Terway ENIIP: pods take VPC addresses, kube-proxy has no local detector.
    let p = k_plan("1.25", Cni::TerwayEniip, ProxyMode::Iptables);
    let ipt = ns(&p, "node/node-c").iptables.clone().unwrap();
    assert!(!ipt.contains("pod traffic for"), "{ipt}");
}

#[test]
fn iptables_layout_by_version() {
    // 1.24: KUBE-EXT / KUBE-SVL, but dropping through the kubelet's KUBE-MARK-DROP.
    let p = k_plan("1.24", Cni::Flannel, ProxyMode::Iptables);
    let ipt = ns(&p, "node/node-c").iptables.clone().unwrap();
    for want in [
        "-A KUBE-MARK-DROP -j MARK --or-mark 0x00008000",
        "\"kubernetes firewall for dropping marked packets\" -m mark --mark 0x00008000/0x00008000 -j DROP",
        "-m comment --comment \"demo/nginx has no local endpoints\" -j KUBE-MARK-DROP",
        "-j KUBE-EXT-",
    ] {
        assert!(ipt.contains(want), "1.24: missing {want:?} in\n{ipt}");
    }
    for absent in [
        "KUBE-PROXY-FIREWALL",
        "KUBE-XLB-",
        "-j DROP\n-A KUBE-EXTERNAL",
    ] {
        assert!(!ipt.contains(absent), "1.24: {absent:?} in\n{ipt}");
    }
    // 1.23: KUBE-XLB, a KUBE-FW for the LB IP, masquerade rules in KUBE-SVC.
    let p = k_plan("1.23", Cni::Flannel, ProxyMode::Iptables);
    let ipt = ns(&p, "node/node-c").iptables.clone().unwrap();
    for want in [
        ":KUBE-XLB-",
        "\"Redirect pods trying to reach external loadbalancer VIP to clusterIP\" -s 172.16.0.0/16 -j KUBE-SVC-",
        "\"demo/nginx has no local endpoints\" -j KUBE-MARK-DROP",
        "-m comment --comment \"demo/nginx loadbalancer IP\" -m tcp -p tcp -d 203.0.113.10/32 --dport 80 -j KUBE-FW-",
        "-m comment --comment demo/nginx -m tcp -p tcp --dport 30745 -s 127.0.0.0/8 -j KUBE-MARK-MASQ",
        "-m comment --comment demo/web -m tcp -p tcp --dport 30800 -j KUBE-MARK-MASQ",
    ] {
        assert!(ipt.contains(want), "1.23: missing {want:?} in\n{ipt}");
    }
    for absent in ["KUBE-EXT-", "KUBE-SVL-", "KUBE-PROXY-FIREWALL"] {
        assert!(!ipt.contains(absent), "1.23: {absent:?} in\n{ipt}");
    }
    // 1.27: the kubelet no longer writes KUBE-MARK-DROP (KEP-3178).
    let p = k_plan("1.27", Cni::Flannel, ProxyMode::Iptables);
    let ipt = ns(&p, "node/node-c").iptables.clone().unwrap();
    assert!(!ipt.contains("KUBE-MARK-DROP"), "1.27:\n{ipt}");
}

#[test]
fn nftables_mode_writes_table_kube_proxy_on_the_primary_address_only() {
    let p = k_plan("1.31", Cni::TerwayEniip, ProxyMode::Nftables);
    let c = ns(&p, "node/node-c");
    let nft = c.nft.as_deref().unwrap();
    for want in [
        "table ip kube-proxy {",
        "map service-ips {",
        "map service-nodeports {",
        "map no-endpoint-nodeports {",
        "set cluster-ips {",
        "elements = { 10.0.4.168 }",
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        "tcp . 30745 comment \"demo/nginx\" : drop",
        "masquerade fully-random",
    ] {
        assert!(nft.contains(want), "missing {want:?} in\n{nft}");
    }
    assert!(c.iptables.is_none());
    assert!(c.sysctls.iter().all(|(k, _)| !k.contains("route_localnet")));
    assert!(c.links.iter().all(|l| l.name != "kube-ipvs0"));
    assert!(c.rules.iter().all(|r| r.priority != 1024));
    assert!(!nft.contains("cnlab_kube_proxy"));
}

const AFFINITY: &str = "conformance/kube-proxy/session-affinity.yaml";

fn affinity_plan(proxy: ProxyMode, backends: Backends) -> LabPlan {
    let mut r = load_file(AFFINITY);
    r.topo.cluster.proxy = proxy;
    plan(&r, backends).unwrap()
}

/// sessionAffinity ClientIP in each mode's own terms, only on the Service
/// that has it (`spread` in the same file has none).
#[test]
fn session_affinity_is_each_modes_own_mechanism() {
    let p = affinity_plan(ProxyMode::Iptables, Backends::PORTABLE);
    let ipt = ns(&p, "node/node-a").iptables.clone().unwrap();
    let rcheck: Vec<&str> = ipt.lines().filter(|l| l.contains("--rcheck")).collect();
    assert_eq!(rcheck.len(), 2, "one per endpoint of ns1/sticky:\n{ipt}");
    assert!(rcheck
        .iter()
        .all(|l| l.contains("--seconds 600 --reap") && l.contains("ns1/sticky:p80")));
    assert_eq!(ipt.matches("-m recent --name KUBE-SEP-").count(), 4);
    assert_eq!(
        ipt.lines().filter(|l| l.contains("--set -m tcp")).count(),
        2
    );

    let p = affinity_plan(ProxyMode::Nftables, Backends::PORTABLE);
    let nft = ns(&p, "node/node-a").nft.clone().unwrap();
    assert_eq!(
        nft.matches("flags dynamic,timeout\n    timeout 600s")
            .count(),
        2,
        "{nft}"
    );
    assert_eq!(nft.matches("update @affinity-").count(), 2, "{nft}");
    assert!(nft.contains("ip saddr @affinity-"), "{nft}");
    assert!(
        !nft.lines()
            .any(|l| l.contains("affinity-") && l.contains("ns1/spread")),
        "{nft}"
    );

    let native = affinity_plan(ProxyMode::Ipvs, Backends::NATIVE);
    let vs = &ns(&native, "node/node-a").ipvs;
    let sticky: Vec<_> = vs
        .iter()
        .filter(|s| s.persistence_timeout == Some(600))
        .collect();
    // ClusterIP and NodePort of ns1/sticky; nothing of ns1/spread.
    assert_eq!(sticky.len(), 2, "{vs:?}");
    assert!(vs
        .iter()
        .any(|s| s.addr.to_string() == "172.21.0.52" && s.persistence_timeout.is_none()));
    let emu = affinity_plan(ProxyMode::Ipvs, Backends::PORTABLE);
    let nft = ns(&emu, "node/node-a").nft.clone().unwrap();
    assert!(
        nft.contains("timeout 600s") && nft.contains("ip saddr @persist_172_21_0_51_tcp_80_0"),
        "{nft}"
    );
    assert!(!nft.contains("persist_172_21_0_52"), "{nft}");
}

#[test]
fn session_affinity_config_is_validated_as_the_api_server_does() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(AFFINITY);
    let text = std::fs::read_to_string(path).unwrap();
    let bad = text.replace("timeoutSeconds: 600", "timeoutSeconds: 86401");
    let e = load_str(&bad, "a.yaml").unwrap_err().to_string();
    assert!(
        e.contains("sessionAffinityConfig.clientIP.timeoutSeconds") && e.contains("86400"),
        "{e}"
    );
    let bad = text.replace("sessionAffinity: ClientIP", "sessionAffinity: None");
    let e = load_str(&bad, "a.yaml").unwrap_err().to_string();
    assert!(
        e.contains("spec.sessionAffinityConfig") && e.contains("not ClientIP"),
        "{e}"
    );
    let bad = text.replace("sessionAffinity: ClientIP", "sessionAffinity: Cookie");
    let e = load_str(&bad, "a.yaml").unwrap_err().to_string();
    assert!(
        e.contains("spec.sessionAffinity") && e.contains("Cookie"),
        "{e}"
    );
}

/// healthCheckNodePort: kube-proxy's health server on every node (200 with
/// local endpoints, 503 without), on every address except in nftables
/// mode (nodePortAddresses `primary`), and iptables' filter ACCEPT for it.
#[test]
fn health_check_node_port_is_served_on_every_node() {
    let plan_of = |proxy| {
        let mut r = load_file("conformance/kube-proxy/health-check-node-port.yaml");
        r.topo.cluster.proxy = proxy;
        plan(&r, Backends::PORTABLE).unwrap()
    };
    let p = plan_of(ProxyMode::Iptables);
    let status = |p: &LabPlan, node: &str| {
        let s = ns(p, node)
            .servers
            .iter()
            .find(|s| s.port == 30100)
            .unwrap();
        let status = match s.http.as_ref().unwrap() {
            cnlab::plan::HttpServe::Fixed(r) => r.status,
            other => panic!("{other:?}"),
        };
        (status, s.bind, s.udp)
    };
    assert_eq!(status(&p, "node/node-a"), (200, None, false));
    assert_eq!(status(&p, "node/node-b"), (503, None, false));
    let ipt = ns(&p, "node/node-b").iptables.clone().unwrap();
    assert!(ipt.contains("-A KUBE-NODEPORTS -m comment --comment \"ns1/web:p80 health check node port\" -m tcp -p tcp --dport 30100 -j ACCEPT"), "{ipt}");
    let p = plan_of(ProxyMode::Nftables);
    assert_eq!(
        status(&p, "node/node-b").1,
        Some("10.0.4.11".parse().unwrap())
    );
    // kube-proxy's own health server on 10256, every node, every mode.
    for proxy in [ProxyMode::Ipvs, ProxyMode::Iptables, ProxyMode::Nftables] {
        let p = plan_of(proxy);
        for node in ["node/node-a", "node/node-b"] {
            let s = ns(&p, node).servers.iter().find(|s| s.port == 10256);
            assert!(
                matches!(s.and_then(|s| s.http.as_ref()), Some(cnlab::plan::HttpServe::ProxierHealth(h)) if h.livez && h.node_eligible),
                "{proxy:?} {node}: {s:?}"
            );
        }
    }
}

/// loadBalancerSourceRanges in each mode's own objects.
#[test]
fn source_ranges_are_each_modes_firewall() {
    let plan_of = |proxy, backends| {
        let mut r = load_file("conformance/kube-proxy/load-balancer-source-ranges.yaml");
        r.topo.cluster.proxy = proxy;
        plan(&r, backends).unwrap()
    };
    let p = plan_of(ProxyMode::Iptables, Backends::PORTABLE);
    let ipt = ns(&p, "node/node-a").iptables.clone().unwrap();
    for want in [
        "-s 10.0.3.0/24 -j KUBE-EXT-",
        "\"other traffic to ns1/restricted:p80 will be dropped by KUBE-PROXY-FIREWALL\"",
        "-A KUBE-PROXY-FIREWALL -m comment --comment \"ns1/restricted:p80 traffic not accepted by KUBE-FW-",
        // allowFromNode: 10.0.4.0/24 holds node-a's address.
        "-s 10.0.4.0/24 -j KUBE-EXT-",
    ] {
        assert!(ipt.contains(want), "missing {want:?} in\n{ipt}");
    }
    assert_eq!(
        ipt.matches("-A KUBE-PROXY-FIREWALL -m comment").count(),
        3,
        "{ipt}"
    );
    let p = plan_of(ProxyMode::Nftables, Backends::PORTABLE);
    let nft = ns(&p, "node/node-a").nft.clone().unwrap();
    assert!(nft.contains("ip saddr != { 10.0.3.0/24 } drop"), "{nft}");
    assert!(nft.contains(": goto firewall-"), "{nft}");
    for backends in [Backends::PORTABLE, Backends::NATIVE] {
        let p = plan_of(ProxyMode::Ipvs, backends);
        let nft = ns(&p, "node/node-a").nft.clone().unwrap();
        assert!(nft.contains("table ip cnlab_kube_proxy_firewall"), "{nft}");
        assert!(
            nft.contains("ct original ip saddr != { 10.0.3.0/24 } counter drop"),
            "{nft}"
        );
    }
}

/// ipMode Proxy (LoadBalancerIPMode, on from 1.30): kube-proxy leaves the
/// LB IP alone, so IPVS does not bind it and iptables has no rule for it.
#[test]
fn ip_mode_proxy_is_not_short_circuited_from_1_30() {
    let plan_at = |v: &str, proxy| {
        let mut r = load_file("conformance/kube-proxy/lb-ip-mode.yaml");
        r.topo.cluster.kubernetes = v.into();
        r.topo.cluster.proxy = proxy;
        plan(&r, Backends::PORTABLE).unwrap()
    };
    let bound = |p: &LabPlan| {
        p.proxy_nodes[0]
            .bound
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    assert!(bound(&plan_at("1.29", ProxyMode::Ipvs)).contains(&"198.51.100.92".to_string()));
    let b = bound(&plan_at("1.30", ProxyMode::Ipvs));
    assert!(
        !b.contains(&"198.51.100.92".to_string()) && b.contains(&"198.51.100.91".to_string()),
        "{b:?}"
    );
    let ipt = ns(&plan_at("1.31", ProxyMode::Iptables), "node/node-a")
        .iptables
        .clone()
        .unwrap();
    assert!(
        !ipt.contains("198.51.100.92") && ipt.contains("198.51.100.91"),
        "{ipt}"
    );
}

/// ProxyTerminatingEndpoints (on from 1.26): serving terminating endpoints
/// only where no ready one exists.
#[test]
fn terminating_endpoints_serve_only_without_ready_ones_from_1_26() {
    let plan_at = |v: &str| {
        let mut r = load_file("conformance/kube-proxy/terminating-endpoints.yaml");
        r.topo.cluster.kubernetes = v.into();
        r.topo.cluster.proxy = ProxyMode::Ipvs;
        plan(&r, Backends::PORTABLE).unwrap()
    };
    let rs = |p: &LabPlan, ip: &str| {
        p.proxy_nodes[0]
            .virtual_servers
            .iter()
            .find(|v| v.addr.to_string() == ip)
            .map(|v| {
                v.real_servers
                    .iter()
                    .map(|r| r.pod.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap()
    };
    let p = plan_at("1.26");
    assert_eq!(rs(&p, "172.21.0.101"), ["pod/ns1/ready"]);
    assert_eq!(rs(&p, "172.21.0.102"), ["pod/ns1/last"]);
    assert!(rs(&p, "172.21.0.103").is_empty());
    assert!(rs(&plan_at("1.25"), "172.21.0.102").is_empty());
}

#[test]
fn clb_health_check_annotations_are_reported_not_modelled_at_their_line() {
    let path =
        plan_support::topologies_dir().join("conformance/kube-proxy/health-check-node-port.yaml");
    let l = cnlab::topology::load_file(&path).unwrap();
    let w: Vec<String> = l
        .warnings
        .iter()
        .filter(|w| w.path.contains("alibaba-cloud-loadbalancer-health-check"))
        .map(|w| w.to_string())
        .collect();
    assert_eq!(w.len(), 1, "{:?}", l.warnings);
    assert!(
        w[0].contains("not modelled") && w[0].contains("(line "),
        "{}",
        w[0]
    );
}
