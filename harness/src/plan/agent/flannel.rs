//! Flannel on Alibaba Cloud: the `ali-vpc` backend (host-gw style: each
//! node's subnet is a VPC route entry) and the `vxlan` backend. Pods hang
//! off the `cni0` bridge (CNI bridge plugin); flannel's ip-masq rules sit in
//! POSTROUTING.

use ipnet::{IpNet, Ipv4Net};

use super::{
    nth, pod_ns, wired, wrong_ctx, Addressing, CniCtx, CniMode, CniOutput, ModeCtx, PodWire,
};
use crate::plan::cloud::{default_net, host_net, net};
use crate::plan::draft::Draft;
use crate::plan::names;
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::model::Cni;

/// flannel (`ali-vpc` backend) or flannel-vxlan.
pub struct Flannel {
    pub vxlan: bool,
}

impl CniMode for Flannel {
    fn cni(&self) -> Cni {
        if self.vxlan {
            Cni::FlannelVxlan
        } else {
            Cni::Flannel
        }
    }
    fn addressing(&self) -> Addressing {
        Addressing::PodCidr
    }
    fn program(&self, d: &mut Draft, cx: ModeCtx<'_, '_>) -> Result<CniOutput, PlanError> {
        let ModeCtx::PodCidr { ctx, placement } = cx else {
            return Err(wrong_ctx(self.cni()));
        };
        Ok(program(d, ctx, placement, self.vxlan))
    }
}

pub const BRIDGE: &str = "cni0";
pub const VXLAN_DEV: &str = "flannel.1";
pub const VXLAN_VNI: u32 = 1;
pub const VXLAN_PORT: u16 = 4789;
/// 1500 minus the 50 bytes of VXLAN encapsulation.
pub const VXLAN_MTU: u32 = 1450;

pub fn program(
    d: &mut Draft,
    ctx: &CniCtx<'_>,
    placement: &crate::plan::ipam::Placement,
    vxlan: bool,
) -> CniOutput {
    let mut out = flanneld(d, ctx, vxlan);
    let mtu = vxlan.then_some(VXLAN_MTU);
    // What the CNI bridge plugin makes on the first ADD (isGateway).
    for (node, slice) in ctx.nodes.iter().zip(ctx.slices) {
        d.link(node.ns, BRIDGE, LinkKind::Bridge);
        d.setting(node.ns, BRIDGE).mtu = mtu;
        d.addr(
            node.ns,
            BRIDGE,
            net(nth(*slice, 1), slice.prefix_len()),
            Scope::Global,
        );
    }
    for (p, ip) in wired(placement) {
        let node = &ctx.nodes[p.node];
        let slice = ctx.slices[p.node];
        let ns = pod_ns(d, p);
        let key = p.key();
        let host_veth = names::flannel_veth(&key.to_string());
        d.veth(node.ns, &host_veth, ns, "eth0");
        let s = d.setting(node.ns, &host_veth);
        s.master = Some(BRIDGE.into());
        s.mtu = mtu;
        // kube-flannel.yml delegates with `"hairpinMode": true`; the bridge
        // plugin's setupVeth then sets hairpin on the port (LinkSetHairpin).
        // With br_netfilter a pod's DNAT to itself is bridged back out of
        // the port it came in on, which a bridge refuses without it.
        s.hairpin = true;
        d.setting(ns, "eth0").mtu = mtu;
        d.addr(ns, "eth0", net(ip, slice.prefix_len()), Scope::Global);
        d.route(
            ns,
            RoutePlan::via(default_net(), nth(slice, 1), "eth0", false),
        );
        out.pods.push(PodWire { key, ns, host_veth });
    }
    out
}

/// What flanneld programs on every node: its ip-masq rules, and per
/// backend the other nodes' leases (ali-vpc: one VPC route entry per node
/// subnet; vxlan: `flannel.1` with a route, neighbour and FDB entry per
/// peer). The pods' bridge is the CNI plugin's, not flanneld's.
pub fn flanneld(d: &mut Draft, ctx: &CniCtx<'_>, vxlan: bool) -> CniOutput {
    let mut out = CniOutput::default();
    let mtu = vxlan.then_some(VXLAN_MTU);
    let mut vtep_macs = Vec::new();
    for (node, slice) in ctx.nodes.iter().zip(ctx.slices) {
        let ns = node.ns;
        d.ns(ns).nft = Some(masquerade_nft(ctx.pod_cidr, *slice));
        if vxlan {
            let kind = LinkKind::Vxlan {
                vni: VXLAN_VNI,
                local: node.ip,
                port: VXLAN_PORT,
                dev: Some("eth0".into()),
                learning: false,
            };
            vtep_macs.push(d.link(ns, VXLAN_DEV, kind));
            d.setting(ns, VXLAN_DEV).mtu = mtu;
            d.addr(ns, VXLAN_DEV, host_net(nth(*slice, 0)), Scope::Global);
        } else {
            out.route_entries.push((*slice, node.name.clone()));
        }
    }
    if vxlan {
        // What flanneld programs for every other node's lease.
        for (i, node) in ctx.nodes.iter().enumerate() {
            for (j, peer) in ctx.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
                let vtep = nth(ctx.slices[j], 0);
                d.route(
                    node.ns,
                    RoutePlan::via(IpNet::V4(ctx.slices[j]), vtep, VXLAN_DEV, true),
                );
                d.ns(node.ns).neighs.push(NeighPlan {
                    dev: VXLAN_DEV.into(),
                    ip: vtep,
                    mac: vtep_macs[j],
                });
                d.ns(node.ns).fdbs.push(FdbPlan {
                    dev: VXLAN_DEV.into(),
                    mac: vtep_macs[j],
                    dst: peer.ip,
                });
            }
        }
    }
    out
}

/// `/run/flannel/subnet.env` as flanneld writes it for a node's lease.
pub fn subnet_env(pod_cidr: Ipv4Net, slice: Ipv4Net, vxlan: bool) -> String {
    let mtu = if vxlan { VXLAN_MTU } else { 1500 };
    format!(
        "FLANNEL_NETWORK={pod_cidr}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=true\n",
        nth(slice, 1),
        slice.prefix_len()
    )
}

/// Flannel's ip-masq rules, in order (pod CIDR `P`, this node's subnet `S`):
/// pod→pod untouched; pod→outside masqueraded (multicast excepted);
/// outside→this node's pods untouched; outside→another node's pod subnet
/// masqueraded (the one K7/K10 depend on).
pub fn masquerade_nft(pod_cidr: Ipv4Net, slice: Ipv4Net) -> String {
    let (p, s) = (pod_cidr, slice);
    format!(
        "table ip cnlab_flannel {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         ip saddr {p} ip daddr {p} counter return comment \"flannel: pod to pod\"\n    \
         ip saddr {p} ip daddr != 224.0.0.0/4 counter masquerade comment \"flannel: pod to outside\"\n    \
         ip saddr != {p} ip daddr {s} counter return comment \"flannel: outside to this node's pods\"\n    \
         ip saddr != {p} ip daddr {p} counter masquerade comment \"flannel: outside to another node's pods\"\n  }}\n}}\n"
    )
}
