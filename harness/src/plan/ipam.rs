//! Pod IPAM of the pod-CIDR CNIs (flannel, flannel-vxlan, terway-vpc): each
//! node owns a slice of `cluster.pod_cidr` (flannel's `SubnetLen`, the
//! node's `podCIDR`), pods take addresses from their node's slice.

use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::types::PendingPod;
use super::PlanError;
use crate::topology::k8s::Pod;
use crate::topology::model::Node;
use crate::topology::PointId;

pub const DEFAULT_NODE_CIDR_PREFIX: u8 = 24;

/// The i-th slice of `pod_cidr` for the i-th node, in YAML order.
pub fn node_slices(
    pod_cidr: Ipv4Net,
    prefix: u8,
    nodes: &[Node],
) -> Result<Vec<Ipv4Net>, PlanError> {
    if prefix < pod_cidr.prefix_len() || prefix > 30 {
        return Err(PlanError::BadNodeCidrPrefix { pod_cidr, prefix });
    }
    let mut subnets = pod_cidr
        .subnets(prefix)
        .map_err(|_| PlanError::BadNodeCidrPrefix { pod_cidr, prefix })?;
    nodes
        .iter()
        .map(|n| {
            subnets.next().ok_or_else(|| PlanError::NoPodCidrSlice {
                node: n.name.clone(),
                pod_cidr,
                prefix,
            })
        })
        .collect()
}

/// A pod the CNI wires.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedPod {
    /// Index into `Resolved::pods`.
    pub pod: usize,
    pub ns: String,
    pub name: String,
    /// Index into `Topology::nodes`.
    pub node: usize,
    /// `None` for hostNetwork pods (they use the node's address).
    pub ip: Option<Ipv4Addr>,
}

impl PlacedPod {
    /// `pod/<ns>/<name>`
    pub fn key(&self) -> PointId {
        PointId::pod(&self.ns, &self.name)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub placed: Vec<PlacedPod>,
    pub pending: Vec<PendingPod>,
}

/// Pods get `.2`, `.3`, … of their node's slice in YAML order, skipping
/// addresses pinned by `status.podIP`; a full slice or an unknown node
/// leaves the pod pending.
pub fn assign(pods: &[Pod], nodes: &[Node], slices: &[Ipv4Net]) -> Result<Placement, PlanError> {
    let mut pinned: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for p in pods.iter().filter(|p| !p.spec.host_network) {
        if let Some(ip) = p.status.pod_ip {
            let who = PointId::pod(p.metadata.ns(), &p.metadata.name).to_string();
            if let Some(other) = pinned.insert(ip, who.clone()) {
                return Err(PlanError::AddressInUse {
                    ip,
                    owner: who,
                    other,
                });
            }
        }
    }
    let mut next: Vec<u32> = slices.iter().map(|s| u32::from(s.network()) + 2).collect();
    let mut out = Placement::default();
    for (i, p) in pods.iter().enumerate() {
        let (ns, name) = (p.metadata.ns().to_string(), p.metadata.name.clone());
        let who = format!("{ns}/{name}");
        let node_name = p.spec.node_name.clone();
        let Some(node) = node_name
            .as_ref()
            .and_then(|n| nodes.iter().position(|x| &x.name == n))
        else {
            let reason = match &node_name {
                Some(n) => format!("node {n} is not in nodes"),
                None => "spec.nodeName is not set".to_string(),
            };
            out.pending.push(PendingPod {
                pod: who,
                node: node_name,
                reason,
            });
            continue;
        };
        let ip = if p.spec.host_network {
            None
        } else if let Some(ip) = p.status.pod_ip {
            Some(ip)
        } else {
            let slice = slices[node];
            let last = u32::from(slice.broadcast()).saturating_sub(1);
            while next[node] <= last && pinned.contains_key(&Ipv4Addr::from(next[node])) {
                next[node] += 1;
            }
            if next[node] > last {
                let reason = format!(
                    "no IP left in pod CIDR slice {slice} of node {}",
                    nodes[node].name
                );
                out.pending.push(PendingPod {
                    pod: who,
                    node: node_name,
                    reason,
                });
                continue;
            }
            let ip = Ipv4Addr::from(next[node]);
            next[node] += 1;
            Some(ip)
        };
        out.placed.push(PlacedPod {
            pod: i,
            ns,
            name,
            node,
            ip,
        });
    }
    Ok(out)
}
