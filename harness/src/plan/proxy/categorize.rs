//! One Service port as the iptables and nftables proxiers see it on one
//! node: upstream's `ServicePortName`, `CategorizeEndpoints` and the
//! `Uses*Endpoints` / `*PolicyLocal` predicates (pkg/proxy/topology.go,
//! pkg/proxy/serviceport.go). IPVS does not use this: it programs virtual
//! servers (`super::virtual_servers`).

use std::net::Ipv4Addr;

use super::version::ProxyVersion;
use crate::plan::cloud::NodeCtx;
use crate::plan::types::*;
use crate::topology::model::Proto;

/// One port of one Service, categorized for one node.
#[derive(Debug, Clone)]
pub struct PortView {
    /// `ServicePortName.String()`: `ns/name`, or `ns/name:port` with a port name.
    pub name: String,
    /// Lower-case protocol as the proxiers write it (`tcp`, `udp`).
    pub proto: &'static str,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// Load balancer ingress IPs kube-proxy programs (not for the
    /// loadbalancer-hostname annotation: the status then carries no IP).
    pub lb_ips: Vec<Ipv4Addr>,
    /// Ready endpoints anywhere (used when the port `uses_cluster`).
    pub cluster: Vec<RealServer>,
    /// Ready endpoints on this node (used when the port `uses_local`).
    pub local: Vec<RealServer>,
    /// `internalTrafficPolicy: Local`, where this version honours it on its
    /// own (≥ 1.24; before, it narrows `cluster` instead).
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` on an externally accessible port.
    pub external_local: bool,
    pub has_endpoints: bool,
    /// `sessionAffinity: ClientIP`: `StickyMaxAgeSeconds`.
    pub affinity: Option<u32>,
    /// The Service's healthCheckNodePort (Local LoadBalancers).
    pub health_check_node_port: Option<u16>,
    /// `loadBalancerSourceRanges`: applies to the LB IPs only.
    pub source_ranges: Vec<ipnet::Ipv4Net>,
}

pub fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "udp",
        _ => "tcp",
    }
}

impl PortView {
    /// Upstream `usesFWChain`: LB IPs with source ranges.
    pub fn uses_firewall(&self) -> bool {
        !self.lb_ips.is_empty() && !self.source_ranges.is_empty()
    }
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.lb_ips.is_empty()
    }
    /// Cluster endpoints are needed for Cluster internal policy, and for any
    /// externally accessible port (Local short-circuits to them).
    pub fn uses_cluster(&self) -> bool {
        !self.internal_local || self.externally_accessible()
    }
    pub fn uses_local(&self) -> bool {
        self.internal_local || self.external_local
    }
    pub fn has_internal_endpoints(&self) -> bool {
        self.has_endpoints && (!self.internal_local || !self.local.is_empty())
    }
    pub fn has_external_endpoints(&self) -> bool {
        self.has_endpoints && (!self.external_local || !self.local.is_empty())
    }
    /// Every endpoint this node may DNAT to (one KUBE-SEP / endpoint chain each).
    pub fn reachable(&self) -> Vec<RealServer> {
        let mut out: Vec<RealServer> = Vec::new();
        let mut add = |rs: &[RealServer]| {
            for r in rs {
                if !out.iter().any(|o| o.ip == r.ip && o.port == r.port) {
                    out.push(r.clone());
                }
            }
        };
        if self.uses_cluster() {
            add(&self.cluster);
        }
        if self.uses_local() {
            add(&self.local);
        }
        out
    }
}

/// The endpoints of port `i` of `s` kube-proxy of `v` uses (only those on
/// `node`, when given) that have that port: a named targetPort a pod lacks
/// is no endpoint. Ready ones; where there is none, serving-and-terminating
/// ones from ProxyTerminatingEndpoints on (upstream `CategorizeEndpoints`:
/// cluster-wide for Cluster, on the node for Local).
pub fn real_servers(
    v: ProxyVersion,
    s: &ServicePlan,
    i: usize,
    node: Option<&str>,
) -> Vec<RealServer> {
    let ready = endpoints_where(s, i, node, |e| e.ready);
    if !ready.is_empty() || !v.terminating_fallback() {
        return ready;
    }
    endpoints_where(s, i, node, |e| e.serving && e.terminating)
}

fn endpoints_where(
    s: &ServicePlan,
    i: usize,
    node: Option<&str>,
    keep: impl Fn(&SvcEndpoint) -> bool,
) -> Vec<RealServer> {
    s.endpoints
        .iter()
        .filter(|e| keep(e))
        .filter(|e| node.is_none_or(|n| e.node == n))
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
}

/// Every port of every Service, as `node` sees it.
pub fn ports(v: ProxyVersion, services: &[ServicePlan], node: &NodeCtx) -> Vec<PortView> {
    let mut out = Vec::new();
    for s in services.iter().filter(|s| s.cluster_ip.is_some()) {
        for (i, port) in s.ports.iter().enumerate() {
            let lb_ips: Vec<Ipv4Addr> = v.lb_vip(s).into_iter().collect();
            let local = real_servers(v, s, i, Some(&node.name));
            let external_local = s.external_policy == TrafficPolicy::Local
                && (port.node_port.is_some() || !s.external_ips.is_empty() || !lb_ips.is_empty());
            // Before 1.24 iTP Local narrows every destination (FilterEndpoints).
            let cluster = v.service_endpoints(
                s.internal_policy,
                external_local,
                &real_servers(v, s, i, None),
                &local,
            );
            let view = PortView {
                name: match &port.name {
                    Some(n) if !n.is_empty() => format!("{}:{n}", s.key()),
                    _ => s.key(),
                },
                proto: proto_name(port.protocol),
                cluster_ip: s.cluster_ip,
                port: port.port,
                node_port: port.node_port,
                external_ips: s.external_ips.clone(),
                lb_ips,
                has_endpoints: !cluster.is_empty(),
                local,
                cluster,
                internal_local: s.internal_policy == TrafficPolicy::Local
                    && v.honours_internal_policy()
                    && v.separate_policies(),
                external_local,
                affinity: s.affinity_timeout,
                health_check_node_port: s.health_check_node_port,
                source_ranges: s.source_ranges.clone(),
            };
            out.push(view);
        }
    }
    out
}
