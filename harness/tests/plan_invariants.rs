//! Properties every shipped topology's plan keeps, for both backend sets.

mod plan_support;

use cnlab::plan::*;
use cnlab::Verdict;
use plan_support::*;
use std::collections::BTreeMap;

fn all_plans() -> Vec<(String, LabPlan)> {
    let mut out = vec![];
    for f in shipped() {
        let r = load_file(&f);
        for b in [Backends::NATIVE, Backends::PORTABLE] {
            let p = plan(&r, b).unwrap_or_else(|e| panic!("{f} ({b:?}): {e}"));
            out.push((f.clone(), p));
        }
    }
    assert!(
        out.len() >= 14,
        "expected the six scenarios and the quickstart, got {}",
        out.len() / 2
    );
    out
}

/// Interface names fit and are unique per namespace, every link named by an
/// address, route, rule, neighbour, fdb, setting or sysctl exists and is set
/// up, points and endpoints name real namespaces and interfaces, MACs are
/// unique and locally administered, namespace suffixes unique and safe
/// (`plan::invariants`, also the planner fuzz target's oracle).
#[test]
fn every_plan_keeps_the_invariants() {
    for (f, p) in all_plans() {
        let v = cnlab::plan::invariants::violations(&p);
        assert!(v.is_empty(), "{f}:\n{}", v.join("\n"));
    }
}

#[test]
fn planning_is_deterministic() {
    for f in shipped() {
        let r = load_file(&f);
        let a = plan(&r, Backends::PORTABLE).unwrap();
        let b = plan(&r, Backends::PORTABLE).unwrap();
        assert_eq!(a, b, "{f}");
        assert_eq!(render(&a), render(&b), "{f}");
    }
}

/// The scenario files only name endpoints and observation points the plan has.
#[test]
fn expectations_name_planned_endpoints_and_points() {
    for f in shipped() {
        let r = load_file(&f);
        let p = plan(&r, Backends::PORTABLE).unwrap();
        assert!(r.topo.description.is_some(), "{f}: description");
        if p.cni_runtime.is_some() {
            // CNI plugins give pod addresses at bring-up: before ADD every
            // pod is pending (the lab tests check these files' endpoints).
            continue;
        }
        // A pod may stay pending on purpose (M2's overflow pod), but only a
        // `result: pending` expectation may name one, and that one must.
        for e in &r.topo.expect {
            if e.result == Verdict::Pending {
                let id = e.from.strip_prefix("pod/").unwrap_or(&e.from);
                assert!(
                    p.pending.iter().any(|x| x.pod == id),
                    "{f}: {} expects {id} pending, the plan runs it",
                    e.name
                );
                continue;
            }
            for pend in &p.pending {
                let id = format!("pod/{}", pend.pod);
                let names = |s: &str| s == id || s.starts_with(&format!("{id}:"));
                assert!(
                    !names(&e.from) && !names(&e.to),
                    "{f}: {} involves pending pod {}",
                    e.name,
                    pend.pod
                );
            }
        }
        let point = |id: &str| {
            p.points
                .iter()
                .any(|pt| pt.id == id || pt.aliases.iter().any(|a| a == id))
        };
        for e in r
            .topo
            .expect
            .iter()
            .filter(|e| e.result == Verdict::Timeout)
        {
            assert!(
                e.path.is_some(),
                "{f}: {}: a timeout says where the packet stops (path)",
                e.name
            );
        }
        for e in r
            .topo
            .expect
            .iter()
            .filter(|e| e.result != Verdict::Pending)
        {
            assert!(
                p.endpoint(&e.from).is_some(),
                "{f}: {}: from {}",
                e.name,
                e.from
            );
            let target = e.to.rsplit_once(':').map(|(t, _)| t).unwrap_or(&e.to);
            if let Some(ip) = target.strip_prefix("ip/") {
                let ip: std::net::Ipv4Addr = ip.parse().unwrap();
                // An endpoint, a CLB, a Service address (kube-ipvs0) or
                // node-local-dns's address holds it.
                let service_ip = p.services.iter().any(|s| {
                    s.cluster_ip == Some(ip) || s.lb_ip == Some(ip) || s.external_ips.contains(&ip)
                });
                assert!(
                    p.endpoints.iter().any(|x| x.ip == ip)
                        || p.slbs.iter().any(|s| s.ip == ip)
                        || service_ip
                        || r.topo.cluster.node_local_dns == Some(ip),
                    "{f}: {}: nobody has {ip}",
                    e.name
                );
            } else if target.starts_with("service/") || target.starts_with("nodeport/") {
                assert!(
                    cnlab::check::observe::resolve_target(&p, &e.to).is_ok(),
                    "{f}: {}: to {}",
                    e.name,
                    e.to
                );
            } else {
                assert!(p.endpoint(target).is_some(), "{f}: {}: to {}", e.name, e.to);
            }
            if e.result == cnlab::topology::model::Verdict::Connected {
                assert!(
                    e.source.is_some(),
                    "{f}: {}: connected expectations state source",
                    e.name
                );
            }
            let entries = e.path.iter().flatten().chain(e.avoids.iter().flatten());
            for id in entries.flat_map(|entry| entry.split('|')) {
                let id = &cnlab::check::split_vlan(id).0.to_string();
                // `eni/*`-style patterns must match at least one point, by
                // its id or an alias (`eni/member:*`), as `path` matches.
                let pattern_hits = id.strip_suffix('*').is_some_and(|prefix| {
                    p.points.iter().any(|pt| {
                        pt.id.to_string().starts_with(prefix)
                            || pt.aliases.iter().any(|a| a.to_string().starts_with(prefix))
                    })
                });
                assert!(
                    id.starts_with("node/") || point(id) || pattern_hits,
                    "{f}: {}: unknown observation point {id}",
                    e.name
                );
            }
        }
    }
}

