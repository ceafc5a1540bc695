//! Terway ENI-Trunking: pods selected by a Ready PodNetworking get a
//! **member ENI** (own IP, vSwitch, security groups) riding the node's
//! **trunk ENI** with its own VLAN id; every other pod gets a shared-ENI IP
//! exactly as in terway-eniip (veth datapath).
//!
//! ```text
//!  pod ── cali… [node] eth1 (trunk) ══ trunk [hv/<node>] m1027 ══ <member ENI id> [vpc]
//! ```
//! Node side per trunk pod: the `cali…` veth, `512: to podIP lookup main`,
//! `2048: from podIP lookup <1000 + VLAN id>` whose table holds `default via
//! <member vSwitch gw> dev eth1 onlink` (802.1Q backend: `dev eth1.<vlan>`).
//! Terway keys that table by the trunk's ifindex; one table per VLAN lets
//! members of one trunk sit in different vSwitches with different gateways.
//!
//! Cloud side: `hv/<node>` is the hypervisor, and it holds every member ENI
//! of its trunk. A member ENI is its link `m<vlan>` to the VPC router, a
//! rule sending what its VLAN carries to table `1000 + vlan` (`default via
//! <gw> dev m<vlan>`), a route back to its pod by the trunk, and its
//! security groups in a conntrack zone of its own. The VLAN ends in hv
//! either as an 802.1Q device `t<vlan>` on `trunk` (`iif t<vlan>`), or by
//! eBPF ([`TcPlan`]): the demux on `trunk` pops the tag and puts the VLAN id
//! in the mark (`iif trunk fwmark <vlan>`), the mux on `trunk`'s egress tags
//! what came in from a member's link. One namespace per hypervisor rather
//! than per member ENI: a trunk pod costs one namespace and two veths.
//!
//! No ARP crosses the trunk: the node names the gateway with a permanent
//! neighbour (the VPC gateway MAC, which every member ENI's cloud side
//! carries, as Alibaba's vSwitch gateways all answer with one MAC), and each
//! member ENI names its pod's address with the trunk link's MAC.
//!
//! Every node that can carry a trunk gets it before any pod, as Terway's
//! daemon attaches it at start-up (`attach_trunks`): it is the node's
//! `eth1` and its address comes first; shared ENIs follow as `eth2`, ….
//! The trunk takes one ENI slot of the node, so shared-ENI pods on a
//! trunk node have (ENIs − 2) × IPs per ENI addresses; nodes without a
//! trunk keep (ENIs − 1) × IPs per ENI.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::alloc::{pending, placed, pod_owner, schedule, VpcIpCtx};
use super::terway_eniip::{self, Datapath};
use super::{wrong_ctx, Addressing, CniMode, CniOutput, ModeCtx};
use crate::plan::ccm::BackendType;
use crate::plan::cloud::{self, default_net, host_net};
use crate::plan::draft::Draft;
use crate::plan::ipam::Placement;
use crate::plan::names;
use crate::plan::podeni;
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::k8s::{Pod, PodNetworking};
use crate::topology::model::Cni;
use crate::topology::PointId;

/// First VLAN id handed out on every node (the article shows 1027).
pub const FIRST_VLAN: u16 = 1027;
/// Alibaba's VPC gateway MAC: every vSwitch gateway answers with it.
pub const VPC_GATEWAY_MAC: [u8; 6] = [0xee, 0xff, 0xff, 0xff, 0xff, 0xff];
/// The trunk ENI's link in the node, and its peer in `hv/<node>`.
pub const TRUNK_LINK: &str = "eth1";
pub const HV_TRUNK_SIDE: &str = "trunk";

pub struct TerwayTrunking;

