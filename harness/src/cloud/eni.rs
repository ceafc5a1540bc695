//! ENI verbs of the mock cloud (CreateNetworkInterface, Attach…, Detach…,
//! Delete…, AssignPrivateIpAddresses, Unassign…, DescribeNetworkInterfaces)
//! carried out on a live lab.
//!
//! A runtime ENI is wired exactly like a planned one (`plan::cloud::attach_eni`):
//! its own namespace `cnl-<lab id>-e-<eni id>` between the `vpc` router and
//! the instance, security groups as nft there, and every neighbour pinned
//! (see `plan::neigh` for why).

use crate::topology::PointId;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::{CloudError, MockCloud};
use crate::kernel::build::configure_namespace;
use crate::kernel::netlink::{Netlink, UpAtCreation};
use crate::kernel::{netns, KernelError, NetNs};
use crate::plan;
use crate::plan::cloud::{
    gateway, is_reserved, ENI_INSTANCE_SIDE, ENI_TO_INSTANCE_TABLE, ENI_VPC_SIDE,
};
use crate::plan::{
    names, EniRecord, EniRole, NeighPlan, NsKind, NsPlan, RoutePlan, RouteType, Scope, VethEnd,
};
use crate::topology::model::{EniLimits, VSwitch};

/// Private IPs to assign: a count the cloud picks, or explicit addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateIps {
    Count(usize),
    Explicit(Vec<Ipv4Addr>),
}

/// Where an ENI is plugged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub instance: String,
    /// Its link in the instance's namespace (`eth0` for planned primaries,
    /// `None` when the plan does not say).
    pub ifname: Option<String>,
}

/// One ENI as the mock cloud tracks it.
#[derive(Debug)]
pub(super) struct EniState {
    pub record: EniRecord,
    /// Created through the API (true) or by the plan (false).
    pub runtime: bool,
    pub attached: Option<Attachment>,
    /// Runtime ENIs own their namespace handle; planned ones use the lab's.
    pub ns: Option<NetNs>,
    /// MAC of the ENI's link `<eni id>` in the `vpc` namespace.
    pub router_mac: Option<[u8; 6]>,
    /// MAC of the link `vpc` in the ENI namespace.
    pub vpc_side_mac: Option<[u8; 6]>,
    /// MAC of the link `inst` in the ENI namespace (what the instance's
    /// gateway resolves to).
    pub inst_mac: Option<[u8; 6]>,
}

/// First interface index of runtime veths: far above the lab's own
/// (`kernel::build` uses 1000 + 2k), two per attachment, ends different
/// (see `Netlink::add_veth_indexed`).
const RUNTIME_VETH_INDEX: u32 = 40000;

impl<'a> MockCloud<'a> {
    /// The ENI states of the plan, with MACs read from its veths.
    pub(super) fn planned_enis(lab: &crate::lab::Lab) -> Vec<EniState> {
        let plan = lab.plan();
        let vpc = plan.ns_index("vpc");
        plan.enis
            .iter()
            .map(|e| {
                let eni_ns = plan.ns_index(&PointId::eni(&e.id));
                let mut st = EniState {
                    record: e.clone(),
                    runtime: false,
                    attached: Some(Attachment {
                        instance: e.instance.clone(),
                        ifname: None,
                    }),
                    ns: None,
                    router_mac: None,
                    vpc_side_mac: None,
                    inst_mac: None,
                };
                for v in &plan.veths {
                    if Some(v.a.ns) == vpc && v.a.name == e.id && Some(v.b.ns) == eni_ns {
                        st.router_mac = v.a.mac;
                        st.vpc_side_mac = v.b.mac;
                    }
                    if Some(v.a.ns) == eni_ns && v.a.name == ENI_INSTANCE_SIDE {
                        st.inst_mac = v.a.mac;
                        st.attached = Some(Attachment {
                            instance: e.instance.clone(),
                            ifname: Some(v.b.name.clone()),
                        });
                    }
                }
                st
            })
            .collect()
    }

    fn eni(&self, id: &str) -> Result<&EniState, CloudError> {
        self.enis
            .iter()
            .find(|e| e.record.id == id)
            .ok_or_else(|| CloudError::EniNotFound(id.into()))
    }

    fn eni_pos(&self, id: &str) -> Result<usize, CloudError> {
        self.enis
            .iter()
            .position(|e| e.record.id == id)
            .ok_or_else(|| CloudError::EniNotFound(id.into()))
    }

