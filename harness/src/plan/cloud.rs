//! The mock Alibaba Cloud: the VPC router namespace, one namespace per ENI
//! (where its security group applies), ECS instances' primary ENIs, hosts
//! outside the cluster, and VPC route entries.
//!
//! ```text
//!  node/n1  eth0 ══ inst  [eni/eni-…]  vpc ══ eni-…  [vpc]  eni-… ══ vpc  [eni/eni-…]  inst ══ eth0  node/n2
//! ```
//! An ENI namespace is a routed bump in the wire: whatever the VPC sends to
//! it goes to the instance (policy rule `iif vpc` → table 100), whatever the
//! instance sends goes to the VPC (main table), and proxy ARP on both links
//! answers for everything behind the other side.

use ipnet::{IpNet, Ipv4Net};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::draft::Draft;
use super::types::*;
use super::{names, PlanError};
use crate::topology::model::{External, Node, Topology, VSwitch};
use crate::topology::PointId;

/// Policy table of an ENI namespace holding the route towards the instance.
pub const ENI_TO_INSTANCE_TABLE: u32 = 100;
/// Link names inside an ENI namespace.
pub const ENI_VPC_SIDE: &str = "vpc";
pub const ENI_INSTANCE_SIDE: &str = "inst";

/// Alibaba's vSwitch gateway: the last usable address minus one (`.253` in a /24).
pub fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.broadcast()).saturating_sub(2))
}

/// The network address and the last three addresses of a vSwitch are never
/// handed to instances.
pub fn is_reserved(cidr: Ipv4Net, ip: Ipv4Addr) -> bool {
    let b = u32::from(cidr.broadcast());
    ip == cidr.network() || u32::from(ip) + 3 > b
}

/// VPC private addresses in use, with their owner.
#[derive(Debug, Default)]
pub struct AddressBook {
    used: BTreeMap<Ipv4Addr, String>,
    /// Per vSwitch CIDR: every host address below this one is taken or
    /// reserved (addresses are never given back), so `allocate` starts
    /// there instead of at `.1` — 10,000 member ENIs in one vSwitch made
    /// it quadratic.
    taken_below: std::collections::HashMap<Ipv4Net, Ipv4Addr>,
}

impl AddressBook {
    pub fn claim(&mut self, ip: Ipv4Addr, owner: &str) -> Result<(), PlanError> {
        match self.used.get(&ip) {
            Some(other) if other != owner => Err(PlanError::AddressInUse {
                ip,
                owner: owner.into(),
                other: other.clone(),
            }),
            _ => {
                self.used.insert(ip, owner.into());
                Ok(())
            }
        }
    }

    /// First free, unreserved address of the vSwitch from `.1` upwards.
    pub fn allocate(&mut self, vsw: &VSwitch, owner: &str) -> Result<Ipv4Addr, PlanError> {
        let hosts = match self.taken_below.get(&vsw.cidr) {
            // The broadcast address ends the range; `is_reserved` skips it.
            Some(&from) => ipnet::Ipv4AddrRange::new(from, vsw.cidr.broadcast()),
            None => vsw.cidr.hosts(),
        };
        let found = hosts
            .into_iter()
            .find(|ip| !is_reserved(vsw.cidr, *ip) && !self.used.contains_key(ip));
        let ip = found.ok_or_else(|| PlanError::VswitchFull {
            vswitch: vsw.id.clone(),
            owner: owner.into(),
        })?;
        self.used.insert(ip, owner.into());
        self.taken_below
            .insert(vsw.cidr, Ipv4Addr::from(u32::from(ip).saturating_add(1)));
        Ok(ip)
    }
}

pub fn vswitch<'t>(topo: &'t Topology, id: &str, owner: &str) -> Result<&'t VSwitch, PlanError> {
    topo.vpc
        .vswitches
        .iter()
        .find(|v| v.id == id)
        .ok_or_else(|| PlanError::UnknownVswitch {
            owner: owner.into(),
            vswitch: id.into(),
        })
}

/// The `vpc` namespace: a router holding every vSwitch gateway on `lo`.
pub fn add_vpc(d: &mut Draft, topo: &Topology) -> NsIdx {
    let vpc = d.add_ns(&PointId::Vpc, NsKind::Vpc);
    for vsw in &topo.vpc.vswitches {
        let gw = gateway(vsw.cidr);
        d.addr(vpc, "lo", host_net(gw), Scope::Global);
    }
    d.plan.points.push(ObsPoint {
        id: PointId::Vpc,
        aliases: vec![],
        ns: vpc,
        ifname: None,
        vlan: None,
    });
    vpc
}

pub fn host_net(ip: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(ip))
}

