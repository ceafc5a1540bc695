//! kube-proxy in iptables mode: nothing is bound; the NAT rules match
//! VIP:port only, so a ClusterIP on a port without a rule is not local and
//! is routed like any other address (it times out instead of being
//! refused). Local/Cluster and masquerade are as in IPVS mode.

use std::net::Ipv4Addr;

use super::{append_nft, nft};
use crate::plan::cloud::NodeCtx;
use crate::plan::draft::Draft;
use crate::plan::types::*;

pub fn program_node(d: &mut Draft, node: &NodeCtx, vss: &[VirtualServer]) -> Vec<Ipv4Addr> {
    append_nft(d, node.ns, &nft::render(vss));
    Vec::new()
}