    /// The namespace of ENI `pos`.
    fn eni_netns(&self, pos: usize) -> Result<&NetNs, CloudError> {
        let st = &self.enis[pos];
        // A member ENI has no namespace: it lives in its trunk's hypervisor,
        // beside the other members, and Terway attaches it, not this API.
        if st.record.role == crate::plan::EniRole::Member {
            return Err(CloudError::Unsupported(format!(
                "{} is a member ENI of trunk {}: the mock cloud's API does not attach, detach or \
                 re-address member ENIs (they ride their trunk's hypervisor; declare them in the topology)",
                st.record.id,
                st.record.trunk.as_deref().unwrap_or("?")
            )));
        }
        match &st.ns {
            Some(ns) => Ok(ns),
            None => self
                .lab
                .netns_by_key(&PointId::eni(&st.record.id))
                .ok_or_else(|| CloudError::EniNotFound(st.record.id.clone())),
        }
    }

    fn vswitch(&self, id: &str) -> Result<VSwitch, CloudError> {
        let topo = self.topo.ok_or(CloudError::NoTopology("vSwitch CIDRs"))?;
        topo.vpc
            .vswitches
            .iter()
            .find(|v| v.id == id)
            .cloned()
            .ok_or_else(|| CloudError::VSwitchNotFound(id.into()))
    }

    /// Every VPC address something in the lab holds: ENI IPs, endpoints and
    /// addresses configured in any namespace.
    fn addresses_in_use(&self) -> BTreeSet<Ipv4Addr> {
        let plan = self.lab.plan();
        let mut used: BTreeSet<Ipv4Addr> = self
            .enis
            .iter()
            .flat_map(|e| e.record.ips.iter().copied())
            .collect();
        used.extend(plan.endpoints.iter().map(|e| e.ip));
        for n in &plan.namespaces {
            for a in &n.addrs {
                if let IpAddr::V4(ip) = a.addr.addr() {
                    used.insert(ip);
                }
            }
        }
        used
    }

    fn allocate(
        &self,
        vsw: &VSwitch,
        count: usize,
        owner: &str,
    ) -> Result<Vec<Ipv4Addr>, CloudError> {
        let used = self.addresses_in_use();
        let got: Vec<Ipv4Addr> = vsw
            .cidr
            .hosts()
            .filter(|ip| !is_reserved(vsw.cidr, *ip) && !used.contains(ip))
            .take(count)
            .collect();
        if got.len() < count {
            return Err(CloudError::VSwitchFull {
                vswitch: vsw.id.clone(),
                owner: owner.into(),
            });
        }
        Ok(got)
    }

    fn check_free(&self, vsw: &VSwitch, ip: Ipv4Addr) -> Result<(), CloudError> {
        if !vsw.cidr.contains(&ip) || is_reserved(vsw.cidr, ip) {
            return Err(CloudError::IpNotInVSwitch {
                ip,
                vswitch: vsw.id.clone(),
            });
        }
        if self.addresses_in_use().contains(&ip) {
            return Err(CloudError::IpAlreadyUsed(ip));
        }
        Ok(())
    }

    /// The instance's limits: from the topology, or the model's defaults.
    fn limits(&self, instance: &str) -> Result<EniLimits, CloudError> {
        let plan = self.lab.plan();
        if plan.endpoint(&PointId::node(instance)).is_none() {
            return Err(CloudError::InstanceNotFound(instance.into()));
        }
        Ok(self
            .topo
            .and_then(|t| t.nodes.iter().find(|n| n.name == instance))
            .map(|n| crate::plan::limits::node_limits(n).0)
            .unwrap_or_default())
    }

    fn run_in<R: Send>(
        ns: &NetNs,
        f: impl FnOnce(&mut Netlink) -> Result<R, KernelError> + Send,
    ) -> Result<R, CloudError> {
        Ok(ns.run(|| {
            let mut nl = Netlink::open()?;
            f(&mut nl)
        })??)
    }

    fn vpc_ns(&self) -> Result<&'a NetNs, CloudError> {
        self.lab
            .netns_by_key("vpc")
            .ok_or_else(|| CloudError::NextHopNotFound("vpc namespace".into()))
    }
}

// ---- the verbs ----------------------------------------------------------

fn v4net(ip: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(ip))
}

fn default_net() -> IpNet {
    IpNet::V4(Ipv4Net::default())
}

