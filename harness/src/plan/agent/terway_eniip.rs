//! Terway ENIIP: pods take secondary IPs of shared ENIs attached to the node
//! (`eth1`, `eth2`, …; each its own ENI namespace, role Secondary).
//!
//! Capacity follows Terway's formula: (ENIs − 1) × IPs per ENI. Every
//! address of a secondary ENI (its primary included) goes to a pod; the
//! node's primary ENI carries no pods. ENIs are created on demand, in the
//! vSwitch of the pod's (pinned) address or the node's vSwitch.
//!
//! veth datapath (Terway `plugin/datapath/policy_router`): pod `podIP/32`,
//! `default via 169.254.1.1 onlink`, permanent neighbour 169.254.1.1 → the
//! `cali…` MAC; host `podIP/32 dev cali… scope link`, rule `512: to podIP
//! lookup main`, rule `2048: from podIP iif cali… lookup <table>` whose table holds
//! `default via <vSwitch gw> dev ethN onlink`. Terway numbers that table
//! `1000 + ENI ifindex`; ifindexes exist only at build time, so the plan
//! uses `1000 + N` for `ethN` ([`eni_table`]).
//!
//! ipvlan datapath: pod eth0 is an L2 child of `ethN` (macvlan bridge where
//! the kernel has no ipvlan) with `default via <gw> dev eth0 onlink`; the
//! host reaches its pods through its own child `ipvl_N` (the node IP as
//! `/32 scope host`, `podIP/32 dev ipvl_N`). Pod traffic to the VPC leaves
//! by the ENI directly, never through the host's routing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::alloc::{pending, placed, schedule, VpcIpCtx};
use super::{wrong_ctx, Addressing, CniMode, CniOutput, ModeCtx, PodWire};
use crate::plan::cloud::{self, default_net, host_net, EniSpec, NodeCtx};
use crate::plan::draft::Draft;
use crate::plan::ipam::{PlacedPod, Placement};
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::k8s::Pod;
use crate::topology::model::Cni;
use crate::topology::PointId;

/// terway-eniip (veth, policy routing) or terway-eniip-ipvlan.
pub struct TerwayEniip {
    pub datapath: Datapath,
}

impl CniMode for TerwayEniip {
    fn cni(&self) -> Cni {
        match self.datapath {
            Datapath::Veth => Cni::TerwayEniip,
            Datapath::Ipvlan => Cni::TerwayEniipIpvlan,
        }
    }
    fn addressing(&self) -> Addressing {
        Addressing::Vpc
    }
    fn program(&self, d: &mut Draft, cx: ModeCtx<'_, '_>) -> Result<CniOutput, PlanError> {
        let ModeCtx::Vpc(ctx) = cx else {
            return Err(wrong_ctx(self.cni()));
        };
        let (placement, out) = program(d, ctx, self.datapath);
        ctx.placement = placement;
        Ok(out)
    }
    fn routes_by_source(&self) -> bool {
        true
    }
}

/// The pod's gateway in veth modes: never configured anywhere, only a
/// permanent neighbour pointing at the host veth's MAC.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// `ip rule` priorities Terway uses.
pub const RULE_TO_POD: u32 = 512;
pub const RULE_FROM_POD: u32 = 2048;

/// Policy table of the ENI linked as `ethN` (Terway: 1000 + ifindex).
pub fn eni_table(n: u32) -> u32 {
    1000 + n
}

/// A secondary ENI carrying pod IPs.
#[derive(Debug, Clone)]
pub struct SharedEni {
    pub id: String,
    /// `ethN` in the node.
    pub link: String,
    pub n: u32,
    pub vswitch: String,
    pub eni_ns: NsIdx,
    /// MAC of `ethN` (the instance side of the ENI).
    pub mac: [u8; 6],
    pub ips: Vec<Ipv4Addr>,
}

/// Which datapath connects a shared-ENI pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    Veth,
    Ipvlan,
}

