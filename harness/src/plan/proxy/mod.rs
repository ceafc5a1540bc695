//! kube-proxy as plan-producing code: per node, the virtual servers of every
//! Service (chosen by the version rules in `version`), rendered as kernel
//! objects by the mode: `ipvs` (addresses on `kube-ipvs0`, NAT with IPVS
//! semantics) or `iptables` (nothing bound, rules match VIP:port only).

pub mod iptables;
pub mod ipvs;
pub mod ipvs_native;
pub mod nft;
pub mod services;
pub mod version;

use crate::plan::cloud::NodeCtx;
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::{Cni, ProxyMode};
use version::ProxyVersion;

/// Marks on the node (kube-proxy's own values where it has them).
pub const MASQ_MARK: u32 = 0x4000;
/// Service-NATed flows: routed by the main table (IPVS re-routes by destination).
pub const SERVICE_ROUTE_MARK: u32 = 0x1000;
/// Policy rule priority of `fwmark SERVICE_ROUTE_MARK lookup main`: before
/// Terway's `from <podIP> lookup <eni table>` rules (2048).
pub const SERVICE_ROUTE_RULE_PRIORITY: u32 = 1024;
/// The address holder kube-proxy's IPVS mode binds every virtual IP to.
pub const KUBE_IPVS0: &str = "kube-ipvs0";

/// The virtual servers `node` gets for every Service.
pub fn virtual_servers(
    v: ProxyVersion,
    services: &[ServicePlan],
    node: &NodeCtx,
) -> Vec<VirtualServer> {
    let mut out = Vec::new();
    for s in services {
        for (i, port) in s.ports.iter().enumerate() {
            let rs_of = |eps: &[&SvcEndpoint]| -> Vec<RealServer> {
                eps.iter()
                    .filter_map(|e| {
                        e.target_ports
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|p| RealServer {
                                ip: e.ip,
                                port: p,
                                pod: e.pod.clone(),
                            })
                    })
                    .collect()
            };
            let all: Vec<&SvcEndpoint> = s.endpoints.iter().collect();
            let local: Vec<&SvcEndpoint> =
                s.endpoints.iter().filter(|e| e.node == node.name).collect();
            let (all, local) = (rs_of(&all), rs_of(&local));
            let external = v.external_real_servers(s.external_policy, &all, &local);
            let ext_masq = match s.external_policy {
                TrafficPolicy::Cluster => Masquerade::Always,
                TrafficPolicy::Local => Masquerade::Never,
            };
            let vs = |kind, addr, port_no, rs: &Vec<RealServer>, masquerade| VirtualServer {
                service: s.key(),
                kind,
                addr,
                port: port_no,
                proto: port.protocol,
                real_servers: rs.clone(),
                masquerade,
            };
            if let Some(ip) = s.cluster_ip {
                let internal = v.internal_real_servers(s.internal_policy, &all, &local);
                out.push(vs(
                    VipKind::ClusterIp,
                    ip,
                    port.port,
                    &internal,
                    Masquerade::NodeOrigin,
                ));
            }
            for ip in &s.external_ips {
                out.push(vs(VipKind::ExternalIp, *ip, port.port, &external, ext_masq));
            }
            if let (ServiceType::LoadBalancer, Some(ip), false) = (s.type_, s.lb_ip, s.lb_hostname)
            {
                out.push(vs(
                    VipKind::LoadBalancer,
                    ip,
                    port.port,
                    &external,
                    ext_masq,
                ));
            }
            if let Some(np) = port.node_port {
                out.push(vs(VipKind::NodePort, node.ip, np, &external, ext_masq));
            }
        }
    }
    out
}

/// CNIs that policy-route pod traffic by source (`from <podIP> lookup …`).
pub fn cni_routes_by_source(cni: Cni) -> bool {
    crate::plan::agent::routes_by_source(cni)
}

/// Programs kube-proxy on every node: virtual servers, `kube-ipvs0` (IPVS
/// mode), the nft table (appended to the CNI's), and the re-routing rule.
pub fn program(d: &mut Draft, v: ProxyVersion, nodes: &[NodeCtx]) {
    let services = d.plan.services.clone();
    let mode = d.plan.proxy;
    // Real IPVS re-routes by destination itself; only the emulation needs
    // the fwmark rule.
    let native_ipvs = mode == ProxyMode::Ipvs && d.plan.backends.ipvs;
    if mode == ProxyMode::Ipvs {
        d.plan
            .notes
            .push(crate::plan::render::ipvs_backend_label(native_ipvs).into());
    }
    for node in nodes {
        let vss = virtual_servers(v, &services, node);
        let bound = match mode {
            ProxyMode::Ipvs => ipvs::program_node(d, node, &vss),
            ProxyMode::Iptables => iptables::program_node(d, node, &vss),
        };
        if cni_routes_by_source(d.plan.cni) && !native_ipvs {
            d.ns(node.ns).rules.push(RulePlan {
                priority: SERVICE_ROUTE_RULE_PRIORITY,
                fwmark: Some((SERVICE_ROUTE_MARK, SERVICE_ROUTE_MARK)),
                table: TABLE_MAIN,
                ..Default::default()
            });
        }
        d.plan.proxy_nodes.push(ProxyNodePlan {
            node: node.name.clone(),
            bound,
            virtual_servers: vss,
        });
    }
}

/// Appends `script` to the namespace's nft script.
pub fn append_nft(d: &mut Draft, ns: NsIdx, script: &str) {
    let nsp = d.ns(ns);
    nsp.nft = Some(match nsp.nft.take() {
        Some(s) => s + script,
        None => script.to_string(),
    });
}

/// `ipvsadm -Ln`-style listing of a node's virtual servers.
pub fn ipvsadm_listing(p: &ProxyNodePlan) -> String {
    let mut o = String::from("Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for vs in &p.virtual_servers {
        let proto = if vs.proto == crate::topology::model::Proto::Udp {
            "UDP"
        } else {
            "TCP"
        };
        o += &format!(
            "{proto}  {}:{} rr    # {} {:?} masquerade={:?}\n",
            vs.addr, vs.port, vs.service, vs.kind, vs.masquerade
        );
        for rs in &vs.real_servers {
            // IPVS forwards in NAT ("Masq") mode; whether the source is
            // also rewritten is kube-proxy's nft masquerade, shown above.
            o += &format!(
                "  -> {:<28} Masq    1      0          0          # {}\n",
                format!("{}:{}", rs.ip, rs.port),
                rs.pod
            );
        }
    }
    o
}
