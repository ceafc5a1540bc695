//! What each CNI's agent programs on the nodes: pod namespaces, host-side
//! links, routes, masquerade rules, and the VPC route entries it needs.

pub mod alloc;
pub mod flannel;
/// `cni: plugins`: the lab as a CNI runtime.
pub mod plugins;
pub mod terway_eni;
pub mod terway_eniip;
pub mod terway_vpc;
pub mod trunking;

use ipnet::Ipv4Net;

use super::ccm::BackendType;
use super::cloud::NodeCtx;
use super::draft::Draft;
use super::ipam::{PlacedPod, Placement};
use super::types::{NsIdx, NsKind};
use super::PlanError;
use crate::topology::model::Cni;
use crate::topology::PointId;

// ---------------------------------------------------------------- the trait

/// Where a mode's pod addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// The node's slice of `cluster.pod_cidr` (not VPC addresses: the VPC
    /// reaches them only through route entries).
    PodCidr,
    /// VPC addresses on ENIs (exclusive, shared or member ENIs).
    Vpc,
}

/// What a mode plans from: the pod-CIDR placement already made, or the
/// VPC allocation context the mode places pods with.
pub enum ModeCtx<'c, 'a> {
    PodCidr {
        ctx: &'c CniCtx<'a>,
        placement: &'c Placement,
    },
    Vpc(&'c mut alloc::VpcIpCtx<'a>),
}

/// One CNI mode: what its agent and CNI binary program on the nodes, and
/// the facts about it other parts of the plan ask for. A new mode is one
/// file implementing this plus one line in [`MODES`].
pub trait CniMode: Sync {
    fn cni(&self) -> Cni;
    /// Which addresses its pods take ([`Addressing::Vpc`]: VPC addresses).
    fn addressing(&self) -> Addressing;
    /// Node set-up and the plumbing of every pod. VPC modes also place
    /// their pods (into `VpcIpCtx::placement`).
    fn program(&self, d: &mut Draft, cx: ModeCtx<'_, '_>) -> Result<CniOutput, PlanError>;
    /// Whether replies of pod traffic leave by policy routing on the
    /// source address (`from <podIP> lookup …`), so service traffic the
    /// host DNATs must be steered back to `main` (kube-proxy's fwmark rule).
    fn routes_by_source(&self) -> bool {
        false
    }
    /// What the cloud controller attaches as SLB backends unless the
    /// Service names `backend-type`.
    fn slb_backend(&self) -> BackendType {
        BackendType::Ecs
    }
}

/// Every mode the lab plans.
pub static MODES: &[&dyn CniMode] = &[
    &flannel::Flannel { vxlan: false },
    &flannel::Flannel { vxlan: true },
    &terway_vpc::TerwayVpc,
    &terway_eni::TerwayEni,
    &terway_eniip::TerwayEniip {
        datapath: terway_eniip::Datapath::Veth,
    },
    &terway_eniip::TerwayEniip {
        datapath: terway_eniip::Datapath::Ipvlan,
    },
    &trunking::TerwayTrunking,
    &plugins::Plugins,
];

/// The mode planning `cni`.
pub fn mode(cni: Cni) -> Result<&'static dyn CniMode, PlanError> {
    MODES
        .iter()
        .copied()
        .find(|m| m.cni() == cni)
        .ok_or_else(|| PlanError::CniNotImplemented(cni.as_str().into()))
}

/// Whether `cni` policy-routes pod traffic by source (false for an
/// unknown mode).
pub fn routes_by_source(cni: Cni) -> bool {
    mode(cni).is_ok_and(|m| m.routes_by_source())
}

/// The SLB backend type of `cni` by default.
pub fn slb_backend(cni: Cni) -> BackendType {
    mode(cni).map_or(BackendType::Ecs, |m| m.slb_backend())
}

/// The error a mode returns when handed the other kind of context.
pub fn wrong_ctx(cni: Cni) -> PlanError {
    PlanError::CniNotImplemented(format!(
        "{} planned with the wrong addressing context",
        cni.as_str()
    ))
}

// ---------------------------------------------------------------- shared

/// Cluster facts every pod-CIDR CNI needs.
pub struct CniCtx<'a> {
    pub pod_cidr: Ipv4Net,
    /// `slices[i]` belongs to `nodes[i]`.
    pub slices: &'a [Ipv4Net],
    pub nodes: &'a [NodeCtx],
    /// The VPC's own ranges (terway-vpc does not masquerade towards them).
    pub vpc_cidrs: Vec<Ipv4Net>,
}

/// A pod the CNI plumbed.
#[derive(Debug, Clone)]
pub struct PodWire {
    /// `pod/<ns>/<name>`
    pub key: PointId,
    pub ns: NsIdx,
    /// The node-side veth (`cali…`, `veth…`).
    pub host_veth: String,
}

#[derive(Debug, Default)]
pub struct CniOutput {
    pub pods: Vec<PodWire>,
    /// VPC route entries the CNI asks the cloud for: `(dest, node name)`.
    pub route_entries: Vec<(Ipv4Net, String)>,
}

/// The pod's own namespace (hostNetwork pods have none).
pub fn pod_ns(d: &mut Draft, p: &PlacedPod) -> NsIdx {
    d.add_ns(&p.key(), NsKind::Pod)
}

/// Pods with their own network namespace and address.
pub fn wired(placement: &Placement) -> impl Iterator<Item = (&PlacedPod, std::net::Ipv4Addr)> {
    placement
        .placed
        .iter()
        .filter_map(|p| p.ip.map(|ip| (p, ip)))
}

/// `n`-th address of a subnet (`.0` is `n = 0`).
pub fn nth(net: Ipv4Net, n: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(net.network()) + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every CNI the topology accepts has exactly one mode, and the
    /// mode's addressing agrees with what validation assumes.
    #[test]
    fn every_accepted_cni_has_one_mode() {
        for (name, cni) in crate::topology::parse::CNIS {
            let n = MODES.iter().filter(|m| m.cni() == *cni).count();
            assert_eq!(n, 1, "{name}: {n} modes");
            let m = mode(*cni).unwrap();
            if *cni == Cni::Plugins {
                // Its pods' addresses are whatever the plugins' results say.
                continue;
            }
            assert_eq!(
                m.addressing() == Addressing::PodCidr,
                cni.uses_pod_cidr(),
                "{name}"
            );
        }
    }
}
