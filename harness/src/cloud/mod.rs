//! The cloud API seam. Verbs mirror the ECS/VPC API (CreateRouteEntry,
//! DeleteRouteEntry, …); the mock cloud carries them out on a live lab by
//! changing the namespaces that play the VPC. A different agent or a
//! different cloud model plugs in here.

use ipnet::{IpNet, Ipv4Net};

use crate::kernel::netlink::Netlink;
use crate::lab::Lab;
use crate::plan::{EniRole, RouteEntryPlan, RoutePlan};

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("InvalidRouteEntry.NotFound: no route entry for {0}")]
    RouteEntryNotFound(Ipv4Net),
    #[error("InvalidNextHop.NotFound: {0} is neither a node nor an ENI address in this VPC")]
    NextHopNotFound(String),
    #[error("RouteEntry.Conflict: {0} already has a route entry")]
    RouteEntryConflict(Ipv4Net),
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
}

/// The mock cloud of one live lab.
pub struct MockCloud<'a> {
    lab: &'a Lab,
    route_entries: Vec<RouteEntryPlan>,
}

impl<'a> MockCloud<'a> {
    pub fn new(lab: &'a Lab) -> Self {
        MockCloud {
            lab,
            route_entries: lab.plan().route_entries.clone(),
        }
    }

    /// The ENI a next hop names: a node (its primary ENI) or an ENI address.
    fn eni_for(&self, next_hop: &str) -> Option<String> {
        let plan = self.lab.plan();
        plan.enis
            .iter()
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
}