#[test]
fn m1_cross_node_depends_on_the_peer_route_entry() {
    let r = load_file("scenarios/m1-terway-vpc.yaml");
    let p = plan(&r, Backends::NATIVE).unwrap();
    let e = r
        .topo
        .expect
        .iter()
        .find(|e| e.name == "cross-node")
        .expect("M1 names its cross-node expectation");
    let server = p.endpoint(e.to.rsplit_once(':').unwrap().0).unwrap();
    let entry = p
        .route_entries
        .iter()
        .find(|re| re.dest.contains(&server.ip))
        .expect("a route entry covers the server pod");
    assert_eq!(Some(&entry.next_hop), server.node.as_ref());
    assert!(e.path.as_ref().unwrap().contains(&"vpc".to_string()));
    // Pod addresses come from the cluster pod CIDR, not the VPC.
    let pod_cidr = r.topo.cluster.pod_cidr.unwrap();
    assert!(p
        .endpoints
        .iter()
        .filter(|x| x.kind == EndpointKind::Pod)
        .all(|x| pod_cidr.contains(&x.ip)));
}

#[test]
fn terway_vpc_pods_use_169_254_1_1_and_cali_veths() {
    let p = plan_file("scenarios/m1-terway-vpc.yaml");
    let pod = ns(&p, "pod/default/nginx-b");
    assert_eq!(pod.addrs[0].addr.to_string(), "172.16.1.2/32");
    assert_eq!(
        render::route_line(&pod.routes[0]),
        "default via 169.254.1.1 dev eth0 onlink"
    );
    let hv = p
        .points
        .iter()
        .find(|pt| pt.id == "host-veth/default/nginx-b")
        .unwrap();
    let cali = hv.ifname.clone().unwrap();
    assert_eq!(cali, cnlab::plan::names::terway_veth("default", "nginx-b"));
    let host_mac = p
        .veths
        .iter()
        .find(|v| v.a.name == cali)
        .unwrap()
        .a
        .mac
        .unwrap();
    assert_eq!(pod.neighs[0].mac, host_mac);
    assert_eq!(pod.neighs[0].ip.to_string(), "169.254.1.1");
    let node = &p.namespaces[hv.ns];
    assert!(node
        .routes
        .iter()
        .any(|r| render::route_line(r) == format!("172.16.1.2/32 dev {cali} scope link")));
    assert!(
        node.links.iter().all(|l| l.name == "kube-ipvs0"),
        "terway-vpc has no bridge (kube-ipvs0 is kube-proxy's)"
    );
    let nft = node.nft.as_deref().unwrap();
    assert!(
        nft.contains(
            "ip saddr 172.16.0.0/16 ip daddr != { 10.0.0.0/8, 172.16.0.0/16 } counter masquerade"
        ),
        "{nft}"
    );
    assert_eq!(p.route_entries.len(), 2);
}

