//! kube-proxy's iptables mode before 1.24: the `KUBE-XLB-*` layout of
//! pkg/proxy/iptables/proxier.go as 1.22/1.23 shipped it (1.24 renamed and
//! reorganised it into `KUBE-EXT-*` / `KUBE-SVL-*`, kubernetes PR 109060 on
//! top of PR 106497; see `version`). What differs from `iptables`:
//!
//! - one `KUBE-SVC-*` per port holding every endpoint the Service uses
//!   (`FilterEndpoints`: `internalTrafficPolicy: Local` narrows them for
//!   every destination, `externalTrafficPolicy: Local` ignores it);
//! - masquerade rules live in `KUBE-SVC-*`, one per destination (cluster
//!   IP from off-cluster, each external IP, each NodePort);
//! - `KUBE-FW-*` for every LB IP, ending in `-j KUBE-MARK-DROP`;
//! - `KUBE-XLB-*` for `externalTrafficPolicy: Local`: pods → `KUBE-SVC-*`,
//!   LOCAL sources masqueraded → `KUBE-SVC-*`, then the local endpoints or
//!   `-j KUBE-MARK-DROP` ("has no local endpoints"), which the kubelet's
//!   `KUBE-FIREWALL` drops in filter INPUT/OUTPUT.
//!
//! The chains, jumps, endpoint and balancing rules shared with later
//! versions come from `iptables`.

use super::categorize::PortView;
use super::iptables::{
    chain, dest, endpoint_rules, finish, service_to_endpoints, tables, Input, Table, MARK_DROP,
    MARK_MASQ,
};

