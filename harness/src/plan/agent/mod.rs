//! What each CNI's agent programs on the nodes: pod namespaces, host-side
//! links, routes, masquerade rules, and the VPC route entries it needs.

pub mod flannel;
pub mod terway_vpc;
// terway modes with VPC pod addresses (ENI, ENIIP veth/ipvlan, trunking)
pub mod terway_eni;
pub mod terway_eniip;
pub mod trunking;

use ipnet::Ipv4Net;

use super::cloud::NodeCtx;
use super::draft::Draft;
use super::ipam::{PlacedPod, Placement};
use super::types::{NsIdx, NsKind};
use super::PlanError;
use crate::topology::model::Cni;

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
    pub key: String,
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

pub fn program(
    d: &mut Draft,
    cni: Cni,
    ctx: &CniCtx<'_>,
    placement: &Placement,
) -> Result<CniOutput, PlanError> {
    match cni {
        Cni::Flannel => Ok(flannel::program(d, ctx, placement, false)),
        Cni::FlannelVxlan => Ok(flannel::program(d, ctx, placement, true)),
        Cni::TerwayVpc => Ok(terway_vpc::program(d, ctx, placement)),
        other => Err(PlanError::CniNotImplemented(other.as_str().into())),
    }
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

// ---------------------------------------------------------------- terway, VPC pod addresses

/// Plans a CNI whose pods take VPC addresses (terway-eni, terway-eniip,
/// terway-eniip-ipvlan, terway-trunking): placement (with pending reasons)
/// and the pods' plumbing.
pub fn program_vpc_ip(
    d: &mut Draft,
    cni: Cni,
    ctx: &mut terway_eniip::VpcIpCtx<'_>,
) -> Result<(Placement, CniOutput), PlanError> {
    match cni {
        Cni::TerwayEni => Ok(terway_eni::program(d, ctx)),
        Cni::TerwayEniip => Ok(terway_eniip::program(d, ctx, terway_eniip::Datapath::Veth)),
        Cni::TerwayEniipIpvlan => Ok(terway_eniip::program(
            d,
            ctx,
            terway_eniip::Datapath::Ipvlan,
        )),
        Cni::TerwayTrunking => Ok(trunking::program(d, ctx)),
        other => Err(PlanError::CniNotImplemented(other.as_str().into())),
    }
}
