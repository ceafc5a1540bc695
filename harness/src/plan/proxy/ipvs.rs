//! kube-proxy in IPVS mode: every ClusterIP, ExternalIP and LB IP (unless
//! the Service carries the loadbalancer-hostname annotation) is bound as a
//! /32 on `kube-ipvs0`, so in-cluster traffic to them never leaves the node
//! and a port without a virtual server is answered by the local stack
//! (RST, or a local listener: C1/C4). The NAT is `nft::render`.
//!
//! Source address selection follows from the binding: the node connecting
//! to an address of its own `kube-ipvs0` uses that address as source (K9).

use std::net::Ipv4Addr;

use super::{append_nft, nft, KUBE_IPVS0};
use crate::plan::cloud::{host_net, NodeCtx};
use crate::plan::draft::Draft;
use crate::plan::types::*;

/// Binds the virtual addresses and appends the NAT table; returns what was bound.
pub fn program_node(d: &mut Draft, node: &NodeCtx, vss: &[VirtualServer]) -> Vec<Ipv4Addr> {
    let mut bound: Vec<Ipv4Addr> = Vec::new();
    for vs in vss.iter().filter(|v| v.kind != VipKind::NodePort) {
        if !bound.contains(&vs.addr) {
            bound.push(vs.addr);
        }
    }
    // kube-proxy creates kube-ipvs0 even with no Service.
    d.link(node.ns, KUBE_IPVS0, LinkKind::Dummy);
    for ip in &bound {
        d.addr(node.ns, KUBE_IPVS0, host_net(*ip), Scope::Global);
    }
    if d.plan.backends.ipvs {
        super::ipvs_native::program_node(d, node, vss);
    } else {
        append_nft(d, node.ns, &nft::render(vss));
    }
    bound
}
