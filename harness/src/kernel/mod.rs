//! The kernel layer: namespaces, netlink (links, addresses, routes, rules,
//! neighbours), sysctls, nftables and capability probes. Everything here
//! acts inside a lab namespace; nothing touches the root namespace.

pub mod netns;
mod stubs;
pub use stubs::{build, caps, netlink, nft};

pub use netns::NetNs;

/// A kernel operation that failed, naming the object it was about
/// (`creating veth eth0/cnl-ab12-node1: File exists`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KernelError(pub String);

impl KernelError {
    pub fn new(msg: impl Into<String>) -> Self {
        KernelError(msg.into())
    }
}
