//! kube-proxy in nftables mode (pkg/proxy/nftables/proxier.go,
//! `setupNFTables` + `syncProxyRules`): one table `ip kube-proxy` with
//! upstream's base chains (`filter-*` at dstnat-10, `nat-*`), the verdict
//! maps `service-ips`, `service-nodeports`, `no-endpoint-services`,
//! `no-endpoint-nodeports`, `firewall-ips`, the sets `cluster-ips` and
//! `nodeport-ips`, and per Service port the chains `service-…`, `local-…`,
//! `external-…`, `endpoint-…` named as upstream names them, and with
//! ClientIP affinity one timeout set `affinity-…` per endpoint.
//!
//! Semantics differ from iptables mode where upstream's do: NodePorts only
//! on the node's primary address (`nodeport-ips`, nodePortAddresses
//! defaulting to `primary`), never on 127.0.0.1 (no route_localnet), and a
//! ClusterIP port without a Service is rejected (`cluster-ips-check`).
//! Nothing is bound; no re-route rule.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use super::categorize::{self, PortView};
use super::iptables::base32;
use super::version::{ProxyVersion, NFTABLES_SINCE};
use super::{append_nft, NodeInput, ProxyDriver, MASQ_MARK};
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::ProxyMode;

pub const TABLE: &str = "kube-proxy";

pub struct Nftables;

impl ProxyDriver for Nftables {
    fn mode(&self) -> ProxyMode {
        ProxyMode::Nftables
    }

    fn check_version(&self, v: ProxyVersion) -> Result<(), String> {
        if v.has_nftables_mode() {
            Ok(())
        } else {
            Err(format!(
                "kube-proxy has no nftables mode before {NFTABLES_SINCE} (KEP-3866); cluster.kubernetes is {}: use proxy: iptables or ipvs",
                v.0
            ))
        }
    }

    fn warnings(&self, v: ProxyVersion) -> Vec<String> {
        if v.has_nftables_mode() && v.0 < super::version::NFTABLES_DEFAULT_ON_SINCE {
            vec!["nftables mode is alpha before 1.31: kube-proxy needs --feature-gates=NFTablesProxyMode=true".into()]
        } else {
            Vec::new()
        }
    }

    fn program_node(&self, d: &mut Draft, n: &NodeInput) -> ProxyNodePlan {
        let ports = categorize::ports(n.version, n.services, n.node);
        let local = n.cluster_cidr.map(|c| c.to_string());
        append_nft(d, n.node.ns, &render(&ports, n.node.ip, local.as_deref()));
        ProxyNodePlan {
            node: n.node.name.clone(),
            bound: Vec::new(),
            virtual_servers: Vec::new(),
        }
    }
}

/// `HASH-ns/name/proto/port` where HASH is 8 characters of
/// base32(sha256(the rest)) (upstream `hashAndTruncate`; never truncated here).
fn hashed(name: &str) -> String {
    format!("{}-{name}", &base32::encode(&Sha256::digest(name))[..8])
}

/// `service-`, `local-`, `external-` + the port's base name.
pub fn chain(prefix: &str, p: &PortView) -> String {
    let (nsname, port) = p.name.split_once(':').unwrap_or((&p.name, ""));
    format!(
        "{prefix}{}",
        hashed(&format!("{nsname}/{}/{port}", p.proto))
    )
}

/// `endpoint-` + `HASH-ns/name/proto/port__ip/port`.
pub fn endpoint_chain(p: &PortView, ep: &RealServer) -> String {
    let (nsname, port) = p.name.split_once(':').unwrap_or((&p.name, ""));
    format!(
        "endpoint-{}",
        hashed(&format!(
            "{nsname}/{}/{port}__{}/{}",
            p.proto, ep.ip, ep.port
        ))
    )
}

/// `affinity-` + the endpoint chain's base name: the ClientIP affinity
/// set of one endpoint (source addresses with a timeout).
pub fn affinity_set(p: &PortView, ep: &RealServer) -> String {
    endpoint_chain(p, ep).replacen("endpoint-", "affinity-", 1)
}

