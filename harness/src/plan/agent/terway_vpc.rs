//! Terway in VPC mode: pod IPs from the cluster pod CIDR, one veth per pod
//! (`cali…` on the host), host routes per pod, each node's pod CIDR slice a
//! VPC route entry.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

use super::{pod_ns, wired, wrong_ctx, Addressing, CniCtx, CniMode, CniOutput, ModeCtx, PodWire};
use crate::plan::cloud::NodeCtx;
use crate::plan::cloud::{default_net, host_net};
use crate::plan::draft::Draft;
use crate::plan::ipam::PlacedPod;
use crate::plan::names;
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::model::Cni;

pub struct TerwayVpc;

impl CniMode for TerwayVpc {
    fn cni(&self) -> Cni {
        Cni::TerwayVpc
    }
    fn addressing(&self) -> Addressing {
        Addressing::PodCidr
    }
    fn program(&self, d: &mut Draft, cx: ModeCtx<'_, '_>) -> Result<CniOutput, PlanError> {
        let ModeCtx::PodCidr { ctx, placement } = cx else {
            return Err(wrong_ctx(self.cni()));
        };
        Ok(program(d, ctx, placement))
    }
}

/// The pod's gateway: never configured anywhere, only a permanent
/// neighbour pointing at the host veth's MAC.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

pub fn program(
    d: &mut Draft,
    ctx: &CniCtx<'_>,
    placement: &crate::plan::ipam::Placement,
) -> CniOutput {
    let mut out = CniOutput::default();
    for (node, slice) in ctx.nodes.iter().zip(ctx.slices) {
        d.ns(node.ns).nft = Some(masquerade_nft(ctx.pod_cidr, &ctx.vpc_cidrs));
        out.route_entries.push((*slice, node.name.clone()));
    }
    for (p, ip) in wired(placement) {
        out.pods.push(veth_pod(d, &ctx.nodes[p.node], p, ip));
    }
    out
}

/// Terway's veth datapath for one pod: `cali…` on the host with a
/// `podIP/32` route to it; in the pod `podIP/32`, `default via 169.254.1.1
/// onlink` and a permanent neighbour 169.254.1.1 → the host veth's MAC.
pub fn veth_pod(d: &mut Draft, node: &NodeCtx, p: &PlacedPod, ip: Ipv4Addr) -> PodWire {
    let ns = pod_ns(d, p);
    let host_veth = names::terway_veth(&p.ns, &p.name);
    let (host_mac, _) = d.veth(node.ns, &host_veth, ns, "eth0");
    d.addr(ns, "eth0", host_net(ip), Scope::Global);
    d.route(ns, RoutePlan::via(default_net(), POD_GATEWAY, "eth0", true));
    d.ns(ns).neighs.push(NeighPlan {
        dev: "eth0".into(),
        ip: POD_GATEWAY,
        mac: host_mac,
    });
    d.route(node.ns, RoutePlan::link(host_net(ip), &host_veth));
    PodWire {
        key: p.key(),
        ns,
        host_veth,
    }
}

/// Pod traffic leaving both the pod network and the VPC is masqueraded.
pub fn masquerade_nft(pod_cidr: Ipv4Net, vpc_cidrs: &[Ipv4Net]) -> String {
    let mut keep = vec![pod_cidr];
    keep.extend_from_slice(vpc_cidrs);
    let keep: Vec<String> = Ipv4Net::aggregate(&keep)
        .iter()
        .map(|n| n.to_string())
        .collect();
    format!(
        "table ip cnlab_terway {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         ip saddr {pod_cidr} ip daddr != {{ {} }} counter masquerade comment \"terway: pod to outside the VPC\"\n  }}\n}}\n",
        keep.join(", ")
    )
}