impl CniMode for TerwayTrunking {
    fn cni(&self) -> Cni {
        Cni::TerwayTrunking
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

/// Policy table of a trunk pod's member VLAN.
pub fn vlan_table(vlan: u16) -> u32 {
    1000 + u32::from(vlan)
}

/// Member link in `hv/<node>` for a VLAN id.
pub fn hv_member_link(vlan: u16) -> String {
    format!("m{vlan}")
}

/// 802.1Q sub-interface of the trunk in the node (native backend).
pub fn node_vlan_link(vlan: u16) -> String {
    format!("{TRUNK_LINK}.{vlan}")
}

/// A node's trunk ENI as planned.
#[derive(Debug, Clone)]
struct Trunk {
    id: String,
    hv: NsIdx,
    /// MAC of `eth1` in the node.
    mac: [u8; 6],
    next_vlan: u16,
    pods: Vec<(Ipv4Addr, u16)>,
    members: Vec<(String, u16)>,
}

pub fn program(d: &mut Draft, ctx: &mut VpcIpCtx<'_>) -> (Placement, CniOutput) {
    let mut placement = Placement::default();
    let mut out = CniOutput::default();
    let (mut trunks, no_trunk) = attach_trunks(d, ctx);
    // One rule 2048 layout for the cluster (cluster.terway_version).
    let layout = terway_eniip::rule_layout(ctx.topo());
    for pn in ctx.r.podnetworkings.iter().filter(|p| !podeni::is_ready(p)) {
        d.plan.notes.push(format!(
            "PodNetworking {} is not Ready (status {:?}): not applied",
            pn.metadata.name,
            pn.status.status.as_deref().unwrap_or("")
        ));
    }
    for (i, pod) in ctx.r.pods.iter().enumerate() {
        let Some(ni) = schedule(ctx.r, &mut placement, i, pod) else {
            continue;
        };
        let node = ctx.nodes[ni].clone();
        let chosen = podeni::select(&ctx.r.podnetworkings, pod).cloned();
        let result = match &chosen {
            Some(pn) => {
                member_pod(d, ctx, &mut trunks, &no_trunk, ni, pod, pn).map(|ip| (ip, None))
            }
            None => terway_eniip::shared_ip(d, ctx, ni, pod, Datapath::Veth)
                .map(|(k, ip)| (ip, Some(terway_eniip::eni_table(ctx.shared[ni][k].n)))),
        };
        match result {
            Ok((ip, shared_table)) => {
                let p = placed(i, pod, ni, Some(ip));
                let table = match shared_table {
                    Some(t) => t,
                    None => trunks
                        .get(&ni)
                        .and_then(|t| t.pods.iter().find(|(a, _)| *a == ip))
                        .map(|(_, v)| vlan_table(*v))
                        .unwrap_or(TABLE_MAIN),
                };
                out.pods
                    .push(terway_eniip::veth_pod(d, &node, &p, ip, table, layout));
                placement.placed.push(p);
            }
            Err(reason) => placement.pending.push(pending(pod, &node.name, reason)),
        }
    }
    // A trunk no member pod rides (a node whose pods all take shared ENIs)
    // tags nothing: no program to load on either side.
    trunks.retain(|_, t| !t.pods.is_empty());
    note_uncapped(d, ctx, &trunks);
    for (ni, t) in &trunks {
        if !d.plan.backends.vlan_devices {
            // Terway's side: eBPF tags each pod's packets on eth1.
            d.ns(ctx.nodes[*ni].ns).tc.push(TcPlan::Trunk {
                link: TRUNK_LINK.into(),
                pods: t.pods.clone(),
            });
        }
    }
    hv_tagging(d, &trunks);
    (placement, out)
}

/// One note naming the trunk nodes whose member-ENI quota is not known
/// (no `enis.total`, no total in the instance table): their member ENIs
/// are not capped, which no real instance allows.
fn note_uncapped(d: &mut Draft, ctx: &VpcIpCtx<'_>, trunks: &BTreeMap<usize, Trunk>) {
    let uncapped: Vec<&str> = trunks
        .keys()
        .filter(|&&ni| ctx.limits[ni].member_enis().is_none())
        .map(|&ni| ctx.nodes[ni].name.as_str())
        .collect();
    if uncapped.is_empty() {
        return;
    }
    let shown = uncapped
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = match uncapped.len() {
        n if n > 3 => format!(" and {} more", n - 3),
        _ => String::new(),
    };
    d.plan.notes.push(format!(
        "member ENIs are not capped on {shown}{more}: the member-ENI quota (EniTotalQuantity − EniQuantity) \
         is not known; set nodes[].enis.total or an instance_type whose total the built-in table has"
    ));
}

/// Terway's `MemberAdapterLimit`: a trunk pod needs one `aliyun/member-eni`
/// (the webhook adds the request), and a node has `EniTotalQuantity −
/// EniQuantity` of them. Past it kubelet refuses the pod
/// (`OutOfaliyun/member-eni`); it never runs.
fn member_slot_left(ctx: &VpcIpCtx<'_>, ni: usize, taken: usize) -> Result<(), String> {
    let l = ctx.limits[ni];
    match l.member_enis() {
        Some(quota) if taken >= quota as usize => Err(format!(
            "node {} has no aliyun/member-eni left: its {quota} member ENIs ({}) \
             are taken, kubelet refuses the pod (OutOfaliyun/member-eni)",
            ctx.nodes[ni].name,
            l.member_quota_terms()
        )),
        _ => Ok(()),
    }
}

/// The cloud's side of every trunk without 802.1Q devices: eBPF in
/// `hv/<node>` maps each member's VLAN to its member link.
fn hv_tagging(d: &mut Draft, trunks: &BTreeMap<usize, Trunk>) {
    if d.plan.backends.vlan_devices {
        return;
    }
    for t in trunks.values() {
        d.ns(t.hv).tc.push(TcPlan::Hv {
            trunk_link: HV_TRUNK_SIDE.into(),
            members: t.members.clone(),
        });
    }
}

/// `cni: plugins`: the trunk ENIs and member ENIs the topology declares
/// (`nodes[].trunk`), attached by the cloud as Terway's trunking has them
/// attached, and nothing in the node beyond the trunk's `eth1`: a plugin
/// (`vlan`, master `eth1`) makes the VLAN devices.
pub fn declared(d: &mut Draft, ctx: &mut VpcIpCtx<'_>) -> Result<(), PlanError> {
    let mut trunks: BTreeMap<usize, Trunk> = BTreeMap::new();
    let fault = |path: String| move |reason: String| PlanError::Fault { path, reason };
    for (ni, n) in ctx.topo().nodes.iter().enumerate() {
        let Some(decl) = &n.trunk else { continue };
        let path = format!("nodes[{ni}].trunk");
        trunk_of(d, ctx, &mut trunks, ni).map_err(fault(path.clone()))?;
        for (j, m) in decl.members.iter().enumerate() {
            let t = &trunks[&ni];
            let member = Member {
                vlan: m.vlan,
                ip: m.ip,
                vswitch: m.vswitch.clone().unwrap_or_else(|| n.vswitch.clone()),
                security_groups: if m.security_groups.is_empty() {
                    n.security_groups.clone()
                } else {
                    m.security_groups.clone()
                },
                owner: member_owner(&n.name, m.vlan),
                alias: PointId::eni_vlan(&n.name, m.vlan),
                pod: None,
            };
            let (trunk_id, hv, trunk_mac) = (t.id.clone(), t.hv, t.mac);
            member_eni(d, ctx, ni, &trunk_id, hv, trunk_mac, &member)
                .map_err(fault(format!("{path}.members[{j}]")))?;
            if let Some(t) = trunks.get_mut(&ni) {
                t.members.push((hv_member_link(m.vlan), m.vlan));
            }
        }
    }
    hv_tagging(d, &trunks);
    Ok(())
}

/// Who holds a declared member's address in the address book.
pub fn member_owner(node: &str, vlan: u16) -> String {
    PointId::eni_vlan(node, vlan).to_string()
}

/// Terway's daemon start-up, before it serves any pod: every node that can
/// carry a trunk gets its trunk ENI (AliyunContainerService/terway
/// `daemon/builder.go` `setupENIManager` calls `initTrunk` in
/// `daemon/daemon.go`, which reuses an attached trunk or creates one with
/// `CreateNetworkInterface(1, v6, "trunk")`, before the ENI list and the
/// resource manager exist). So the trunk takes the node's first free ENI
/// slot (`eth1`, [`TRUNK_LINK`]) and its address comes before any pod's;
/// shared ENIs follow as `eth2`, `eth3`, …. A node where that fails falls
/// back to non-trunk mode (Terway: "no trunk eni found, fallback to
/// non-trunk mode"): the reason is kept for its member pods.
fn attach_trunks(
    d: &mut Draft,
    ctx: &mut VpcIpCtx<'_>,
) -> (BTreeMap<usize, Trunk>, BTreeMap<usize, String>) {
    let mut trunks = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for ni in 0..ctx.nodes.len() {
        if let Err(reason) = trunk_of(d, ctx, &mut trunks, ni) {
            failed.insert(ni, reason);
        }
    }
    (trunks, failed)
}

/// The trunk ENI of node `ni`, attached on first use.
fn trunk_of<'t>(
    d: &mut Draft,
    ctx: &mut VpcIpCtx<'_>,
    trunks: &'t mut BTreeMap<usize, Trunk>,
    ni: usize,
) -> Result<&'t mut Trunk, String> {
    if !trunks.contains_key(&ni) {
        let node = ctx.nodes[ni].clone();
        if !ctx.limits[ni].trunk {
            return Err(format!(
                "node {} cannot carry a trunk ENI (instance type or enis.trunk)",
                node.name
            ));
        }
        if ctx.limits[ni].member_enis() == Some(0) {
            // Terway: `if limit.TrunkPod() <= 0 { EnableENITrunking = false }`.
            return Err(format!(
                "node {}: its member-ENI quota is 0 ({}), so Terway turns trunking off",
                node.name,
                ctx.limits[ni].member_quota_terms()
            ));
        }
        let n = ctx
            .take_eni_slot(ni)
            .ok_or_else(|| format!("no free ENI on node {} for its trunk ENI", node.name))?;
        let topo = ctx.topo();
        let key = PointId::node(&node.name).to_string();
        let vsw = cloud::vswitch(topo, &topo.nodes[ni].vswitch, &key).map_err(|e| e.to_string())?;
        let ip = ctx
            .book
            .allocate(vsw, &format!("{key}/trunk"))
            .map_err(|_| format!("vSwitch {} has no free IP", vsw.id))?;
        let id = names::eni_id(&d.plan.name, &key, n as usize);
        let hv = d.add_ns(&PointId::hv(&node.name), NsKind::Hypervisor);
        // hv's end of the trunk is the vSwitch gateway the node has pinned
        // (every gateway answers with one MAC), so it takes what the node
        // sends to any member's gateway.
        let mac = d.mac(node.ns, TRUNK_LINK);
        d.veth_ends(hv, HV_TRUNK_SIDE, VPC_GATEWAY_MAC, node.ns, TRUNK_LINK, mac);
        d.plan.points.push(ObsPoint {
            id: PointId::trunk(&node.name),
            aliases: vec![],
            ns: node.ns,
            ifname: Some(TRUNK_LINK.into()),
            vlan: None,
        });
        d.plan.points.push(ObsPoint {
            id: PointId::hv(&node.name),
            aliases: vec![],
            ns: hv,
            ifname: None,
            vlan: None,
        });
        d.plan.enis.push(EniRecord {
            id: id.clone(),
            role: EniRole::Trunk,
            mac,
            vswitch: vsw.id.clone(),
            ips: vec![ip],
            security_groups: topo.nodes[ni].security_groups.clone(),
            instance: node.name.clone(),
            vlan: None,
            trunk: None,
            pod: None,
        });
        trunks.insert(
            ni,
            Trunk {
                id,
                hv,
                mac,
                next_vlan: FIRST_VLAN,
                pods: vec![],
                members: vec![],
            },
        );
    }
    trunks
        .get_mut(&ni)
        .ok_or_else(|| "trunk vanished".to_string())
}

