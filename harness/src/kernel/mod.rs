//! The kernel layer: namespaces, netlink (links, addresses, routes, rules,
//! neighbours), sysctls, nftables and capability probes. Everything here
//! acts inside a lab namespace; nothing touches the root namespace.

pub mod build;
pub mod caps;
pub mod fib;
pub mod iptables;
pub mod ipvs;
pub mod netem;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod redirect;
pub mod sysctl;
pub mod tc;

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

    /// The same error with `context: ` in front.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        KernelError(format!("{context}: {}", self.0))
    }
}