/// The whole restore input for one node, as kube-proxy < 1.24 wrote it.
pub fn render(n: &Input) -> String {
    let (mut filter, mut nat) = tables(n, false);
    let if_local = n.cluster_cidr.map(|c| format!("-s {c}"));
    let if_not_local = n.cluster_cidr.map(|c| format!("! -s {c}"));
    for p in n.ports {
        let name = &p.name;
        let svc = chain("KUBE-SVC-", name, p.proto);
        let xlb = chain("KUBE-XLB-", name, p.proto);
        let fw = chain("KUBE-FW-", name, p.proto);
        // `p.cluster` is what FilterEndpoints left (see `version::service_endpoints`).
        let has = !p.cluster.is_empty();
        endpoint_rules(&mut nat, p);
        if has {
            nat.chain(&svc);
        }
        if p.external_local {
            nat.chain(&xlb);
        }
        let no_endpoints = |filter: &mut Table, chain: &str, match_: &str| {
            filter.rule(
                chain,
                format!("-m comment --comment \"{name} has no endpoints\" {match_} -j REJECT"),
            );
        };
        if let Some(ip) = p.cluster_ip {
            let d = dest(p, ip, p.port);
            if !has {
                no_endpoints(&mut filter, "KUBE-SERVICES", &d);
            } else {
                let args = format!("-m comment --comment \"{name} cluster IP\" {d}");
                // Off-cluster clients routed to the service range may bounce off-node.
                if let Some(not_local) = &if_not_local {
                    nat.rule(&svc, format!("{args} {not_local} -j {MARK_MASQ}"));
                }
                nat.rule("KUBE-SERVICES", format!("{args} -j {svc}"));
            }
        }
        for ip in &p.external_ips {
            let d = dest(p, ip, p.port);
            if !has {
                no_endpoints(&mut filter, "KUBE-EXTERNAL-SERVICES", &d);
                continue;
            }
            let args = format!("-m comment --comment \"{name} external IP\" {d}");
            let to = if p.external_local {
                &xlb
            } else {
                // Cluster: masquerade what pods and nodes did not send
                // (everything, without a local traffic detector).
                match &if_not_local {
                    Some(not_local) => nat.rule(&svc, format!("{args} {not_local} -j {MARK_MASQ}")),
                    None => nat.rule(&svc, format!("{args} -j {MARK_MASQ}")),
                }
                &svc
            };
            nat.rule("KUBE-SERVICES", format!("{args} -j {to}"));
        }
        for ip in &p.lb_ips {
            let d = dest(p, ip, p.port);
            if !has {
                no_endpoints(&mut filter, "KUBE-EXTERNAL-SERVICES", &d);
                continue;
            }
            nat.chain(&fw);
            let c = format!("-m comment --comment \"{name} loadbalancer IP\"");
            nat.rule("KUBE-SERVICES", format!("{c} {d} -j {fw}"));
            let to = if p.external_local {
                &xlb
            } else {
                nat.rule(&fw, format!("{c} -j {MARK_MASQ}"));
                &svc
            };
            if p.source_ranges.is_empty() {
                nat.rule(&fw, format!("{c} -j {to}"));
            } else {
                for cidr in &p.source_ranges {
                    nat.rule(&fw, format!("{c} -s {cidr} -j {to}"));
                }
                // The node reaching its own LB IP may use it as source.
                if p.source_ranges.iter().any(|r| r.contains(&n.node_ip)) {
                    nat.rule(&fw, format!("{c} -s {ip}/32 -j {to}"));
                }
            }
            // Not DNATed by now: not let through by the firewall.
            nat.rule(&fw, format!("{c} -j {MARK_DROP}"));
        }
        if let Some(np) = p.node_port {
            let port = format!("-m {0} -p {0} --dport {np}", p.proto);
            if !has {
                no_endpoints(
                    &mut filter,
                    "KUBE-EXTERNAL-SERVICES",
                    &format!("-m addrtype --dst-type LOCAL {port}"),
                );
            } else {
                let args = format!("-m comment --comment {name} {port}");
                if !p.external_local {
                    nat.rule(&svc, format!("{args} -j {MARK_MASQ}"));
                    nat.rule("KUBE-NODEPORTS", format!("{args} -j {svc}"));
                } else {
                    // "Fix localhost martian source error".
                    nat.rule(
                        "KUBE-NODEPORTS",
                        format!("{args} -s 127.0.0.0/8 -j {MARK_MASQ}"),
                    );
                    nat.rule("KUBE-NODEPORTS", format!("{args} -j {xlb}"));
                }
            }
        }
        if let Some(hc) = p.health_check_node_port {
            filter.rule(
                "KUBE-NODEPORTS",
                format!("-m comment --comment \"{name} health check node port\" -m tcp -p tcp --dport {hc} -j ACCEPT"),
            );
        }
        if !has {
            continue;
        }
        service_to_endpoints(&mut nat, p, &svc, &p.cluster);
        if p.external_local {
            xlb_rules(&mut nat, p, &svc, &xlb, if_local.as_deref());
        }
    }
    finish(filter, nat, n.localhost_nodeports)
}

/// `KUBE-XLB-*` of a Local Service: pods and the node itself reach every
/// endpoint (the node masqueraded), others only this node's or none.
fn xlb_rules(nat: &mut Table, p: &PortView, svc: &str, xlb: &str, if_local: Option<&str>) {
    let name = &p.name;
    if let Some(local) = if_local {
        nat.rule(
            xlb,
            format!("-m comment --comment \"Redirect pods trying to reach external loadbalancer VIP to clusterIP\" {local} -j {svc}"),
        );
    }
    nat.rule(
        xlb,
        format!("-m comment --comment \"masquerade LOCAL traffic for {name} LB IP\" -m addrtype --src-type LOCAL -j {MARK_MASQ}"),
    );
    nat.rule(
        xlb,
        format!("-m comment --comment \"route LOCAL traffic for {name} LB IP to service chain\" -m addrtype --src-type LOCAL -j {svc}"),
    );
    if p.local.is_empty() {
        nat.rule(
            xlb,
            format!("-m comment --comment \"{name} has no local endpoints\" -j {MARK_DROP}"),
        );
    } else {
        service_to_endpoints(nat, p, xlb, &p.local);
    }
}
