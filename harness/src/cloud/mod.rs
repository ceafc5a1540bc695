//! The cloud API seam. Verbs mirror the ECS/VPC API (CreateRouteEntry,
//! DeleteRouteEntry, …); the mock cloud carries them out on a live lab by
//! changing the namespaces that play the VPC. A different agent or a
//! different cloud model plugs in here.

mod eni;

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use crate::kernel::netlink::Netlink;
use crate::lab::Lab;
use crate::plan::{EniRecord, EniRole, RouteEntryPlan, RoutePlan};
use crate::topology::Topology;
pub use eni::{Attachment, PrivateIps};

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("InvalidRouteEntry.NotFound: no route entry for {0}")]
    RouteEntryNotFound(Ipv4Net),
    #[error("InvalidNextHop.NotFound: {0} is neither a node nor an ENI address in this VPC")]
    NextHopNotFound(String),
    #[error("RouteEntry.Conflict: {0} already has a route entry")]
    RouteEntryConflict(Ipv4Net),
    #[error("InvalidEniId.NotFound: no network interface {0}")]
    EniNotFound(String),
    #[error("InvalidVSwitchId.NotFound: no vSwitch {0} in this VPC")]
    VSwitchNotFound(String),
    #[error("InvalidSecurityGroupId.NotFound: no security group {0}")]
    SecurityGroupNotFound(String),
    #[error("MissingParameter.SecurityGroupId: a network interface needs a security group")]
    MissingSecurityGroup,
    #[error("InvalidInstanceId.NotFound: no instance (node) {0}")]
    InstanceNotFound(String),
    #[error("InvalidIpAddress.AlreadyUsed: {0} is already in use")]
    IpAlreadyUsed(Ipv4Addr),
    #[error("InvalidIpAddress.NotInVSwitch: {ip} is not an assignable address of {vswitch}")]
    IpNotInVSwitch { ip: Ipv4Addr, vswitch: String },
    #[error("InvalidVSwitchId.IpNotEnough: {vswitch} has no free address left for {owner}")]
    VSwitchFull { vswitch: String, owner: String },
    #[error("InvalidOperation.InvalidEniState: {eni} is {state}")]
    InvalidEniState { eni: String, state: String },
    #[error("InvalidOperation.EniCountExceeded: instance {instance} takes at most {max} network interfaces (primary included)")]
    EniCountExceeded { instance: String, max: u32 },
    #[error(
        "QuotaExceed.PrivateIpAddress: {eni} holds at most {max} private IPs (primary included)"
    )]
    PrivateIpQuotaExceeded { eni: String, max: u32 },
    #[error(
        "InvalidOperation.PrimaryIp: {ip} is the primary IP of {eni} and cannot be unassigned"
    )]
    PrimaryIp { eni: String, ip: Ipv4Addr },
    #[error("InvalidIpAddress.NotFound: {ip} is not assigned to {eni}")]
    IpNotOnEni { eni: String, ip: Ipv4Addr },
    #[error("OperationDenied: {0}")]
    Unsupported(String),
    #[error("the mock cloud needs the topology for {0}: build it with MockCloud::with_topology")]
    NoTopology(&'static str),
    #[error("{0}")]
    Plan(String),
    #[error("{0}")]
    Kernel(#[from] crate::kernel::KernelError),
}

pub trait CloudApi {
    /// DescribeRouteEntryList
    fn describe_route_entries(&self) -> Vec<RouteEntryPlan>;
    /// CreateRouteEntry: `dest` is routed to the instance or ENI `next_hop`.
    fn create_route_entry(&mut self, dest: Ipv4Net, next_hop: &str) -> Result<(), CloudError>;
    /// DeleteRouteEntry
    fn delete_route_entry(&mut self, dest: Ipv4Net) -> Result<(), CloudError>;

    /// CreateNetworkInterface: a new, unattached ENI in `vswitch` with the
    /// given security groups; the primary IP is allocated when not given.
    /// Returns the ENI id.
    fn create_network_interface(
        &mut self,
        vswitch: &str,
        security_groups: &[String],
        primary_ip: Option<Ipv4Addr>,
    ) -> Result<String, CloudError>;
    /// AttachNetworkInterface: hot-plugs the ENI into the node `instance`.
    /// Returns its link name there (`eth1`, …), up and without an address.
    fn attach_network_interface(&mut self, eni: &str, instance: &str)
        -> Result<String, CloudError>;
    /// DetachNetworkInterface: removes the ENI's link from the node.
    fn detach_network_interface(&mut self, eni: &str, instance: &str) -> Result<(), CloudError>;
    /// DeleteNetworkInterface: only a detached ENI.
    fn delete_network_interface(&mut self, eni: &str) -> Result<(), CloudError>;
    /// AssignPrivateIpAddresses: returns the addresses assigned.
    fn assign_private_ip_addresses(
        &mut self,
        eni: &str,
        ips: PrivateIps,
    ) -> Result<Vec<Ipv4Addr>, CloudError>;
    /// UnassignPrivateIpAddresses (never the primary IP).
    fn unassign_private_ip_addresses(
        &mut self,
        eni: &str,
        ips: &[Ipv4Addr],
    ) -> Result<(), CloudError>;
    /// DescribeNetworkInterfaces: every ENI as it is now; a detached ENI
    /// has an empty `instance`.
    fn describe_network_interfaces(&self) -> Vec<EniRecord>;
}

/// The mock cloud of one live lab.
///
/// State lives in memory for the lab's lifetime; runtime ENI namespaces are
/// named `cnl-<lab id>-e-<eni id>`, so lab teardown and `cnlab gc` remove
/// them with the lab.
pub struct MockCloud<'a> {
    lab: &'a Lab,
    /// vSwitch CIDRs, security groups and instance limits; ENI creation
    /// needs it.
    topo: Option<&'a Topology>,
    route_entries: Vec<RouteEntryPlan>,
    enis: Vec<eni::EniState>,
    /// ENIs created so far (seeds runtime ENI ids).
    created: u32,
    /// veth pairs created so far (picks their interface indexes).
    veth_pairs: u32,
}

