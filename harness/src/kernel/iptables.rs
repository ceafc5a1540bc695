//! iptables inside a namespace, through iptables-nft: `iptables-nft-restore`
//! runs as a child that enters the namespace before exec (as `nft` does),
//! so kube-proxy's iptables mode lands as the `ip nat` / `ip filter` tables
//! a real node shows with `iptables-save`.

use super::nft::run_in;
use super::{KernelError, NetNs};

/// The iptables-nft binaries: the nf_tables backend, never legacy xtables
/// (this kernel and the lab's nft counters read nf_tables only).
pub const RESTORE: &str = "iptables-nft-restore";
pub const SAVE: &str = "iptables-nft-save";

/// Applies `rules` (iptables-restore input, one `*table … COMMIT` block per
/// table) in `ns`. `--noflush` keeps the built-in chains' policy and other
/// tables as they are, as kube-proxy's own restore does.
pub fn restore(ns: &NetNs, rules: &str) -> Result<(), KernelError> {
    run_in(
        ns,
        RESTORE,
        &["-w", "--noflush"],
        Some(rules),
        "applying iptables rules",
    )
    .map(|_| ())
}

/// `iptables-save` in `ns`.
pub fn save(ns: &NetNs) -> Result<String, KernelError> {
    run_in(ns, SAVE, &[], None, "listing iptables rules")
}
