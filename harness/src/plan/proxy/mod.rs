//! kube-proxy as plan-producing code, one driver per proxy mode behind
//! [`ProxyDriver`] (as netavark's `NetworkDriver`): a mode is one file plus
//! one line in [`DRIVERS`]. Each renders what kube-proxy of that mode and
//! version writes, from upstream's own semantics, never from another mode:
//!
//! - `ipvs`: addresses on `kube-ipvs0`, virtual servers ([`virtual_servers`]);
//!   real IPVS on a kernel with IP_VS (`ipvs_native`), an nftables
//!   emulation (`ipvs_emulation`) only where the kernel lacks it;
//! - `iptables`: `iptables-restore` input through iptables-nft, nothing bound;
//! - `nftables`: `table ip kube-proxy` with its maps and sets, nothing bound.
//!
//! Version gates live in `version`; the Service-port view the iptables and
//! nftables proxiers share (upstream `CategorizeEndpoints`) in `categorize`.

pub mod categorize;
pub mod healthcheck;
pub mod iptables;
pub mod iptables_xlb;
pub mod ipvs;
pub mod ipvs_emulation;
pub mod ipvs_native;
pub mod nftables;
pub mod services;
pub mod version;

use ipnet::Ipv4Net;

use crate::plan::cloud::NodeCtx;
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::{Cni, ProxyMode};
use version::ProxyVersion;

/// What a driver programs one node from.
pub struct NodeInput<'a> {
    pub node: &'a NodeCtx,
    pub version: ProxyVersion,
    pub services: &'a [ServicePlan],
    /// kube-proxy's `--cluster-cidr` (its local traffic detector): the pod
    /// CIDR where the CNI takes pod addresses from it; `None` (detector not
    /// implemented) where pods take VPC addresses.
    pub cluster_cidr: Option<Ipv4Net>,
    pub backends: Backends,
}

/// One kube-proxy mode.
pub trait ProxyDriver: Sync {
    fn mode(&self) -> ProxyMode;

    /// Whether kube-proxy of `v` has this mode (`Err`: why not, for
    /// `cluster.proxy`).
    fn check_version(&self, _v: ProxyVersion) -> Result<(), String> {
        Ok(())
    }

    /// What kube-proxy of `v` warns about at start in this mode.
    fn warnings(&self, _v: ProxyVersion) -> Vec<String> {
        Vec::new()
    }

    /// Facts about how the lab runs this mode (an emulation, say), for `plan`.
    fn notes(&self, _backends: Backends) -> Vec<String> {
        Vec::new()
    }

    /// Programs one node: links, addresses, rules, sysctls in its namespace.
    fn program_node(&self, d: &mut Draft, n: &NodeInput) -> ProxyNodePlan;

    /// Whether the nftables emulation must stand in for how real IPVS
    /// transmits (T6): as a locally-output packet, iif lo, so Terway's
    /// iif-bound `from <podIP> iif <veth>` rules do not match; the
    /// emulation only forwards (iif = the pod's veth) and needs the mark rule.
    fn emulates_reroute(&self, _backends: Backends) -> bool {
        false
    }
}

/// Every mode: one line each.
pub static DRIVERS: &[&dyn ProxyDriver] = &[&ipvs::Ipvs, &iptables::Iptables, &nftables::Nftables];

/// The driver of `mode`.
pub fn driver(mode: ProxyMode) -> &'static dyn ProxyDriver {
    DRIVERS
        .iter()
        .copied()
        .find(|d| d.mode() == mode)
        .unwrap_or(&ipvs::Ipvs)
}

/// Marks on the node (kube-proxy's own values where it has them).
pub const MASQ_MARK: u32 = 0x4000;
/// Emulation only: flows the nftables IPVS stand-in DNATed. Real IPVS sends
/// them from LOCAL_IN as locally-output packets (iif lo), so Terway's
/// `from <podIP> iif <veth>` rules (2048) miss them and the main table
/// routes them; the forwarded emulated packet still has iif = the veth.
pub const SERVICE_ROUTE_MARK: u32 = 0x1000;
/// Policy rule priority of `fwmark SERVICE_ROUTE_MARK lookup main` (only on
/// the IPVS emulation): before Terway's iif-bound pod rules (2048).
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
            let local = categorize::real_servers(v, s, i, Some(&node.name));
            let external_local = s.external_policy == TrafficPolicy::Local
                && (port.node_port.is_some()
                    || !s.external_ips.is_empty()
                    || v.lb_vip(s).is_some());
            let all = v.service_endpoints(
                s.internal_policy,
                external_local,
                &categorize::real_servers(v, s, i, None),
                &local,
            );
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
                persistence: s.affinity_timeout,
                source_ranges: if kind == VipKind::LoadBalancer {
                    s.source_ranges.clone()
                } else {
                    Vec::new()
                },
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
            if let Some(ip) = v.lb_vip(s) {
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

/// Programs kube-proxy on every node through the mode's driver, and the
/// re-routing rule where the IPVS emulation needs it.
pub fn program(d: &mut Draft, v: ProxyVersion, nodes: &[NodeCtx], cluster_cidr: Option<Ipv4Net>) {
    let services = d.plan.services.clone();
    let drv = driver(d.plan.proxy);
    let backends = d.plan.backends;
    for w in drv.warnings(v) {
        d.plan.notes.push(format!("kube-proxy warning: {w}"));
    }
    d.plan.notes.extend(drv.notes(backends));
    for node in nodes {
        let input = NodeInput {
            node,
            version: v,
            services: &services,
            cluster_cidr,
            backends,
        };
        let np = drv.program_node(d, &input);
        let health = healthcheck::servers(d.plan.proxy, &services, node);
        for hs in std::iter::once(healthcheck::proxier_server(v, node)).chain(health) {
            let servers = &mut d.ns(node.ns).servers;
            match servers.iter().find(|s| s.port == hs.port && s.tcp) {
                Some(other) => {
                    let note = format!(
                        "kube-proxy health check port {} on node {} is taken by {}: not served",
                        hs.port, node.name, other.identity
                    );
                    d.plan.notes.push(note);
                }
                None => servers.push(hs),
            }
        }
        // Only where a pod rule is iif-bound (Terway before v1.4.2): real
        // IPVS's re-routed packet matches a source-only rule 2048 just as
        // the emulation's forwarded one does.
        let iif_bound = d
            .ns(node.ns)
            .rules
            .iter()
            .any(|r| r.from.is_some() && r.iif.is_some());
        if drv.emulates_reroute(backends) && cni_routes_by_source(d.plan.cni) && iif_bound {
            d.ns(node.ns).rules.push(RulePlan {
                priority: SERVICE_ROUTE_RULE_PRIORITY,
                fwmark: Some((SERVICE_ROUTE_MARK, SERVICE_ROUTE_MARK)),
                table: TABLE_MAIN,
                ..Default::default()
            });
        }
        d.plan.proxy_nodes.push(np);
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
        let persistent = vs
            .persistence
            .map(|t| format!(" persistent {t}"))
            .unwrap_or_default();
        o += &format!(
            "{proto}  {}:{} rr{persistent}    # {} {:?} masquerade={:?}\n",
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