pub fn net(ip: Ipv4Addr, prefix: u8) -> IpNet {
    // prefix comes from an existing Ipv4Net, so it is ≤ 32.
    IpNet::V4(Ipv4Net::new(ip, prefix.min(32)).unwrap_or_else(|_| Ipv4Net::from(ip)))
}

pub fn default_net() -> IpNet {
    IpNet::V4(Ipv4Net::default())
}

/// One ENI to attach to an instance.
pub struct EniSpec<'a> {
    /// `node/<name>` or `external/<name>`: seeds the ENI id.
    pub owner_key: &'a str,
    /// Instance name recorded on the ENI.
    pub instance: &'a str,
    pub role: EniRole,
    pub index: usize,
    pub vswitch: &'a VSwitch,
    pub ip: Ipv4Addr,
    pub security_groups: Vec<String>,
    /// Where the ENI shows up, and under which name.
    pub inst_ns: NsIdx,
    pub inst_ifname: &'a str,
    pub aliases: Vec<PointId>,
}

/// Creates the ENI namespace, its two veths and its routing; records the ENI.
/// Returns the ENI id.
pub fn attach_eni(d: &mut Draft, vpc: NsIdx, spec: EniSpec<'_>) -> String {
    let id = names::eni_id(&d.plan.name, spec.owner_key, spec.index);
    let gw = gateway(spec.vswitch.cidr);
    let eni = d.add_ns(&PointId::eni(&id), NsKind::Eni);
    d.veth(vpc, &id, eni, ENI_VPC_SIDE);
    let (_, inst_mac) = d.veth(eni, ENI_INSTANCE_SIDE, spec.inst_ns, spec.inst_ifname);

    eni_vpc_side(d.ns(eni), gw);
    eni_instance_side(d.ns(eni), spec.ip);

    d.route(vpc, RoutePlan::link(host_net(spec.ip), &id));

    d.plan.points.push(ObsPoint {
        id: PointId::eni(&id),
        aliases: spec.aliases,
        ns: eni,
        ifname: None,
        vlan: None,
    });
    d.plan.enis.push(EniRecord {
        id: id.clone(),
        role: spec.role,
        mac: inst_mac,
        vswitch: spec.vswitch.id.clone(),
        ips: vec![spec.ip],
        security_groups: spec.security_groups,
        instance: spec.instance.into(),
        vlan: None,
        trunk: None,
        pod: None,
    });
    id
}

/// The cloud side of an ENI towards the VPC router: forwarding, proxy ARP
/// on the `vpc` link, instance traffic to the vSwitch gateway, and rule 100
/// sending whatever the VPC delivers to table 100. Shared by planned ENIs
/// and the ones the mock cloud creates at run time.
pub fn eni_vpc_side(p: &mut NsPlan, gw: Ipv4Addr) {
    p.sysctl("net/ipv4/ip_forward", "1");
    eni_proxy_arp(p, ENI_VPC_SIDE);
    p.routes
        .push(RoutePlan::via(default_net(), gw, ENI_VPC_SIDE, true));
    p.rules.push(RulePlan {
        priority: 100,
        iif: Some(ENI_VPC_SIDE.into()),
        table: ENI_TO_INSTANCE_TABLE,
        ..Default::default()
    });
}

/// The cloud side of an ENI towards its instance: proxy ARP on `inst` and
/// table 100's route delivering to the ENI's primary address.
pub fn eni_instance_side(p: &mut NsPlan, primary_ip: Ipv4Addr) {
    eni_proxy_arp(p, ENI_INSTANCE_SIDE);
    p.routes.push(
        RoutePlan::via(default_net(), primary_ip, ENI_INSTANCE_SIDE, true)
            .in_table(ENI_TO_INSTANCE_TABLE),
    );
}

pub(crate) fn eni_proxy_arp(p: &mut NsPlan, link: &str) {
    p.sysctl(&format!("net/ipv4/conf/{link}/proxy_arp"), "1");
    // The kernel queues proxy-ARP replies to *broadcast* requests for a
    // random 0..proxy_delay (default 0.8 s) before answering; probes
    // with a 1.5 s deadline would then fail on a cold ARP cache.
    p.sysctl(&format!("net/ipv4/neigh/{link}/proxy_delay"), "0");
}

/// What the CNI needs to know about a node.
#[derive(Debug, Clone)]
pub struct NodeCtx {
    pub name: String,
    pub ns: NsIdx,
    pub ip: Ipv4Addr,
    /// Primary ENI id.
    pub eni: String,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
}

