//! The topology a user writes: model, Kubernetes objects, parsing with line
//! numbers, validation.

pub mod expect;
pub mod k8s;
pub mod lines;
pub mod model;
pub mod parse;
pub mod point;
pub mod schema;
pub mod validate;

pub use model::Topology;
pub use parse::{load_file, load_str, Loaded, Problem, Report};
pub use point::{EniRef, PointId};

use k8s::{EndpointSlice, Pod, PodNetworking, Service};

/// A parsed and validated topology with its Kubernetes objects typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub topo: Topology,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub podnetworkings: Vec<PodNetworking>,
    /// Pasted EndpointSlices (discovery.k8s.io/v1).
    pub endpoint_slices: Vec<EndpointSlice>,
}