/// The member ENI's address: the pinned one (its vSwitch must be offered),
/// a Fixed one stable across re-plans, or the first free one of the first
/// offered vSwitch with room.
fn member_address(
    ctx: &mut VpcIpCtx<'_>,
    pod: &Pod,
    pn: &PodNetworking,
) -> Result<(Ipv4Addr, String), String> {
    let opts = &pn.spec.vswitch_options;
    let owner = pod_owner(pod);
    if opts.is_empty() {
        return Err(format!(
            "PodNetworking {} has no vSwitchOptions",
            pn.metadata.name
        ));
    }
    if pod.status.pod_ip.is_some() {
        let vsw = ctx.vswitch_for(pod, &opts[0]);
        if !opts.contains(&vsw) {
            return Err(format!(
                "pinned IP is in vSwitch {vsw}, not in PodNetworking {}'s vSwitchOptions",
                pn.metadata.name
            ));
        }
        let ip = ctx.pod_address(pod, &vsw)?;
        return Ok((ip, vsw));
    }
    let mut last = String::new();
    for vsw_id in opts {
        let Ok(vsw) = cloud::vswitch(ctx.topo(), vsw_id, &owner) else {
            continue;
        };
        let got = if podeni::is_fixed(pn) {
            fixed_address(ctx, vsw, &owner)
        } else {
            ctx.book.allocate(vsw, &owner).ok()
        };
        if let Some(ip) = got {
            return Ok((ip, vsw_id.clone()));
        }
        last = vsw_id.clone();
    }
    Err(format!("vSwitch {last} has no free IP"))
}

