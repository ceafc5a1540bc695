//! Terway ENI: every pod owns an exclusive ENI.
//!
//! The ENI's instance-side link *is* the pod's eth0 (`podIP/32`, `default
//! via <vSwitch gw> dev eth0 onlink`); its cloud side is an ENI namespace
//! (role Pod) with the node's security groups, as Terway configures them. A
//! `veth1` ↔ `cali…` pair to the host carries what must go through the
//! host: the service CIDR and the node IP, via 169.254.1.1 (a permanent
//! neighbour to the `cali…` MAC). Pods per node ≤ ENIs − 1 (the primary
//! stays the node's).

use super::alloc::{pending, placed, schedule, VpcIpCtx};
use super::terway_eniip::POD_GATEWAY;
use super::{wrong_ctx, Addressing, CniMode, CniOutput, ModeCtx, PodWire};
use crate::plan::ccm::BackendType;
use crate::plan::cloud::{self, default_net, host_net, EniSpec};
use crate::plan::draft::Draft;
use crate::plan::ipam::Placement;
use crate::plan::names;
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::model::Cni;
use crate::topology::PointId;

pub const POD_SERVICE_LINK: &str = "veth1";

/// What `terway-cli policy` installs for exclusive ENI nodes
/// (`policy/uninstall_policy.sh`, `masq_eni_only`): `POSTROUTING ! -o lo -j
/// terway-masq`, `terway-masq -j MASQUERADE`. Whatever the host forwards
/// leaves with the node's address, so the reply to a pod's service flow
/// (sent out `veth1`, DNATed by the host) returns to the host, not to the
/// pod's own ENI.
pub const MASQ_ENI_ONLY: &str = "table ip cnlab_terway_masq {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    \
     oifname != \"lo\" counter masquerade comment \"terway:masq-outgoing\"\n  }\n}\n";

pub struct TerwayEni;

impl CniMode for TerwayEni {
    fn cni(&self) -> Cni {
        Cni::TerwayEni
    }
    fn addressing(&self) -> Addressing {
        Addressing::Vpc
    }
    fn program(&self, d: &mut Draft, cx: ModeCtx<'_, '_>) -> Result<CniOutput, PlanError> {
        let ModeCtx::Vpc(ctx) = cx else {
            return Err(wrong_ctx(self.cni()));
        };
        let (placement, out) = program(d, ctx);
        ctx.placement = placement;
        Ok(out)
    }
    fn routes_by_source(&self) -> bool {
        true
    }
    fn slb_backend(&self) -> BackendType {
        BackendType::Eni
    }
}

pub fn program(d: &mut Draft, ctx: &mut VpcIpCtx<'_>) -> (Placement, CniOutput) {
    let mut placement = Placement::default();
    let mut out = CniOutput::default();
    let service_cidr = ctx.topo().cluster.service_cidr;
    let host_stack = ctx.topo().cluster.host_stack_cidrs.clone();
    for node in ctx.nodes {
        crate::plan::proxy::append_nft(d, node.ns, MASQ_ENI_ONLY);
    }
    for (i, pod) in ctx.r.pods.iter().enumerate() {
        let Some(ni) = schedule(ctx.r, &mut placement, i, pod) else {
            continue;
        };
        let node = ctx.nodes[ni].clone();
        let Some(n) = ctx.take_eni_slot(ni) else {
            let reason = format!("no free ENI on node {}", node.name);
            placement.pending.push(pending(pod, &node.name, reason));
            continue;
        };
        let vsw_id = ctx.vswitch_for(pod, &ctx.topo().nodes[ni].vswitch);
        let ip = match ctx.pod_address(pod, &vsw_id) {
            Ok(ip) => ip,
            Err(reason) => {
                ctx.attached[ni] -= 1;
                ctx.next_link[ni] -= 1;
                placement.pending.push(pending(pod, &node.name, reason));
                continue;
            }
        };
        let p = placed(i, pod, ni, Some(ip));
        let pod_id = p.key();
        let key = pod_id.to_string();
        let Ok(vsw) = cloud::vswitch(ctx.topo(), &vsw_id, &key) else {
            continue;
        };
        let pod_ns = d.add_ns(&pod_id, NsKind::Pod);
        let who = format!("{}/{}", p.ns, p.name);
        let id = cloud::attach_eni(
            d,
            ctx.vpc,
            EniSpec {
                owner_key: &key,
                instance: &node.name,
                role: EniRole::Pod,
                index: 0,
                vswitch: vsw,
                ip,
                security_groups: ctx.topo().nodes[ni].security_groups.clone(),
                inst_ns: pod_ns,
                inst_ifname: "eth0",
                aliases: vec![PointId::eni_pod(&p.ns, &p.name)],
            },
        );
        if let Some(e) = d.plan.enis.iter_mut().find(|e| e.id == id) {
            e.pod = Some(who);
        }
        let gw = cloud::gateway(vsw.cidr);
        d.addr(pod_ns, "eth0", host_net(ip), Scope::Global);
        d.route(pod_ns, RoutePlan::via(default_net(), gw, "eth0", true));

        // veth1 ↔ cali…: the node and the services are reached through the host.
        let host_veth = names::terway_veth(&p.ns, &p.name);
        let (host_mac, _) = d.veth(node.ns, &host_veth, pod_ns, POD_SERVICE_LINK);
        d.ns(pod_ns).neighs.push(NeighPlan {
            dev: POD_SERVICE_LINK.into(),
            ip: POD_GATEWAY,
            mac: host_mac,
        });
        let mut via_host = vec![host_net(node.ip)];
        via_host.extend(service_cidr.map(ipnet::IpNet::V4));
        // generateVeth1Cfg's extraRoutes: eni-config host_stack_cidrs via 169.254.1.1.
        via_host.extend(host_stack.iter().copied().map(ipnet::IpNet::V4));
        for dst in via_host {
            d.route(
                pod_ns,
                RoutePlan::via(dst, POD_GATEWAY, POD_SERVICE_LINK, true),
            );
        }
        d.route(node.ns, RoutePlan::link(host_net(ip), &host_veth));
        let _ = n;
        out.pods.push(PodWire {
            key: pod_id,
            ns: pod_ns,
            host_veth,
        });
        placement.placed.push(p);
    }
    (placement, out)
}