impl<'a> MockCloud<'a> {
    /// Route entries and the plan's ENIs; creating ENIs needs `with_topology`.
    pub fn new(lab: &'a Lab) -> Self {
        MockCloud {
            lab,
            topo: None,
            route_entries: lab.plan().route_entries.clone(),
            enis: Self::planned_enis(lab),
            created: 0,
            veth_pairs: 0,
        }
    }

    /// The mock cloud with the topology the lab was built from.
    pub fn with_topology(lab: &'a Lab, topo: &'a Topology) -> Self {
        MockCloud {
            topo: Some(topo),
            ..Self::new(lab)
        }
    }

    /// The ENI a next hop names: a node (its primary ENI) or an ENI address.
    fn eni_for(&self, next_hop: &str) -> Option<String> {
        self.enis
            .iter()
            .map(|e| &e.record)
            .find(|e| {
                (e.role == EniRole::Primary && e.instance == next_hop)
                    || e.ips.iter().any(|ip| ip.to_string() == next_hop)
            })
            .map(|e| e.id.clone())
    }

    fn vpc_route(
        &self,
        f: impl FnOnce(&mut Netlink) -> Result<(), crate::kernel::KernelError> + Send,
    ) -> Result<(), CloudError> {
        let vpc = self
            .lab
            .netns_by_key("vpc")
            .ok_or_else(|| CloudError::NextHopNotFound("vpc namespace".into()))?;
        vpc.run(|| {
            let mut nl = Netlink::open()?;
            f(&mut nl)
        })??;
        Ok(())
    }
}

impl CloudApi for MockCloud<'_> {
    fn describe_route_entries(&self) -> Vec<RouteEntryPlan> {
        self.route_entries.clone()
    }

    fn create_route_entry(&mut self, dest: Ipv4Net, next_hop: &str) -> Result<(), CloudError> {
        if self.route_entries.iter().any(|r| r.dest == dest) {
            return Err(CloudError::RouteEntryConflict(dest));
        }
        let eni = self
            .eni_for(next_hop)
            .ok_or_else(|| CloudError::NextHopNotFound(next_hop.into()))?;
        let route = RoutePlan::link(IpNet::V4(dest), &eni);
        self.vpc_route(move |nl| nl.add_route(&route))?;
        self.route_entries.push(RouteEntryPlan {
            dest,
            next_hop: next_hop.into(),
            eni,
        });
        Ok(())
    }

    fn delete_route_entry(&mut self, dest: Ipv4Net) -> Result<(), CloudError> {
        let pos = self
            .route_entries
            .iter()
            .position(|r| r.dest == dest)
            .ok_or(CloudError::RouteEntryNotFound(dest))?;
        let route = RoutePlan::link(IpNet::V4(dest), &self.route_entries[pos].eni);
        self.vpc_route(move |nl| nl.del_route(&route))?;
        self.route_entries.remove(pos);
        Ok(())
    }

    fn create_network_interface(
        &mut self,
        vswitch: &str,
        security_groups: &[String],
        primary_ip: Option<Ipv4Addr>,
    ) -> Result<String, CloudError> {
        self.create_eni(vswitch, security_groups, primary_ip)
    }

    fn attach_network_interface(
        &mut self,
        eni: &str,
        instance: &str,
    ) -> Result<String, CloudError> {
        self.attach_eni(eni, instance)
    }

    fn detach_network_interface(&mut self, eni: &str, instance: &str) -> Result<(), CloudError> {
        self.detach_eni(eni, instance)
    }

    fn delete_network_interface(&mut self, eni: &str) -> Result<(), CloudError> {
        self.delete_eni(eni)
    }

    fn assign_private_ip_addresses(
        &mut self,
        eni: &str,
        ips: PrivateIps,
    ) -> Result<Vec<Ipv4Addr>, CloudError> {
        self.assign_ips(eni, ips)
    }

    fn unassign_private_ip_addresses(
        &mut self,
        eni: &str,
        ips: &[Ipv4Addr],
    ) -> Result<(), CloudError> {
        self.unassign_ips(eni, ips)
    }

    fn describe_network_interfaces(&self) -> Vec<EniRecord> {
        self.enis.iter().map(|e| e.record.clone()).collect()
    }
}