/// Fixed allocation: the address depends only on the pod's identity (a
/// hash slot in the vSwitch, probing upwards), so adding or removing other
/// pods never moves it — the StatefulSet pod keeps its IP across re-plans.
fn fixed_address(
    ctx: &mut VpcIpCtx<'_>,
    vsw: &crate::topology::model::VSwitch,
    owner: &str,
) -> Option<Ipv4Addr> {
    let hosts: Vec<Ipv4Addr> = vsw
        .cidr
        .hosts()
        .filter(|ip| !cloud::is_reserved(vsw.cidr, *ip))
        .collect();
    if hosts.is_empty() {
        return None;
    }
    let h = names::sha1_hex(owner);
    let start = usize::from_str_radix(&h[..8], 16).unwrap_or(0) % hosts.len();
    (0..hosts.len())
        .map(|k| hosts[(start + k) % hosts.len()])
        .find(|ip| ctx.book.claim(*ip, owner).is_ok())
}

/// A member ENI to attach to a trunk.
struct Member {
    vlan: u16,
    ip: Ipv4Addr,
    vswitch: String,
    security_groups: Vec<String>,
    /// Seeds the ENI id.
    owner: String,
    /// The point's alias (`eni/member:<pod>`, `eni/vlan:<node>/<id>`).
    alias: PointId,
    /// The pod it was created for (`ns/name`).
    pod: Option<String>,
}