#[test]
fn flannel_vxlan_has_vteps_and_no_route_entries() {
    let p = plan_file("scenarios/f2-flannel-vxlan.yaml");
    assert!(p.route_entries.is_empty());
    let n1 = ns(&p, "node/cn-hangzhou.10.0.4.20");
    let n2 = ns(&p, "node/cn-hangzhou.10.0.4.21");
    let vtep2 = n2.links.iter().find(|l| l.name == "flannel.1").unwrap();
    match &vtep2.kind {
        LinkKind::Vxlan {
            vni,
            local,
            port,
            dev,
            learning,
        } => {
            assert_eq!(
                (*vni, local.to_string(), *port, dev.as_deref(), *learning),
                (1, "10.0.4.21".into(), 4789, Some("eth0"), false)
            );
        }
        other => panic!("{other:?}"),
    }
    let routes: Vec<String> = n1.routes.iter().map(render::route_line).collect();
    assert!(
        routes.contains(&"172.16.1.0/24 via 172.16.1.0 dev flannel.1 onlink".to_string()),
        "{routes:?}"
    );
    let vtep_neigh: Vec<_> = n1.neighs.iter().filter(|n| n.dev == "flannel.1").collect();
    assert_eq!(vtep_neigh.len(), 1);
    assert_eq!(
        (vtep_neigh[0].ip.to_string(), vtep_neigh[0].mac),
        ("172.16.1.0".to_string(), vtep2.mac.unwrap())
    );
    assert_eq!(
        (n1.fdbs[0].mac, n1.fdbs[0].dst.to_string()),
        (vtep2.mac.unwrap(), "10.0.4.21".to_string())
    );
    assert!(n1
        .addrs
        .iter()
        .any(|a| a.dev == "flannel.1" && a.addr.to_string() == "172.16.0.0/32"));
    for name in ["flannel.1", "cni0"] {
        assert_eq!(
            n1.link_settings
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .mtu,
            Some(1450),
            "{name}"
        );
    }
    assert_eq!(
        ns(&p, "pod/default/client")
            .link_settings
            .iter()
            .find(|s| s.name == "eth0")
            .unwrap()
            .mtu,
        Some(1450)
    );
}

#[test]
fn servers_endpoints_for_nodes_externals_and_host_network_pods() {
    let p = plan_file("scenarios/f4-node-pod.yaml");
    let n2 = ns(&p, "node/cn-hangzhou.10.0.4.21");
    let served: BTreeMap<u16, &str> = n2
        .servers
        .iter()
        .map(|s| (s.port, s.identity.as_str()))
        .collect();
    assert_eq!(
        served,
        BTreeMap::from([
            (10250, "node/cn-hangzhou.10.0.4.21"),
            // kube-proxy's own health server (--healthz-bind-address).
            (10256, "node/cn-hangzhou.10.0.4.21 (kube-proxy healthz)"),
            (9100, "pod/monitoring/node-exporter-x7k2p")
        ])
    );
    let ex = p.endpoint("pod/monitoring/node-exporter-x7k2p").unwrap();
    assert_eq!(
        (ex.ns, ex.ip.to_string()),
        (
            p.ns_index("node/cn-hangzhou.10.0.4.21").unwrap(),
            "10.0.4.21".to_string()
        )
    );
    assert!(p.ns_index("pod/monitoring/node-exporter-x7k2p").is_none());

    let p = plan_file("scenarios/f5-ecs-outside-cluster.yaml");
    let x = p.endpoint("external/mysql-ecs").unwrap();
    assert_eq!(
        p.namespaces[x.ns].servers[0],
        ServerPlan {
            identity: "external/mysql-ecs".into(),
            port: 3306,
            tcp: true,
            udp: true,
            bind: None,
            http: None,
        }
    );
    let eni = p.enis.iter().find(|e| e.role == EniRole::External).unwrap();
    assert_eq!(
        (eni.instance.as_str(), eni.ips[0].to_string()),
        ("mysql-ecs", "10.0.3.72".to_string())
    );
    assert_eq!(
        p.endpoint("pod/prod/api-2").unwrap().ip.to_string(),
        "172.16.1.10",
        "status.podIP pins the address"
    );
}
