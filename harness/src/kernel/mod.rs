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

/// Runs `f` on every item, the items split into `workers` runs of
/// consecutive items, each run on a scoped thread of its own; results come
/// back in item order. A run whose thread panicked yields `panicked` for
/// each of its items.
pub(crate) fn in_chunks<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
    panicked: impl Fn() -> R,
) -> Vec<R> {
    let chunk = items.len().div_ceil(workers.max(1)).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let runs: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    s.spawn(move || part.iter().map(f).collect::<Vec<R>>()),
                )
            })
            .collect();
        runs.into_iter()
            .flat_map(|(n, h)| {
                h.join()
                    .unwrap_or_else(|_| (0..n).map(|_| panicked()).collect())
            })
            .collect()
    })
}

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
