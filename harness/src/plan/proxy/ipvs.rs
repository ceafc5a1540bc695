//! kube-proxy in IPVS mode (pkg/proxy/ipvs/proxier.go): every ClusterIP,
//! ExternalIP and LB IP (unless the Service carries the loadbalancer-hostname
//! annotation) is bound as a /32 on `kube-ipvs0`, so in-cluster traffic to
//! them never leaves the node and a port without a virtual server is
//! answered by the local stack (RST, or a local listener: C1/C4).
//!
//! The virtual servers come from `super::virtual_servers`. On a kernel with
//! IP_VS they are real IPVS services (`ipvs_native`); without it they run
//! as an nftables **emulation** (`ipvs_emulation`), labelled as such in
//! `plan`, `rules` and `doctor`. Real IPVS transmits from LOCAL_IN as a
//! locally-output packet (iif lo), so Terway's iif-bound pod rules miss it
//! (T6); the emulation forwards, and stands for that with rule 1024.
//!
//! Source address selection follows from the binding: the node connecting
//! to an address of its own `kube-ipvs0` uses that address as source (K9).

use std::net::Ipv4Addr;

use super::version::{self, ProxyVersion};
use super::{append_nft, ipvs_emulation, ipvs_native, NodeInput, ProxyDriver, KUBE_IPVS0};
use crate::plan::cloud::host_net;
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::ProxyMode;

pub struct Ipvs;

impl ProxyDriver for Ipvs {
    fn mode(&self) -> ProxyMode {
        ProxyMode::Ipvs
    }

    fn warnings(&self, v: ProxyVersion) -> Vec<String> {
        if v.ipvs_deprecated() {
            vec![version::IPVS_DEPRECATION.to_string()]
        } else {
            Vec::new()
        }
    }

    fn notes(&self, backends: Backends) -> Vec<String> {
        vec![crate::plan::render::ipvs_backend_label(backends.ipvs).into()]
    }

    fn program_node(&self, d: &mut Draft, n: &NodeInput) -> ProxyNodePlan {
        let vss = super::virtual_servers(n.version, n.services, n.node);
        let mut bound: Vec<Ipv4Addr> = Vec::new();
        for vs in vss.iter().filter(|v| v.kind != VipKind::NodePort) {
            if !bound.contains(&vs.addr) {
                bound.push(vs.addr);
            }
        }
        // kube-proxy creates kube-ipvs0 even with no Service.
        d.link(n.node.ns, KUBE_IPVS0, LinkKind::Dummy);
        for ip in &bound {
            d.addr(n.node.ns, KUBE_IPVS0, host_net(*ip), Scope::Global);
        }
        if let Some(fw) = source_ranges_firewall(&vss, n.node.ip) {
            append_nft(d, n.node.ns, &fw);
        }
        // Endpoints on this node: kube-proxy's KUBE-LOOP-BACK set, on both backends.
        let local: Vec<Ipv4Addr> = n
            .services
            .iter()
            .flat_map(|s| &s.endpoints)
            .filter(|e| e.node == n.node.name)
            .map(|e| e.ip)
            .collect();
        if n.backends.ipvs {
            ipvs_native::program_node(d, n.node, &vss, &local);
        } else {
            append_nft(d, n.node.ns, &ipvs_emulation::render(&vss, &local));
        }
        ProxyNodePlan {
            node: n.node.name.clone(),
            bound,
            virtual_servers: vss,
        }
    }

    /// Real IPVS transmits from LOCAL_IN as a locally-output packet (iif
    /// lo) and misses the iif-bound pod rules by itself; only the
    /// emulation, which forwards, needs the fwmark rule.
    fn emulates_reroute(&self, backends: Backends) -> bool {
        !backends.ipvs
    }
}

/// nft table holding the IPVS mode's loadBalancerSourceRanges firewall.
pub const FIREWALL_TABLE: &str = "cnlab_kube_proxy_firewall";

/// kube-proxy IPVS's source-range firewall (pkg/proxy/ipvs/proxier.go, in
/// the filter table since it moved out of nat): `KUBE-PROXY-FIREWALL`
/// from INPUT/FORWARD/OUTPUT for new connections, `-m set --match-set
/// KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL`, which
/// RETURNs what `KUBE-LOAD-BALANCER-SOURCE-CIDR` (lb ip, port, source
/// cidr) or `KUBE-LOAD-BALANCER-SOURCE-IP` (lb ip, port, lb ip: the node
/// itself, when a range holds the node IP) match and DROPs the rest. Here
/// one nftables rule per LB IP and port does the same. Both backends
/// (native IPVS and the emulation) use it: it is iptables, not IPVS.
pub fn source_ranges_firewall(vss: &[VirtualServer], node_ip: Ipv4Addr) -> Option<String> {
    let mut rules = String::new();
    for vs in vss
        .iter()
        .filter(|v| v.kind == VipKind::LoadBalancer && !v.source_ranges.is_empty())
    {
        let l4 = if vs.proto == crate::topology::model::Proto::Udp {
            "udp"
        } else {
            "tcp"
        };
        let mut allowed: Vec<String> = vs.source_ranges.iter().map(|c| c.to_string()).collect();
        if vs.source_ranges.iter().any(|c| c.contains(&node_ip)) {
            allowed.push(vs.addr.to_string());
        }
        // The connection's original tuple: real IPVS rewrites after filter
        // INPUT, the emulation's DNAT before it.
        rules += &format!(
            "    ct original ip daddr {} meta l4proto {l4} ct original proto-dst {} ct original ip saddr != {{ {} }} counter drop comment \"{} KUBE-LOAD-BALANCER-FW, not in KUBE-LOAD-BALANCER-SOURCE-CIDR/-SOURCE-IP\"\n",
            vs.addr,
            vs.port,
            allowed.join(", "),
            vs.service
        );
    }
    if rules.is_empty() {
        return None;
    }
    let mut s = format!(
        "table ip {FIREWALL_TABLE} {{\n  chain KUBE-SOURCE-RANGES-FIREWALL {{\n{rules}  }}\n"
    );
    for hook in ["input", "forward", "output"] {
        s += &format!(
            "  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n    ct state new jump KUBE-SOURCE-RANGES-FIREWALL comment \"KUBE-PROXY-FIREWALL\"\n  }}\n"
        );
    }
    s += "}\n";
    Some(s)
}