/// The cloud's half of a member ENI, all in `hv/<node>` (the hypervisor
/// holds every member ENI of its trunk, as the cloud's vSwitch does): the
/// member's link `m<vlan>` straight to the VPC, the VPC's route to its
/// address, the VLAN terminated in hv (802.1Q device `t<vlan>` on `trunk`,
/// or eBPF marking the frame with its VLAN id), hv's routing by VLAN, and
/// its record (security groups, filtered in hv per member ENI, each in a
/// conntrack zone of its own: [`member_security_groups`]). Returns its
/// vSwitch gateway.
fn member_eni(
    d: &mut Draft,
    ctx: &VpcIpCtx<'_>,
    ni: usize,
    trunk_id: &str,
    hv: NsIdx,
    trunk_mac: [u8; 6],
    m: &Member,
) -> Result<Ipv4Addr, String> {
    let node = &ctx.nodes[ni];
    let vpc = ctx.vpc;
    let topo = ctx.topo();
    let (ip, vlan) = (m.ip, m.vlan);
    let vsw = cloud::vswitch(topo, &m.vswitch, &m.owner).map_err(|e| e.to_string())?;
    let id = names::eni_id(&d.plan.name, &m.owner, 0);
    let gw = cloud::gateway(vsw.cidr);

    // The member ENI's link between hv and the VPC router.
    let member_link = hv_member_link(vlan);
    d.veth(hv, &member_link, vpc, &id);
    d.route(vpc, RoutePlan::link(host_net(ip), &id));
    // The VPC asks for the pod's address on the member's link: hv answers
    // for it (its route to the pod leaves by another link).
    cloud::eni_proxy_arp(d.ns(hv), &member_link);

    // Where the VLAN ends in hv: an 802.1Q device, or the trunk link itself
    // (eBPF pops the tag and marks the frame with the VLAN id).
    let towards_pod = if d.plan.backends.vlan_devices {
        let tagged = hv_vlan_link(vlan);
        d.link(
            hv,
            &tagged,
            LinkKind::Vlan {
                parent: HV_TRUNK_SIDE.into(),
                id: vlan,
            },
        );
        // A pod's stack (a `vlan` plugin's device) asks for its gateway on
        // its VLAN: the VLAN device answers, as the vSwitch does.
        cloud::eni_proxy_arp(d.ns(hv), &tagged);
        d.ns(hv).rules.push(RulePlan {
            priority: MEMBER_RULE,
            iif: Some(tagged.clone()),
            table: vlan_table(vlan),
            ..Default::default()
        });
        tagged
    } else {
        d.ns(hv).rules.push(RulePlan {
            priority: MEMBER_RULE,
            iif: Some(HV_TRUNK_SIDE.into()),
            fwmark: Some((u32::from(vlan), u32::MAX)),
            table: vlan_table(vlan),
            ..Default::default()
        });
        HV_TRUNK_SIDE.to_string()
    };
    // Whatever the member's VLAN carries leaves by the member's link.
    d.route(
        hv,
        RoutePlan::via(default_net(), gw, &member_link, true).in_table(vlan_table(vlan)),
    );
    // The pod's address behind the trunk: the node's trunk link answers
    // (a VLAN device a plugin makes on eth1 keeps eth1's MAC).
    d.route(hv, RoutePlan::link(host_net(ip), &towards_pod));
    push_neigh(d, hv, &towards_pod, ip, trunk_mac);

    d.plan.points.push(ObsPoint {
        id: PointId::eni(&id),
        aliases: vec![m.alias.clone()],
        ns: hv,
        ifname: Some(member_link),
        vlan: Some(vlan),
    });
    let member_mac = names::mac(&PointId::eni(&id).to_string(), "member", 0);
    d.plan.enis.push(EniRecord {
        id,
        role: EniRole::Member,
        mac: member_mac,
        vswitch: m.vswitch.clone(),
        ips: vec![ip],
        security_groups: m.security_groups.clone(),
        instance: node.name.clone(),
        vlan: Some(vlan),
        trunk: Some(trunk_id.to_string()),
        pod: m.pod.clone(),
    });
    Ok(gw)
}