/// An IP on a shared ENI of node `ni` for `pod`: an existing ENI in the
/// right vSwitch with room, else a new ENI while the node has ENI slots.
/// Returns the index into `ctx.shared[ni]` and the address.
pub fn shared_ip(
    d: &mut Draft,
    ctx: &mut VpcIpCtx<'_>,
    ni: usize,
    pod: &Pod,
    dp: Datapath,
) -> Result<(usize, Ipv4Addr), String> {
    let node = &ctx.nodes[ni];
    let node_vsw = ctx.topo().nodes[ni].vswitch.clone();
    let vsw = ctx.vswitch_for(pod, &node_vsw);
    let per_eni = ctx.limits[ni].ips_per_eni as usize;
    let room = ctx.shared[ni]
        .iter()
        .position(|e| e.vswitch == vsw && e.ips.len() < per_eni);
    if let Some(k) = room {
        let ip = ctx.pod_address(pod, &vsw)?;
        let eni = &mut ctx.shared[ni][k];
        eni.ips.push(ip);
        let (id, eni_ns) = (eni.id.clone(), eni.eni_ns);
        add_secondary_ip(d, ctx.vpc, &id, eni_ns, ip, dp);
        return Ok((k, ip));
    }
    let Some(n) = ctx.take_eni_slot(ni) else {
        return Err(format!("no free ENI on node {}", node.name));
    };
    let ip = match ctx.pod_address(pod, &vsw) {
        Ok(ip) => ip,
        Err(e) => {
            // The ENI was never created: give the slot back.
            ctx.attached[ni] -= 1;
            ctx.next_link[ni] -= 1;
            return Err(e);
        }
    };
    let eni = attach_secondary(d, ctx, ni, n, &vsw, ip, dp)?;
    ctx.shared[ni].push(eni);
    Ok((ctx.shared[ni].len() - 1, ip))
}

/// AttachNetworkInterface of a secondary ENI as `ethN`, its first private
/// IP `ip` (a pod's), plus the node's policy table for it.
fn attach_secondary(
    d: &mut Draft,
    ctx: &mut VpcIpCtx<'_>,
    ni: usize,
    n: u32,
    vsw_id: &str,
    ip: Ipv4Addr,
    dp: Datapath,
) -> Result<SharedEni, String> {
    let node = ctx.nodes[ni].clone();
    let topo = ctx.topo();
    let key = PointId::node(&node.name).to_string();
    let vsw = cloud::vswitch(topo, vsw_id, &key).map_err(|e| e.to_string())?;
    let link = format!("eth{n}");
    let id = cloud::attach_eni(
        d,
        ctx.vpc,
        EniSpec {
            owner_key: &key,
            instance: &node.name,
            role: EniRole::Secondary,
            index: n as usize,
            vswitch: vsw,
            ip,
            security_groups: topo.nodes[ni].security_groups.clone(),
            inst_ns: node.ns,
            inst_ifname: &link,
            aliases: vec![PointId::eni_secondary(&node.name, &link)],
        },
    );
    let eni_ns = d
        .plan
        .ns_index(&PointId::eni(&id))
        .ok_or_else(|| format!("eni {id}: namespace missing"))?;
    let mac = d.plan.eni(&id).map(|e| e.mac).unwrap_or_default();
    if dp == Datapath::Veth {
        // The ENI delivers to the instance through `via <its first IP>`;
        // that IP sits on a pod behind cali…, so the hypervisor names the
        // instance's MAC instead of ARPing for it.
        d.ns(eni_ns).neighs.push(NeighPlan {
            dev: cloud::ENI_INSTANCE_SIDE.into(),
            ip,
            mac,
        });
    } else {
        add_pod_route_in_eni(d, eni_ns, ip);
    }
    d.route(
        node.ns,
        RoutePlan::via(default_net(), cloud::gateway(vsw.cidr), &link, true).in_table(eni_table(n)),
    );
    Ok(SharedEni {
        id,
        link,
        n,
        vswitch: vsw_id.into(),
        eni_ns,
        mac,
        ips: vec![ip],
    })
}

/// AssignPrivateIpAddresses: one more address on an attached ENI.
fn add_secondary_ip(
    d: &mut Draft,
    vpc: NsIdx,
    id: &str,
    eni_ns: NsIdx,
    ip: Ipv4Addr,
    dp: Datapath,
) {
    if let Some(e) = d.plan.enis.iter_mut().find(|e| e.id == id) {
        e.ips.push(ip);
    }
    d.route(vpc, RoutePlan::link(host_net(ip), id));
    if dp == Datapath::Ipvlan {
        add_pod_route_in_eni(d, eni_ns, ip);
    }
}