/// The whole table for one node.
pub fn render(ports: &[PortView], node_ip: std::net::Ipv4Addr, if_local: Option<&str>) -> String {
    let mark = format!("{MASQ_MARK:#x}");
    let mut o = format!("table ip {TABLE} {{\n  comment \"rules for kube-proxy\"\n");
    let mut cluster_ips = Vec::new();
    let mut service_ips = Vec::new();
    let mut service_nodeports = Vec::new();
    let mut no_ep_services = Vec::new();
    let mut no_ep_nodeports = Vec::new();
    let mut chains: Vec<(String, Vec<String>)> = Vec::new();
    let mut affinity_sets: Vec<String> = Vec::new();
    let mut firewall_ips: Vec<String> = Vec::new();
    let add = |chains: &mut Vec<(String, Vec<String>)>, name: &str, rule: String| match chains
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some((_, rules)) => rules.push(rule),
        None => chains.push((name.to_string(), vec![rule])),
    };
    for p in ports {
        let svc_chain = chain("service-", p);
        let local_chain = chain("local-", p);
        let ext_chain = chain("external-", p);
        let internal_chain = if p.internal_local {
            &local_chain
        } else {
            &svc_chain
        };
        let external_policy = if p.external_local {
            &local_chain
        } else {
            &svc_chain
        };
        let (int_verdict, ext_verdict) = if !p.has_endpoints {
            ("goto reject-chain", "goto reject-chain")
        } else {
            ("drop", "drop")
        };
        let (has_int, has_ext) = (p.has_internal_endpoints(), p.has_external_endpoints());
        let comment = format!("comment \"{}\"", p.name);
        if let Some(cip) = p.cluster_ip {
            cluster_ips.push(cip.to_string());
            if has_int {
                service_ips.push(format!(
                    "{cip} . {} . {} : goto {internal_chain}",
                    p.proto, p.port
                ));
            } else {
                no_ep_services.push(format!(
                    "{cip} . {} . {} {comment} : {int_verdict}",
                    p.proto, p.port
                ));
            }
        }
        for ip in p.external_ips.iter().chain(&p.lb_ips) {
            if p.has_endpoints {
                service_ips.push(format!(
                    "{ip} . {} . {} : goto {ext_chain}",
                    p.proto, p.port
                ));
            }
            if !has_ext {
                no_ep_services.push(format!(
                    "{ip} . {} . {} {comment} : {ext_verdict}",
                    p.proto, p.port
                ));
            }
        }
        if p.uses_firewall() {
            // loadBalancerSourceRanges, checked in filter-prerouting before
            // DNAT; the node reaching its own LB IP may use it as source.
            let fw = chain("firewall-", p);
            let mut allowed: Vec<String> = p.source_ranges.iter().map(|c| c.to_string()).collect();
            if p.source_ranges.iter().any(|c| c.contains(&node_ip)) {
                allowed.extend(p.lb_ips.iter().map(|i| i.to_string()));
            }
            for ip in &p.lb_ips {
                firewall_ips.push(format!("{ip} . {} . {} : goto {fw}", p.proto, p.port));
            }
            add(
                &mut chains,
                &fw,
                format!("ip saddr != {{ {} }} drop", allowed.join(", ")),
            );
        }
        if let Some(np) = p.node_port {
            if p.has_endpoints {
                service_nodeports.push(format!("{} . {np} : goto {ext_chain}", p.proto));
            }
            if !has_ext {
                no_ep_nodeports.push(format!("{} . {np} {comment} : {ext_verdict}", p.proto));
            }
        }
        if let (true, Some(cip), Some(local)) = (has_int, p.cluster_ip, if_local) {
            add(
                &mut chains,
                internal_chain,
                format!(
                    "ip daddr {cip} {} dport {} ip saddr != {local} jump mark-for-masquerade",
                    p.proto, p.port
                ),
            );
        }
        if p.has_endpoints && p.externally_accessible() {
            if !p.external_local {
                add(&mut chains, &ext_chain, "jump mark-for-masquerade".into());
            } else {
                if let Some(local) = if_local {
                    add(
                        &mut chains,
                        &ext_chain,
                        format!("ip saddr {local} goto {svc_chain} comment \"short-circuit pod traffic\""),
                    );
                }
                add(
                    &mut chains,
                    &ext_chain,
                    "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"".into(),
                );
                add(
                    &mut chains,
                    &ext_chain,
                    format!("fib saddr type local goto {svc_chain} comment \"short-circuit local traffic\""),
                );
            }
            if has_ext {
                add(&mut chains, &ext_chain, format!("goto {external_policy}"));
            }
        }
        for (used, name, eps) in [
            (p.uses_cluster(), &svc_chain, &p.cluster),
            (p.uses_local(), &local_chain, &p.local),
        ] {
            if !used || eps.is_empty() {
                continue;
            }
            // ClientIP affinity first: a client in an endpoint's set goes
            // back to that endpoint.
            if p.affinity.is_some() {
                for ep in eps {
                    add(
                        &mut chains,
                        name,
                        format!(
                            "ip saddr @{} goto {}",
                            affinity_set(p, ep),
                            endpoint_chain(p, ep)
                        ),
                    );
                }
            }
            let items: Vec<String> = eps
                .iter()
                .enumerate()
                .map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(p, ep)))
                .collect();
            add(
                &mut chains,
                name,
                format!(
                    "numgen random mod {} vmap {{ {} }}",
                    eps.len(),
                    items.join(", ")
                ),
            );
        }
        for ep in p.reachable() {
            let c = endpoint_chain(p, &ep);
            // Hairpin: an endpoint reaching itself through the service.
            add(
                &mut chains,
                &c,
                format!("ip saddr {} jump mark-for-masquerade", ep.ip),
            );
            if let Some(secs) = p.affinity {
                let set = affinity_set(p, &ep);
                // Upstream's flags: "dynamic" too, or the kernel adds it.
                affinity_sets.push(format!(
                    "  set {set} {{\n    type ipv4_addr\n    flags dynamic,timeout\n    timeout {secs}s\n  }}\n"
                ));
                add(&mut chains, &c, format!("update @{set} {{ ip saddr }}"));
            }
            add(
                &mut chains,
                &c,
                format!("meta l4proto {} dnat to {}:{}", p.proto, ep.ip, ep.port),
            );
        }
    }
    let elements = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("    elements = {{ {} }}\n", v.join(",\n      "))
        }
    };
    let _ = write!(
        o,
        "  set cluster-ips {{\n    type ipv4_addr\n    comment \"Active ClusterIPs\"\n{}  }}\n",
        elements(&cluster_ips)
    );
    let _ = write!(
        o,
        "  set nodeport-ips {{\n    type ipv4_addr\n    comment \"IPs that accept NodePort traffic\"\n    elements = {{ {node_ip} }}\n  }}\n"
    );
    for set in &affinity_sets {
        o += set;
    }
    for (name, ty, comment, items) in [
        (
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to services with no endpoints",
            &no_ep_services,
        ),
        (
            "no-endpoint-nodeports",
            "inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to service nodeports with no endpoints",
            &no_ep_nodeports,
        ),
        (
            "firewall-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "destinations that are subject to LoadBalancerSourceRanges",
            &firewall_ips,
        ),
        (
            "service-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
            &service_ips,
        ),
        (
            "service-nodeports",
            "inet_proto . inet_service : verdict",
            "NodePort traffic",
            &service_nodeports,
        ),
    ] {
        let _ = write!(
            o,
            "  map {name} {{\n    type {ty}\n    comment \"{comment}\"\n{}  }}\n",
            elements(items)
        );
    }
    let base = [
        (
            "filter-prerouting",
            "filter",
            "prerouting",
            "-110",
            vec!["ct state new jump firewall-check"],
        ),
        (
            "filter-input",
            "filter",
            "input",
            "-110",
            vec![
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-forward",
            "filter",
            "forward",
            "-110",
            vec![
                "ct state new jump service-endpoints-check",
                "ct state new jump cluster-ips-check",
            ],
        ),
        (
            "filter-output",
            "filter",
            "output",
            "-110",
            vec![
                "ct state new jump service-endpoints-check",
                "ct state new jump firewall-check",
            ],
        ),
        (
            "filter-output-post-dnat",
            "filter",
            "output",
            "-90",
            vec!["ct state new jump cluster-ips-check"],
        ),
        (
            "nat-prerouting",
            "nat",
            "prerouting",
            "-100",
            vec!["jump services"],
        ),
        ("nat-output", "nat", "output", "-100", vec!["jump services"]),
        (
            "nat-postrouting",
            "nat",
            "postrouting",
            "100",
            vec!["jump masquerading"],
        ),
    ];
    // Upstream's priorities are dstnat-10, dstnat+10, dstnat and srcnat;
    // written as numbers since nft accepts the names only on some hooks.
    for (name, ty, hook, prio, rules) in base {
        let _ = writeln!(
            o,
            "  chain {name} {{\n    type {ty} hook {hook} priority {prio}; policy accept;"
        );
        for r in rules {
            let _ = writeln!(o, "    {r}");
        }
        o += "  }\n";
    }
    let fixed = [
        ("nodeport-endpoints-check", vec!["ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports".to_string()]),
        ("service-endpoints-check", vec!["ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into()]),
        ("firewall-check", vec!["ip daddr . meta l4proto . th dport vmap @firewall-ips".into()]),
        ("services", vec![
            "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports".into(),
        ]),
        ("masquerading", vec![
            format!("meta mark & {mark} == 0 return"),
            format!("meta mark set meta mark ^ {mark}"),
            "masquerade fully-random".into(),
        ]),
        ("mark-for-masquerade", vec![format!("meta mark set meta mark | {mark}")]),
        ("cluster-ips-check", vec!["ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"".into()]),
        ("reject-chain", vec!["reject".into()]),
    ];
    for (name, rules) in fixed
        .iter()
        .map(|(n, r)| (n.to_string(), r.clone()))
        .chain(chains)
    {
        let _ = writeln!(o, "  chain {name} {{");
        for r in rules {
            let _ = writeln!(o, "    {r}");
        }
        o += "  }\n";
    }
    o += "}\n";
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str) -> PortView {
        PortView {
            name: name.into(),
            proto: "tcp",
            cluster_ip: None,
            port: 80,
            node_port: None,
            external_ips: vec![],
            lb_ips: vec![],
            cluster: vec![],
            local: vec![],
            internal_local: false,
            external_local: false,
            has_endpoints: false,
            affinity: None,
            health_check_node_port: None,
            source_ranges: vec![],
        }
    }

    #[test]
    fn chain_names_match_upstream() {
        // pkg/proxy/nftables/proxier.go doc comments: "ULMVA6XW-ns1/svc1/tcp/p80"
        // and "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80".
        let p = view("ns1/svc1:p80");
        assert_eq!(chain("service-", &p), "service-ULMVA6XW-ns1/svc1/tcp/p80");
        let ep = RealServer {
            ip: "10.180.0.1".parse().unwrap(),
            port: 80,
            pod: String::new(),
        };
        assert_eq!(
            endpoint_chain(&p, &ep),
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }
}