/// Priority of hv's rule sending a member's VLAN to the member's table.
pub const MEMBER_RULE: u32 = 100;

/// 802.1Q device on hv's trunk link for a VLAN id (native backend).
pub fn hv_vlan_link(vlan: u16) -> String {
    format!("t{vlan}")
}

/// Every member ENI's security groups, in the `hv/<node>` holding it: one
/// `inet cnlab_sg` table per hv, each member ENI in a conntrack zone of its
/// own (zone = VLAN id), so each stays as stateful as an ENI of its own.
/// Called once every ENI address is known (group member sets).
pub fn member_security_groups(
    d: &mut Draft,
    topo: &crate::topology::model::Topology,
    members: &mut crate::plan::sg::GroupMembers,
) -> Result<(), PlanError> {
    // A member ENI's record names its instance, whose hypervisor holds it.
    type Members = Vec<(EniRecord, u16)>;
    let mut by_node: BTreeMap<&str, Members> = BTreeMap::new();
    for e in d.plan.enis.iter().filter(|e| e.role == EniRole::Member) {
        if let Some(vlan) = e.vlan {
            by_node
                .entry(e.instance.as_str())
                .or_default()
                .push((e.clone(), vlan));
        }
    }
    let by_node: Vec<(Option<NsIdx>, Members)> = by_node
        .into_iter()
        .map(|(node, enis)| (d.plan.ns_index(&PointId::hv(node)), enis))
        .collect();
    let vlan_devices = d.plan.backends.vlan_devices;
    for (hv, enis) in by_node {
        let Some(hv) = hv else { continue };
        for (e, _) in enis.iter().filter(|(e, _)| e.security_groups.is_empty()) {
            d.plan.notes.push(crate::plan::no_security_group(e));
        }
        let script = crate::plan::sg::hv_members_nft(topo, &d.plan, &enis, vlan_devices, members)?;
        d.ns(hv).nft = script;
    }
    Ok(())
}

