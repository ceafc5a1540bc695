//! The address-allocation context every Terway mode with VPC pod addresses
//! shares (terway-eni, terway-eniip, terway-eniip-ipvlan, terway-trunking):
//! ENI slots per node, the address book, pinned pod addresses, and where a
//! pod is scheduled or why it stays pending.

use std::net::Ipv4Addr;

use crate::plan::cloud::{self, AddressBook, NodeCtx};
use crate::plan::draft::Draft;
use crate::plan::ipam::{PlacedPod, Placement};
use crate::plan::limits::node_limits;
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::k8s::Pod;
use crate::topology::model::{EniLimits, Topology};
use crate::topology::{PointId, Resolved};

use super::terway_eniip::SharedEni;

/// Everything the VPC-address CNIs share while planning.
pub struct VpcIpCtx<'a> {
    pub r: &'a Resolved,
    pub vpc: NsIdx,
    pub nodes: &'a [NodeCtx],
    pub book: &'a mut AddressBook,
    pub limits: Vec<EniLimits>,
    /// Per node: ENIs attached so far (the primary included) and the next
    /// `ethN` index.
    pub attached: Vec<u32>,
    pub next_link: Vec<u32>,
    /// Per node: shared (secondary) ENIs.
    pub shared: Vec<Vec<SharedEni>>,
    /// Where the mode placed each pod, or why it stays pending.
    pub placement: Placement,
}

impl<'a> VpcIpCtx<'a> {
    pub fn new(
        d: &mut Draft,
        r: &'a Resolved,
        vpc: NsIdx,
        nodes: &'a [NodeCtx],
        book: &'a mut AddressBook,
    ) -> Self {
        let mut limits = Vec::new();
        for n in &r.topo.nodes {
            let (l, note) = node_limits(n);
            if let Some(note) = note {
                d.plan.notes.push(note);
            }
            limits.push(l);
        }
        let n = nodes.len();
        VpcIpCtx {
            r,
            vpc,
            nodes,
            book,
            limits,
            attached: vec![1; n],
            next_link: vec![1; n],
            shared: (0..n).map(|_| Vec::new()).collect(),
            placement: Placement::default(),
        }
    }

    pub fn topo(&self) -> &'a Topology {
        &self.r.topo
    }

    /// Takes one ENI slot of node `i` and its `ethN` index, or says why not.
    pub fn take_eni_slot(&mut self, i: usize) -> Option<u32> {
        if self.attached[i] >= self.limits[i].max {
            return None;
        }
        self.attached[i] += 1;
        let n = self.next_link[i];
        self.next_link[i] += 1;
        Some(n)
    }

    /// The pod's address: its pinned `status.podIP` (claimed up front) or
    /// the first free one of `vsw`.
    pub fn pod_address(&mut self, pod: &Pod, vsw: &str) -> Result<Ipv4Addr, String> {
        if let Some(ip) = pod.status.pod_ip {
            return Ok(ip);
        }
        let owner = pod_owner(pod);
        let v = cloud::vswitch(self.topo(), vsw, &owner).map_err(|e| e.to_string())?;
        self.book
            .allocate(v, &owner)
            .map_err(|_| format!("vSwitch {vsw} has no free IP"))
    }

    /// The vSwitch a pod's address belongs to: the one holding its pinned
    /// address, else `default`.
    pub fn vswitch_for(&self, pod: &Pod, default: &str) -> String {
        pod.status
            .pod_ip
            .and_then(|ip| {
                self.topo()
                    .vpc
                    .vswitches
                    .iter()
                    .find(|v| v.cidr.contains(&ip))
            })
            .map(|v| v.id.clone())
            .unwrap_or_else(|| default.to_string())
    }
}

/// `pod/<ns>/<name>`: the owner recorded in the address book.
pub fn pod_owner(pod: &Pod) -> String {
    PointId::pod(pod.metadata.ns(), &pod.metadata.name).to_string()
}

/// Claims every pinned pod address before nodes and ENIs allocate any.
pub fn claim_pinned_pods(r: &Resolved, book: &mut AddressBook) -> Result<(), PlanError> {
    for p in r.pods.iter().filter(|p| !p.spec.host_network) {
        if let Some(ip) = p.status.pod_ip {
            book.claim(ip, &pod_owner(p))?;
        }
    }
    Ok(())
}

/// Node index of a pod, or the reason it stays pending.
pub fn node_of(r: &Resolved, pod: &Pod) -> Result<usize, PendingPod> {
    let who = format!("{}/{}", pod.metadata.ns(), pod.metadata.name);
    let node_name = pod.spec.node_name.clone();
    match node_name
        .as_ref()
        .and_then(|n| r.topo.nodes.iter().position(|x| &x.name == n))
    {
        Some(i) => Ok(i),
        None => Err(PendingPod {
            pod: who,
            reason: match &node_name {
                Some(n) => format!("node {n} is not in nodes"),
                None => "spec.nodeName is not set".into(),
            },
            node: node_name,
        }),
    }
}

/// The node of a pod that needs an address from the CNI. A pod that cannot
/// be placed is recorded pending, a hostNetwork pod placed on its node's
/// address; both give `None`.
pub fn schedule(r: &Resolved, placement: &mut Placement, i: usize, pod: &Pod) -> Option<usize> {
    match node_of(r, pod) {
        Err(p) => {
            placement.pending.push(p);
            None
        }
        Ok(ni) if pod.spec.host_network => {
            placement.placed.push(placed(i, pod, ni, None));
            None
        }
        Ok(ni) => Some(ni),
    }
}

pub fn pending(pod: &Pod, node: &str, reason: String) -> PendingPod {
    PendingPod {
        pod: format!("{}/{}", pod.metadata.ns(), pod.metadata.name),
        node: Some(node.into()),
        reason,
    }
}

pub fn placed(i: usize, pod: &Pod, node: usize, ip: Option<Ipv4Addr>) -> PlacedPod {
    PlacedPod {
        pod: i,
        ns: pod.metadata.ns().to_string(),
        name: pod.metadata.name.clone(),
        node,
        ip,
    }
}