fn end(name: &str, mac: Option<[u8; 6]>) -> VethEnd {
    // `ns` only labels errors of plan builds; the peer namespace is passed
    // as a handle here.
    VethEnd {
        ns: 0,
        name: name.into(),
        mac,
    }
}

/// Deletes a runtime ENI namespace again when creating the ENI fails half way.
struct NsGuard(Option<String>);

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            if let Err(e) = netns::delete(&name) {
                tracing::warn!("cleaning up half-created ENI namespace: {e}");
            }
        }
    }
}

impl<'a> MockCloud<'a> {
    pub(super) fn create_eni(
        &mut self,
        vswitch: &str,
        security_groups: &[String],
        primary_ip: Option<Ipv4Addr>,
    ) -> Result<String, CloudError> {
        let vsw = self.vswitch(vswitch)?;
        let topo = self.topo.ok_or(CloudError::NoTopology("security groups"))?;
        if security_groups.is_empty() {
            return Err(CloudError::MissingSecurityGroup);
        }
        for sg in security_groups {
            if !topo.vpc.security_groups.iter().any(|s| &s.id == sg) {
                return Err(CloudError::SecurityGroupNotFound(sg.clone()));
            }
        }
        let id = loop {
            self.created += 1;
            let seed = format!("{}/runtime-eni/{}", self.lab.id(), self.created);
            let id = format!("eni-{}", &names::sha1_hex(&seed)[..10]);
            if !self.enis.iter().any(|e| e.record.id == id) {
                break id;
            }
        };
        let ip = match primary_ip {
            Some(ip) => {
                self.check_free(&vsw, ip)?;
                ip
            }
            None => self.allocate(&vsw, 1, &PointId::eni(&id).to_string())?[0],
        };
        let key = PointId::eni(&id).to_string();
        let record = EniRecord {
            id: id.clone(),
            role: EniRole::Secondary,
            mac: names::mac(&key, "nic", 0),
            vswitch: vsw.id.clone(),
            ips: vec![ip],
            security_groups: security_groups.to_vec(),
            instance: String::new(),
            vlan: None,
            trunk: None,
            pod: None,
        };
        let router_mac = names::mac("vpc", &id, 0);
        let vpc_side_mac = names::mac(&key, ENI_VPC_SIDE, 0);
        let inst_mac = names::mac(&key, ENI_INSTANCE_SIDE, 0);
        let gw = gateway(vsw.cidr);
        let script = crate::plan::sg::eni_nft(topo, self.lab.plan(), &record)
            .map_err(|e| CloudError::Plan(e.to_string()))?;

        let ns_name = format!(
            "{}{}-e-{id}",
            crate::lab::registry::NS_PREFIX,
            self.lab.id()
        );
        let eni_ns = NetNs::create(&ns_name)?;
        let mut guard = NsGuard(Some(ns_name));
        let index = self.next_veth_index();
        let vpc = self.vpc_ns()?;
        let eni_ref = &eni_ns;
        let id2 = id.clone();
        Self::run_in(vpc, move |nl| {
            nl.add_veth_indexed(
                &end(&id2, Some(router_mac)),
                &end(ENI_VPC_SIDE, Some(vpc_side_mac)),
                eni_ref,
                index,
                UpAtCreation::default(),
            )?;
            nl.set_link(&id2, None, None, Some(true))?;
            nl.add_route(&RoutePlan::link(v4net(ip), &id2))?;
            nl.add_neigh(&NeighPlan {
                dev: id2.clone(),
                ip,
                mac: vpc_side_mac,
            })
        })?;
        // The ENI's own namespace, described as a planned one is
        // (plan::cloud) and applied by the kernel builder.
        let mut p = NsPlan::new(&key, &format!("e-{id}"), NsKind::Eni);
        p.up(ENI_VPC_SIDE);
        plan::cloud::eni_vpc_side(&mut p, gw);
        p.router_sysctls([ENI_VPC_SIDE]);
        p.neighs.push(NeighPlan {
            dev: ENI_VPC_SIDE.into(),
            ip: gw,
            mac: router_mac,
        });
        // While detached, what the VPC sends here is dropped; without
        // this it would fall through to the main table and bounce
        // between the ENI and the router until its TTL runs out.
        p.routes.push(
            RoutePlan {
                kind: RouteType::Blackhole,
                dev: None,
                scope: Scope::Global,
                metric: Some(u32::MAX),
                ..RoutePlan::link(default_net(), ENI_INSTANCE_SIDE)
            }
            .in_table(ENI_TO_INSTANCE_TABLE),
        );
        p.nft = script;
        let wire =
            configure_namespace(&p, &eni_ns, &self.lab.plan().backends).map_err(CloudError::from);
        if let Err(e) = wire {
            // The router side goes with the namespace, but only once the
            // kernel gets round to it: remove it now.
            let id2 = id.clone();
            let _ = Self::run_in(vpc, move |nl| nl.del_link(&id2));
            return Err(e);
        }
        self.pin_for_neighbours(&[ip], true)?;
        guard.0 = None;
        self.enis.push(EniState {
            record,
            runtime: true,
            attached: None,
            ns: Some(eni_ns),
            router_mac: Some(router_mac),
            vpc_side_mac: Some(vpc_side_mac),
            inst_mac: Some(inst_mac),
        });
        Ok(id)
    }

