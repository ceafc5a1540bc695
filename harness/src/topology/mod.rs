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

pub mod expect;
pub mod parse;
pub use parse::{load_file, load_str, Loaded, Problem, Report};

/// Checks a probe origin (`pod/<ns>/<name>`, `node/<name>`, `external/<name>`).
pub fn parse_origin_or_err(s: &str) -> Result<expect::Origin, String> {
    expect::parse_origin(s)
}