/// CreateNetworkInterface (member) + attach to the trunk, then Terway's
/// side in the node: returns the pod IP.
fn member_pod(
    d: &mut Draft,
    ctx: &mut VpcIpCtx<'_>,
    trunks: &mut BTreeMap<usize, Trunk>,
    no_trunk: &BTreeMap<usize, String>,
    ni: usize,
    pod: &Pod,
    pn: &PodNetworking,
) -> Result<Ipv4Addr, String> {
    let node = ctx.nodes[ni].clone();
    let (trunk_id, hv, trunk_mac, vlan) = match trunks.get(&ni) {
        Some(t) => {
            member_slot_left(ctx, ni, t.members.len())?;
            (t.id.clone(), t.hv, t.mac, t.next_vlan)
        }
        None => {
            let why = no_trunk.get(&ni).map(String::as_str);
            return Err(why.unwrap_or("no trunk ENI").to_string());
        }
    };
    let (ip, vsw_id) = member_address(ctx, pod, pn)?;
    let topo = ctx.topo();
    let sgs = if pn.spec.security_group_ids.is_empty() {
        topo.nodes[ni].security_groups.clone()
    } else {
        pn.spec.security_group_ids.clone()
    };
    let member = Member {
        vlan,
        ip,
        vswitch: vsw_id,
        security_groups: sgs,
        owner: pod_owner(pod),
        alias: PointId::eni_member(pod.metadata.ns(), &pod.metadata.name),
        pod: Some(format!("{}/{}", pod.metadata.ns(), pod.metadata.name)),
    };
    let gw = member_eni(d, ctx, ni, &trunk_id, hv, trunk_mac, &member)?;
    let member_link = hv_member_link(vlan);

    // Terway's VLAN plumbing in the node.
    let table = vlan_table(vlan);
    if d.plan.backends.vlan_devices {
        let sub = node_vlan_link(vlan);
        d.link(
            node.ns,
            &sub,
            LinkKind::Vlan {
                parent: TRUNK_LINK.into(),
                id: vlan,
            },
        );
        d.route(
            node.ns,
            RoutePlan::via(default_net(), gw, &sub, true).in_table(table),
        );
        push_neigh(d, node.ns, &sub, gw, VPC_GATEWAY_MAC);
    } else {
        d.route(
            node.ns,
            RoutePlan::via(default_net(), gw, TRUNK_LINK, true).in_table(table),
        );
        push_neigh(d, node.ns, TRUNK_LINK, gw, VPC_GATEWAY_MAC);
    }
    if let Some(t) = trunks.get_mut(&ni) {
        t.pods.push((ip, vlan));
        t.members.push((member_link, vlan));
        t.next_vlan += 1;
    }
    Ok(ip)
}

fn push_neigh(d: &mut Draft, ns: NsIdx, dev: &str, ip: Ipv4Addr, mac: [u8; 6]) {
    let neighs = &mut d.ns(ns).neighs;
    if !neighs.iter().any(|n| n.dev == dev && n.ip == ip) {
        neighs.push(NeighPlan {
            dev: dev.into(),
            ip,
            mac,
        });
    }
}