/// ipvlan/macvlan children answer ARP for their own address, so the ENI
/// sends each pod's traffic to that pod's MAC (`podIP dev inst`).
fn add_pod_route_in_eni(d: &mut Draft, eni_ns: NsIdx, ip: Ipv4Addr) {
    d.route(
        eni_ns,
        RoutePlan::link(host_net(ip), cloud::ENI_INSTANCE_SIDE)
            .in_table(cloud::ENI_TO_INSTANCE_TABLE),
    );
}

/// Which rule 2048 Terway installs for a veth pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleLayout {
    /// `from <podIP> iif <host veth> lookup <table>`: Terway v1.1.0 to
    /// v1.4.1 (`plugin/driver/utils.go`, then `plugin/datapath/
    /// policy_router_linux.go` `fromContainerRule.IifName`), and the lab's
    /// default (the layout the T6 observations need).
    IifBound,
    /// `from <podIP> lookup <table>`: Terway v1.4.2 and later (commit
    /// efd05996, "cni: remove iif in ip rule ... make sure all traffic can
    /// go through the same nic").
    SourceOnly,
}

/// Terway v1.4.2 is the first release without the iif.
const SOURCE_ONLY_FROM: (u32, u32, u32) = (1, 4, 2);

/// The rule 2048 layout of `cluster.terway_version` (absent: [`RuleLayout::IifBound`]).
pub fn rule_layout(topo: &crate::topology::model::Topology) -> RuleLayout {
    let v = topo
        .cluster
        .terway_version
        .as_deref()
        .and_then(|s| crate::topology::validate::KubeVersion::parse(s).ok());
    match v {
        Some(v) if (v.major, v.minor, v.patch) >= SOURCE_ONLY_FROM => RuleLayout::SourceOnly,
        _ => RuleLayout::IifBound,
    }
}

/// A veth pod (`cali…` on the host) whose traffic leaves by policy table
/// `table`.
pub fn veth_pod(
    d: &mut Draft,
    node: &NodeCtx,
    p: &PlacedPod,
    ip: Ipv4Addr,
    table: u32,
    layout: RuleLayout,
) -> PodWire {
    let wire = super::terway_vpc::veth_pod(d, node, p, ip);
    let iif = (layout == RuleLayout::IifBound).then_some(wire.host_veth.as_str());
    pod_rules(d, node.ns, ip, table, iif);
    wire
}

/// `512: to podIP lookup main`,
/// `2048: from podIP [iif <host veth>] lookup <table>` ([`RuleLayout`]). The
/// iif decides T6: a packet IPVS emits after LOCAL_IN is re-routed as
/// locally output (`ip_route_me_harder`, iif lo, pod source kept), misses
/// an iif-bound rule and leaves by the main table (eth0); without the iif
/// it takes the pod's table as a forwarded packet does (docs/kube-proxy.md).
pub fn pod_rules(d: &mut Draft, node_ns: NsIdx, ip: Ipv4Addr, table: u32, iif: Option<&str>) {
    let rules = &mut d.ns(node_ns).rules;
    rules.push(RulePlan {
        priority: RULE_TO_POD,
        to: Some(host_net(ip)),
        table: TABLE_MAIN,
        ..Default::default()
    });
    rules.push(RulePlan {
        priority: RULE_FROM_POD,
        from: Some(host_net(ip)),
        iif: iif.map(Into::into),
        table,
        ..Default::default()
    });
}

