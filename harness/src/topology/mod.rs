//! The topology a user writes: model, Kubernetes objects, parsing with line
//! numbers, validation.

pub mod k8s;
pub mod model;

pub use model::Topology;

use k8s::{Pod, PodNetworking, Service};

/// A parsed and validated topology with its Kubernetes objects typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub topo: Topology,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub podnetworkings: Vec<PodNetworking>,
}