    fn next_veth_index(&mut self) -> (u32, u32) {
        let base = RUNTIME_VETH_INDEX + 2 * self.veth_pairs;
        self.veth_pairs += 1;
        (base, base + 1)
    }

    /// ENIs attached to `instance` that take an ENI slot (VLAN members ride
    /// on their trunk and do not).
    fn enis_on(&self, instance: &str) -> usize {
        self.enis
            .iter()
            .filter(|e| e.record.role != EniRole::Member)
            .filter(|e| e.attached.as_ref().is_some_and(|a| a.instance == instance))
            .count()
    }

    pub(super) fn attach_eni(&mut self, eni: &str, instance: &str) -> Result<String, CloudError> {
        let pos = self.eni_pos(eni)?;
        let limits = self.limits(instance)?;
        if let Some(a) = &self.enis[pos].attached {
            return Err(CloudError::InvalidEniState {
                eni: eni.into(),
                state: format!("InUse (attached to {})", a.instance),
            });
        }
        let max = usize::try_from(limits.max).unwrap_or(usize::MAX);
        if self.enis_on(instance) >= max {
            return Err(CloudError::EniCountExceeded {
                instance: instance.into(),
                max: limits.max,
            });
        }
        let node_ns = self
            .lab
            .netns_by_key(&PointId::node(instance))
            .ok_or_else(|| CloudError::InstanceNotFound(instance.into()))?;
        let ifname = Self::run_in(node_ns, |nl| {
            let taken: BTreeSet<String> = nl.links()?.into_iter().map(|l| l.name).collect();
            Ok((1..)
                .map(|k| format!("eth{k}"))
                .find(|n| !taken.contains(n))
                .unwrap_or_default())
        })?;
        let index = self.next_veth_index();
        let st = &self.enis[pos];
        let (record, inst_mac) = (st.record.clone(), st.inst_mac);
        let eni_ns = self.eni_netns(pos)?;
        let name = ifname.clone();
        Self::run_in(eni_ns, move |nl| {
            nl.add_veth_indexed(
                &end(ENI_INSTANCE_SIDE, inst_mac),
                &end(&name, Some(record.mac)),
                node_ns,
                index,
                UpAtCreation::default(),
            )
        })?;
        // The instance side, as plan::cloud plumbs it for a planned ENI.
        let mut p = NsPlan {
            key: PointId::eni(eni).to_string(),
            ..Default::default()
        };
        p.up(ENI_INSTANCE_SIDE);
        plan::cloud::eni_instance_side(&mut p, record.ips[0]);
        p.sysctl(&format!("net/ipv4/conf/{ENI_INSTANCE_SIDE}/rp_filter"), "0");
        p.neighs.extend(record.ips.iter().map(|ip| NeighPlan {
            dev: ENI_INSTANCE_SIDE.into(),
            ip: *ip,
            mac: record.mac,
        }));
        configure_namespace(&p, eni_ns, &self.lab.plan().backends)?;
        let name = ifname.clone();
        Self::run_in(node_ns, move |nl| {
            nl.set_link(&name, None, None, Some(true))
        })?;
        let st = &mut self.enis[pos];
        st.record.instance = instance.into();
        st.attached = Some(Attachment {
            instance: instance.into(),
            ifname: Some(ifname.clone()),
        });
        Ok(ifname)
    }