/// Stand-in for the Cilium Terway chains in IPVLAN mode (`terway-cli
/// policy` runs cilium-agent for that datapath; its eBPF reverses service
/// NAT for the pod). Without it a reply of a flow the host translated for an
/// ipvlan pod leaves by the ENI straight to the pod (or from the pod to
/// the client) and never meets the host's conntrack. The lab masquerades
/// such flows to the node so their replies come back through the host:
/// connectivity as with Cilium, but backends see the node's address.
///
/// "Translated by the host" is seen two ways. nft/iptables DNAT (kube-proxy
/// iptables/nftables, the IPVS emulation) sets `ct status dnat`. Real IPVS
/// does not: with `vs/conntrack=1` it only rewrites the reply tuple
/// (`ip_vs_update_conntrack`, net/netfilter/ipvs/ip_vs_nfct.c), no NAT status
/// bit. But IPVS only takes packets addressed to the host (VIPs on
/// kube-ipvs0, NodePorts), and a flow addressed to the host leaves it again
/// only if something rewrote its destination: so a flow whose first packet
/// was local (`fib daddr type local`, ct mark [`IPVLAN_HOST_FLOW_MARK`]) and
/// that crosses ipvl_* is masqueraded too.
pub fn ipvlan_service_nat() -> String {
    let m = IPVLAN_HOST_FLOW_MARK;
    let local = |hook: &str, why: &str| {
        format!(
            "  chain {hook} {{\n    type filter hook {hook} priority mangle; policy accept;\n    \
             ct state new fib daddr type local ct mark set ct mark | {m:#x} comment \"cilium stand-in: {why}\"\n  }}\n"
        )
    };
    let masq = |dir: &str, matches: &str, why: &str| {
        format!("    {dir}name \"ipvl_*\" {matches} counter masquerade comment \"cilium stand-in: {why}\"\n")
    };
    let marked = format!("ct mark & {m:#x} == {m:#x}");
    format!(
        "table ip cnlab_terway_ipvlan {{\n{}{}  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{}{}{}{}  }}\n}}\n",
        local("prerouting", "a flow addressed to the host (IPVS VIP, NodePort)"),
        local("output", "the node's flow to its own VIP"),
        masq("iif", "ct status dnat", "a pod's service flow answers through the host"),
        masq("oif", "ct status dnat", "a flow DNATed to a pod answers through the host"),
        masq("iif", &marked, "a pod's flow IPVS translated answers through the host"),
        masq("oif", &marked, "a flow IPVS sent to a pod answers through the host"),
    )
}

/// ct mark of flows addressed to the host, in [`ipvlan_service_nat`] (the
/// IPVS emulation's 0x1000 and kube-proxy's 0x4000/0x8000 are other bits).
pub const IPVLAN_HOST_FLOW_MARK: u32 = 0x2000;

/// What Terway's IPVLAN filter sends to the host stack, in its order
/// (ipvlan_linux.go: `append(cfg.HostStackCIDRs, cfg.ServiceCIDR.IPv4)`):
/// eni-config's `host_stack_cidrs`, then the service CIDR.
pub fn host_stack_cidrs(topo: &crate::topology::model::Topology) -> Vec<ipnet::Ipv4Net> {
    let service = topo.cluster.service_cidr.or_else(|| {
        crate::plan::proxy::services::DEFAULT_SERVICE_CIDR
            .parse()
            .ok()
    });
    let mut cidrs = topo.cluster.host_stack_cidrs.clone();
    cidrs.extend(service);
    cidrs
}

/// Name of the host-side ipvlan child of `ethN`.
pub fn ipvl_name(n: u32) -> String {
    format!("ipvl_{n}")
}

