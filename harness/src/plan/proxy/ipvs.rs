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
        if n.backends.ipvs {
            ipvs_native::program_node(d, n.node, &vss);
        } else {
            let local: Vec<Ipv4Addr> = n
                .services
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.node == n.node.name)
                .map(|e| e.ip)
                .collect();
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