    pub(super) fn detach_eni(&mut self, eni: &str, instance: &str) -> Result<(), CloudError> {
        let pos = self.eni_pos(eni)?;
        let st = &self.enis[pos];
        let attached = match &st.attached {
            Some(a) if a.instance == instance => a.clone(),
            Some(a) => {
                return Err(CloudError::InvalidEniState {
                    eni: eni.into(),
                    state: format!("InUse (attached to {}, not {instance})", a.instance),
                })
            }
            None => {
                return Err(CloudError::InvalidEniState {
                    eni: eni.into(),
                    state: "Available (not attached)".into(),
                })
            }
        };
        if !st.runtime {
            return Err(CloudError::Unsupported(format!(
                "detaching {eni}: only ENIs created through the API can be detached"
            )));
        }
        let eni_ns = self.eni_netns(pos)?;
        // Deleting the instance end of the veth removes the node's link too,
        // and with it the ENI's table-100 route and pinned neighbours.
        Self::run_in(eni_ns, |nl| nl.del_link(ENI_INSTANCE_SIDE)).map_err(|e| match e {
            CloudError::Kernel(k) => CloudError::Kernel(k.context(format!(
                "detaching {eni} ({}) from {instance}",
                attached.ifname.as_deref().unwrap_or("?")
            ))),
            other => other,
        })?;
        let st = &mut self.enis[pos];
        st.attached = None;
        st.record.instance.clear();
        Ok(())
    }

    pub(super) fn delete_eni(&mut self, eni: &str) -> Result<(), CloudError> {
        let pos = self.eni_pos(eni)?;
        let st = &self.enis[pos];
        if let Some(a) = &st.attached {
            return Err(CloudError::InvalidEniState {
                eni: eni.into(),
                state: format!("InUse (attached to {})", a.instance),
            });
        }
        if !st.runtime {
            return Err(CloudError::Unsupported(format!(
                "deleting {eni}: only ENIs created through the API can be deleted"
            )));
        }
        let vpc = self.vpc_ns()?;
        let id = eni.to_string();
        // The router's link and its /32 routes would go with the namespace,
        // but asynchronously; delete them now.
        Self::run_in(vpc, move |nl| nl.del_link(&id))?;
        let ips = self.enis[pos].record.ips.clone();
        self.pin_for_neighbours(&ips, false)?;
        let st = self.enis.remove(pos);
        if let Some(ns) = st.ns {
            let name = ns.name().to_string();
            drop(ns);
            netns::delete(&name)?;
        }
        Ok(())
    }

    pub(super) fn assign_ips(
        &mut self,
        eni: &str,
        ips: PrivateIps,
    ) -> Result<Vec<Ipv4Addr>, CloudError> {
        let pos = self.eni_pos(eni)?;
        let st = &self.enis[pos];
        let vsw = self.vswitch(&st.record.vswitch)?;
        let limits = match &st.attached {
            Some(a)
                if self
                    .lab
                    .plan()
                    .endpoint(&PointId::node(&a.instance))
                    .is_some() =>
            {
                self.limits(&a.instance)?
            }
            _ => EniLimits::default(),
        };
        let new = match ips {
            PrivateIps::Count(n) => self.allocate(&vsw, n, &PointId::eni(eni).to_string())?,
            PrivateIps::Explicit(list) => {
                for (i, ip) in list.iter().enumerate() {
                    if list[..i].contains(ip) {
                        return Err(CloudError::IpAlreadyUsed(*ip));
                    }
                    self.check_free(&vsw, *ip)?;
                }
                list
            }
        };
        let max = usize::try_from(limits.ips_per_eni).unwrap_or(usize::MAX);
        if st.record.ips.len() + new.len() > max {
            return Err(CloudError::PrivateIpQuotaExceeded {
                eni: eni.into(),
                max: limits.ips_per_eni,
            });
        }
        let (vpc_side_mac, nic_mac, attached) = (
            st.vpc_side_mac.ok_or_else(|| {
                CloudError::Unsupported(format!("{eni} has no link to the VPC router"))
            })?,
            st.record.mac,
            st.attached.is_some(),
        );
        let vpc = self.vpc_ns()?;
        let eni_ns = self.eni_netns(pos)?;
        let (id, ips) = (eni.to_string(), new.clone());
        Self::run_in(vpc, move |nl| {
            for ip in &ips {
                nl.add_route(&RoutePlan::link(v4net(*ip), &id))?;
                nl.add_neigh(&NeighPlan {
                    dev: id.clone(),
                    ip: *ip,
                    mac: vpc_side_mac,
                })?;
            }
            Ok(())
        })?;
        if attached {
            let ips = new.clone();
            Self::run_in(eni_ns, move |nl| {
                for ip in &ips {
                    nl.add_neigh(&NeighPlan {
                        dev: ENI_INSTANCE_SIDE.into(),
                        ip: *ip,
                        mac: nic_mac,
                    })?;
                }
                Ok(())
            })?;
        }
        self.pin_for_neighbours(&new, true)?;
        self.enis[pos].record.ips.extend(&new);
        Ok(new)
    }