/// A pod whose eth0 is an L2 child of the shared ENI `eni`.
fn ipvlan_pod(
    d: &mut Draft,
    node: &NodeCtx,
    eni: &SharedEni,
    host_child: &mut BTreeMap<String, [u8; 6]>,
    p: &PlacedPod,
    ip: Ipv4Addr,
    host_stack: &[ipnet::Ipv4Net],
) -> PodWire {
    let native = d.plan.backends.ipvlan;
    let ipvl = ipvl_name(eni.n);
    let ipvl_mac = match host_child.get(&ipvl) {
        Some(m) => *m,
        None => {
            let m = d.link(
                node.ns,
                &ipvl,
                LinkKind::Ipvlan {
                    parent: eni.link.clone(),
                },
            );
            d.addr(node.ns, &ipvl, host_net(node.ip), Scope::Host);
            // Terway's tc egress filter on the ENI: the service CIDR (and
            // host_stack_cidrs) go to the host stack through ipvl_N.
            d.ns(node.ns).tc.push(TcPlan::RedirectToHost {
                link: eni.link.clone(),
                cidrs: host_stack.to_vec(),
                to: ipvl.clone(),
            });
            if host_child.is_empty() {
                crate::plan::proxy::append_nft(d, node.ns, &ipvlan_service_nat());
                d.plan.notes.push(format!(
                    "{}: stand-in for Terway's Cilium: flows the host translates (nft DNAT or IPVS) across ipvl_* are masqueraded to the node (table cnlab_terway_ipvlan), so backends see the node where Cilium keeps the client",
                    node.name
                ));
            }
            host_child.insert(ipvl.clone(), m);
            m
        }
    };
    let ns = d.add_ns(&p.key(), NsKind::Pod);
    let pod_mac = d.mac(ns, "eth0");
    d.ns(ns).adopted_links.push(AdoptedLink {
        parent_ns: node.ns,
        link: LinkPlan {
            name: "eth0".into(),
            kind: LinkKind::Ipvlan {
                parent: eni.link.clone(),
            },
            mac: Some(pod_mac),
        },
    });
    d.up(ns, "eth0");
    // ipvlan children share the parent's MAC; macvlan children have their own.
    let (pod_l2, host_l2) = if native {
        (eni.mac, eni.mac)
    } else {
        (pod_mac, ipvl_mac)
    };
    d.addr(ns, "eth0", host_net(ip), Scope::Global);
    d.route(ns, RoutePlan::link(host_net(node.ip), "eth0"));
    d.ns(ns).neighs.push(NeighPlan {
        dev: "eth0".into(),
        ip: node.ip,
        mac: host_l2,
    });
    d.route(node.ns, RoutePlan::link(host_net(ip), &ipvl));
    d.ns(node.ns).neighs.push(NeighPlan {
        dev: ipvl.clone(),
        ip,
        mac: pod_l2,
    });
    PodWire {
        key: p.key(),
        ns,
        host_veth: ipvl,
    }
}

/// Plans terway-eniip (veth or ipvlan datapath) for every pod.
pub fn program(d: &mut Draft, ctx: &mut VpcIpCtx<'_>, dp: Datapath) -> (Placement, CniOutput) {
    let mut placement = Placement::default();
    let mut out = CniOutput::default();
    let mut host_children: Vec<BTreeMap<String, [u8; 6]>> = vec![BTreeMap::new(); ctx.nodes.len()];
    let host_stack = host_stack_cidrs(ctx.topo());
    let layout = rule_layout(ctx.topo());
    for (i, pod) in ctx.r.pods.iter().enumerate() {
        let Some(ni) = schedule(ctx.r, &mut placement, i, pod) else {
            continue;
        };
        let node = ctx.nodes[ni].clone();
        match shared_ip(d, ctx, ni, pod, dp) {
            Ok((k, ip)) => {
                let p = placed(i, pod, ni, Some(ip));
                let eni = ctx.shared[ni][k].clone();
                let wire = match dp {
                    Datapath::Veth => veth_pod(d, &node, &p, ip, eni_table(eni.n), layout),
                    Datapath::Ipvlan => {
                        let w =
                            ipvlan_pod(d, &node, &eni, &mut host_children[ni], &p, ip, &host_stack);
                        pod_default_via_gw(d, ctx, w.ns, &eni);
                        w
                    }
                };
                out.pods.push(wire);
                placement.placed.push(p);
            }
            Err(reason) => placement.pending.push(pending(pod, &node.name, reason)),
        }
    }
    (placement, out)
}

/// ipvlan pods route straight to their ENI's vSwitch gateway.
fn pod_default_via_gw(d: &mut Draft, ctx: &VpcIpCtx<'_>, pod_ns: NsIdx, eni: &SharedEni) {
    let gw = ctx
        .topo()
        .vpc
        .vswitches
        .iter()
        .find(|v| v.id == eni.vswitch)
        .map(|v| cloud::gateway(v.cidr));
    if let Some(gw) = gw {
        d.route(pod_ns, RoutePlan::via(default_net(), gw, "eth0", true));
    }
}
