//! cnlab: Kubernetes-on-cloud network topologies built from real network
//! namespaces, checked with real packets.

pub mod api;
pub mod bench;
pub mod check;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod cni;
pub mod fuzzing;
pub mod kernel;
pub mod lab;
pub mod plan;
pub mod probe;
pub mod topology;
pub mod vm;

pub use api::{Error, Lab, Options, Probe, ProbeResult};
pub use kernel::caps::BackendChoice;
pub use topology::model::{Proto, Verdict};