/// Reserves every address written in the topology before anything is allocated.
pub fn claim_pinned(topo: &Topology, book: &mut AddressBook) -> Result<(), PlanError> {
    for n in &topo.nodes {
        if let Some(ip) = n.ip {
            book.claim(ip, &PointId::node(&n.name).to_string())?;
        }
    }
    for x in &topo.externals {
        book.claim(x.ip, &PointId::external(&x.name).to_string())?;
    }
    for n in &topo.nodes {
        for m in n.trunk.iter().flat_map(|t| &t.members) {
            book.claim(m.ip, &super::agent::trunking::member_owner(&n.name, m.vlan))?;
        }
    }
    Ok(())
}

/// An ECS instance of the cluster: its namespace and primary ENI as `eth0`.
pub fn add_node(
    d: &mut Draft,
    vpc: NsIdx,
    topo: &Topology,
    book: &mut AddressBook,
    node: &Node,
) -> Result<NodeCtx, PlanError> {
    let id = PointId::node(&node.name);
    let key = id.to_string();
    let vsw = vswitch(topo, &node.vswitch, &key)?;
    let ip = match node.ip {
        Some(ip) => ip,
        None => book.allocate(vsw, &key)?,
    };
    check_sgs(topo, &node.security_groups, &key)?;
    let ns = d.add_ns(&id, NsKind::Node);
    let eni = attach_eni(
        d,
        vpc,
        EniSpec {
            owner_key: &key,
            instance: &node.name,
            role: EniRole::Primary,
            index: 0,
            vswitch: vsw,
            ip,
            security_groups: node.security_groups.clone(),
            inst_ns: ns,
            inst_ifname: "eth0",
            aliases: vec![PointId::eni_primary(&node.name)],
        },
    );
    let gw = gateway(vsw.cidr);
    let prefix = vsw.cidr.prefix_len();
    d.addr(ns, "eth0", net(ip, prefix), Scope::Global);
    d.route(ns, RoutePlan::via(default_net(), gw, "eth0", false));
    d.plan.points.push(ObsPoint {
        id: PointId::eth0(&node.name),
        aliases: vec![],
        ns,
        ifname: Some("eth0".into()),
        vlan: None,
    });
    d.plan.endpoints.push(Endpoint {
        id,
        kind: EndpointKind::Node,
        ns,
        ip,
        node: Some(node.name.clone()),
    });
    Ok(NodeCtx {
        name: node.name.clone(),
        ns,
        ip,
        eni,
        gateway: gw,
        prefix,
    })
}

/// A host outside the cluster: an ECS in a vSwitch (own ENI and security
/// groups) or, with `internet: true`, a public host wired straight to the
/// VPC router on a link `inet<k>`.
pub fn add_external(
    d: &mut Draft,
    vpc: NsIdx,
    topo: &Topology,
    ext: &External,
    inet_index: &mut usize,
) -> Result<NsIdx, PlanError> {
    let id = PointId::external(&ext.name);
    let key = id.to_string();
    let ns = d.add_ns(&id, NsKind::External);
    match (&ext.vswitch, ext.internet) {
        (Some(vsw_id), false) => {
            let vsw = vswitch(topo, vsw_id, &key)?;
            check_sgs(topo, &ext.security_groups, &key)?;
            attach_eni(
                d,
                vpc,
                EniSpec {
                    owner_key: &key,
                    instance: &ext.name,
                    role: EniRole::External,
                    index: 0,
                    vswitch: vsw,
                    ip: ext.ip,
                    security_groups: ext.security_groups.clone(),
                    inst_ns: ns,
                    inst_ifname: "eth0",
                    aliases: vec![PointId::eni_external(&ext.name)],
                },
            );
            d.addr(
                ns,
                "eth0",
                net(ext.ip, vsw.cidr.prefix_len()),
                Scope::Global,
            );
            d.route(
                ns,
                RoutePlan::via(default_net(), gateway(vsw.cidr), "eth0", false),
            );
        }
        (_, true) => {
            let link = format!("inet{}", *inet_index);
            *inet_index += 1;
            d.veth(vpc, &link, ns, "eth0");
            d.addr(ns, "eth0", host_net(ext.ip), Scope::Global);
            d.route(ns, RoutePlan::link(default_net(), "eth0"));
            d.route(vpc, RoutePlan::link(host_net(ext.ip), &link));
            // The internet host ARPs for every destination (`default dev eth0`).
            d.sysctl(vpc, &format!("net/ipv4/conf/{link}/proxy_arp"), "1");
            d.sysctl(vpc, &format!("net/ipv4/neigh/{link}/proxy_delay"), "0");
        }
        (None, false) => {
            return Err(PlanError::ExternalWithoutVswitch {
                external: ext.name.clone(),
            })
        }
    }
    d.plan.points.push(ObsPoint {
        id: id.clone(),
        aliases: vec![],
        ns,
        ifname: None,
        vlan: None,
    });
    d.plan.endpoints.push(Endpoint {
        id,
        kind: EndpointKind::External,
        ns,
        ip: ext.ip,
        node: None,
    });
    Ok(ns)
}

