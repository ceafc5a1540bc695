//! iptables inside a namespace, through iptables-nft: `iptables-nft-restore`
//! runs as a child that enters the namespace before exec (as `nft` does),
//! so kube-proxy's iptables mode lands as the `ip nat` / `ip filter` tables
//! a real node shows with `iptables-save`.

use super::netns::run_in;
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

const BUILTIN_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The iptables-restore input (`--noflush`) that takes back what `rules`
/// added: its rules in built-in chains deleted (`-D`), then every chain it
/// declared flushed and removed. Restoring a changed rule set is this, then
/// the new rules (kube-proxy's own resync replaces its chains the same way).
pub fn undo_script(rules: &str) -> String {
    let mut out = String::new();
    let mut chains: Vec<&str> = Vec::new();
    for line in rules.lines() {
        let l = line.trim();
        if l.starts_with('*') {
            out.push_str(l);
            out.push('\n');
            chains.clear();
        } else if let Some(decl) = l.strip_prefix(':') {
            if let Some(name) = decl.split_whitespace().next() {
                if !BUILTIN_CHAINS.contains(&name) {
                    chains.push(name);
                }
            }
        } else if let Some(rule) = l.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            if BUILTIN_CHAINS.contains(&chain) {
                out.push_str(&format!("-D {rule}\n"));
            }
        } else if l == "COMMIT" {
            // Declaring a chain again flushes it; then nothing refers to it.
            for c in &chains {
                out.push_str(&format!(":{c} - [0:0]\n"));
            }
            for c in &chains {
                out.push_str(&format!("-X {c}\n"));
            }
            out.push_str("COMMIT\n");
        }
    }
    out
}

#[cfg(test)]
mod undo_tests {
    use super::undo_script;

    #[test]
    fn undo_deletes_builtin_jumps_then_flushes_and_removes_own_chains() {
        let rules = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000\nCOMMIT\n";
        assert_eq!(
            undo_script(rules),
            "*nat\n-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n-X KUBE-SERVICES\n-X KUBE-MARK-MASQ\nCOMMIT\n"
        );
    }
}