    pub(super) fn unassign_ips(&mut self, eni: &str, ips: &[Ipv4Addr]) -> Result<(), CloudError> {
        let pos = self.eni_pos(eni)?;
        let st = &self.enis[pos];
        for ip in ips {
            if st.record.ips.first() == Some(ip) {
                return Err(CloudError::PrimaryIp {
                    eni: eni.into(),
                    ip: *ip,
                });
            }
            if !st.record.ips.contains(ip) {
                return Err(CloudError::IpNotOnEni {
                    eni: eni.into(),
                    ip: *ip,
                });
            }
        }
        let attached = st.attached.is_some();
        let vpc = self.vpc_ns()?;
        let eni_ns = self.eni_netns(pos)?;
        let (id, list) = (eni.to_string(), ips.to_vec());
        Self::run_in(vpc, move |nl| {
            for ip in &list {
                nl.del_route(&RoutePlan::link(v4net(*ip), &id))?;
                nl.del_neigh(&id, *ip)?;
            }
            Ok(())
        })?;
        if attached {
            let list = ips.to_vec();
            Self::run_in(eni_ns, move |nl| {
                for ip in &list {
                    nl.del_neigh(ENI_INSTANCE_SIDE, *ip)?;
                }
                Ok(())
            })?;
        }
        self.pin_for_neighbours(ips, false)?;
        self.enis[pos].record.ips.retain(|ip| !ips.contains(ip));
        Ok(())
    }

    /// Pins (or unpins) `ips` where the lab's instances would ARP for them:
    /// on every planned instance link whose subnet holds them, answered by
    /// proxy ARP from that instance's ENI (`inst`), as `plan::neigh` does
    /// for the planned addresses.
    fn pin_for_neighbours(&self, ips: &[Ipv4Addr], add: bool) -> Result<(), CloudError> {
        let plan = self.lab.plan();
        for v in &plan.veths {
            let eni_side = &plan.namespaces[v.a.ns];
            if eni_side.kind != Some(NsKind::Eni) || v.a.name != ENI_INSTANCE_SIDE {
                continue;
            }
            let Some(proxy_mac) = v.a.mac else { continue };
            let inst = &plan.namespaces[v.b.ns];
            let on_link: Vec<Ipv4Addr> = ips
                .iter()
                .copied()
                .filter(|ip| {
                    inst.addrs.iter().any(|a| {
                        a.dev == v.b.name
                            && !a.noprefixroute
                            && matches!(a.addr, IpNet::V4(n) if n.prefix_len() < 32 && n.contains(ip) && n.addr() != *ip)
                    })
                })
                .collect();
            if on_link.is_empty() {
                continue;
            }
            let dev = v.b.name.clone();
            Self::run_in(self.lab.netns(v.b.ns), move |nl| {
                for ip in &on_link {
                    if add {
                        nl.add_neigh(&NeighPlan {
                            dev: dev.clone(),
                            ip: *ip,
                            mac: proxy_mac,
                        })?;
                    } else {
                        nl.del_neigh(&dev, *ip)?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The ENI's vSwitch gateway and the MAC it answers with on the
    /// instance's link: what an agent pins (like Terway) when it configures
    /// a hot-plugged ENI.
    pub fn eni_gateway(&self, eni: &str) -> Result<(Ipv4Addr, [u8; 6]), CloudError> {
        let st = self.eni(eni)?;
        let vsw = self.vswitch(&st.record.vswitch)?;
        let mac = st
            .inst_mac
            .ok_or_else(|| CloudError::Unsupported(format!("{eni} has no instance link")))?;
        Ok((gateway(vsw.cidr), mac))
    }

    /// Where the ENI is attached, if it is.
    pub fn attachment(&self, eni: &str) -> Result<Option<Attachment>, CloudError> {
        Ok(self.eni(eni)?.attached.clone())
    }
}