fn check_sgs(topo: &Topology, sgs: &[String], owner: &str) -> Result<(), PlanError> {
    for sg in sgs {
        if !topo.vpc.security_groups.iter().any(|s| &s.id == sg) {
            return Err(PlanError::UnknownSecurityGroup {
                owner: owner.into(),
                sg: sg.clone(),
            });
        }
    }
    Ok(())
}

/// Resolves `next_hop` (node name or an ENI address) to an ENI id and adds
/// the entry; an identical entry is kept once.
pub fn add_route_entry(
    d: &mut Draft,
    nodes: &[NodeCtx],
    dest: Ipv4Net,
    next_hop: &str,
) -> Result<(), PlanError> {
    let eni = if let Some(n) = nodes.iter().find(|n| n.name == next_hop) {
        n.eni.clone()
    } else {
        let ip: Option<Ipv4Addr> = next_hop.parse().ok();
        let found = ip.and_then(|ip| d.plan.enis.iter().find(|e| e.ips.contains(&ip)));
        match found {
            Some(e) => e.id.clone(),
            None => {
                return Err(PlanError::UnknownNextHop {
                    dest,
                    next_hop: next_hop.into(),
                })
            }
        }
    };
    if let Some(existing) = d.plan.route_entries.iter().find(|r| r.dest == dest) {
        if existing.eni == eni {
            return Ok(());
        }
        return Err(PlanError::RouteEntryConflict {
            dest,
            first: existing.next_hop.clone(),
            second: next_hop.into(),
        });
    }
    d.plan.route_entries.push(RouteEntryPlan {
        dest,
        next_hop: next_hop.into(),
        eni,
    });
    Ok(())
}

/// Programs every route entry in the VPC router: `dest dev <eni> scope link`.
pub fn program_route_entries(d: &mut Draft, vpc: NsIdx) {
    let entries = d.plan.route_entries.clone();
    for r in entries {
        d.route(vpc, RoutePlan::link(IpNet::V4(r.dest), &r.eni));
    }
}

/// nft for the VPC router when internet hosts exist: they reach load
/// balancer addresses only, and the VPC never opens connections to them.
pub fn internet_nft(lb_ips: &[Ipv4Addr]) -> String {
    let mut s = String::from("table inet cnlab_vpc {\n");
    if !lb_ips.is_empty() {
        let ips: Vec<String> = lb_ips.iter().map(|i| i.to_string()).collect();
        s += &format!(
            "  set lb_ips {{\n    type ipv4_addr\n    elements = {{ {} }}\n  }}\n",
            ips.join(", ")
        );
    }
    s += "  chain forward {\n    type filter hook forward priority 0; policy accept;\n";
    s += "    ct state established,related accept\n";
    if !lb_ips.is_empty() {
        s += "    iifname \"inet*\" ip daddr @lb_ips counter accept comment \"internet to load balancers\"\n";
    }
    s += "    iifname \"inet*\" counter drop comment \"internet reaches load balancers only\"\n";
    s += "    oifname \"inet*\" counter drop comment \"no new connections from the VPC to the internet\"\n";
    s += "  }\n}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_and_reserved_in_a_slash24() {
        let c: Ipv4Net = "10.0.4.0/24".parse().unwrap();
        assert_eq!(gateway(c), Ipv4Addr::new(10, 0, 4, 253));
        for last in [0u8, 253, 254, 255] {
            assert!(is_reserved(c, Ipv4Addr::new(10, 0, 4, last)), ".{last}");
        }
        assert!(!is_reserved(c, Ipv4Addr::new(10, 0, 4, 1)));
        assert!(!is_reserved(c, Ipv4Addr::new(10, 0, 4, 252)));
    }

    #[test]
    fn allocation_skips_used_and_reserved() {
        let vsw = VSwitch {
            id: "vsw-a".into(),
            zone: None,
            cidr: "10.0.4.0/29".parse().unwrap(),
        };
        let mut book = AddressBook::default();
        book.claim(Ipv4Addr::new(10, 0, 4, 2), "node/pinned")
            .unwrap();
        // /29: .0 network, .5/.6/.7 the last three, .2 pinned.
        let got: Vec<_> = (0..3)
            .map(|i| book.allocate(&vsw, &format!("node/{i}")).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                Ipv4Addr::new(10, 0, 4, 1),
                Ipv4Addr::new(10, 0, 4, 3),
                Ipv4Addr::new(10, 0, 4, 4)
            ]
        );
        let err = book.allocate(&vsw, "node/b").unwrap_err();
        assert!(
            err.to_string().contains("vsw-a") && err.to_string().contains("node/b"),
            "{err}"
        );
    }
}
