//! Link impairments inside a namespace. With netem: `tc qdisc replace dev
//! X root netem …`. Without it (a kernel built without
//! CONFIG_NET_SCH_NETEM) the stand-in: an nftables netdev egress chain on
//! the device that drops and duplicates at random (`numgen random`, each
//! packet on its own, as netem's loss and duplicate do), and a tbf qdisc
//! for the rate. Both run as children that enter the namespace.

use super::netns::run_in;
use super::nft;
use super::{KernelError, NetNs};
use crate::plan::NetemPlan;

/// Marks a duplicate so the chain lets it pass on its second way through.
const COPY_MARK: u32 = 0x1000_0000;

/// Puts `p`'s impairment on `p.ifname`, in place of whatever was there;
/// with nothing set, the link goes back to no impairment.
pub fn apply(ns: &NetNs, p: &NetemPlan) -> Result<(), KernelError> {
    if p.stand_in {
        return stand_in(ns, p);
    }
    let words = crate::plan::faults::netem_words(&p.netem);
    if words.is_empty() {
        return clear_qdisc(ns, &p.ifname, "netem");
    }
    let mut args = vec!["qdisc", "replace", "dev", &p.ifname, "root", "netem"];
    args.extend(words.iter().flat_map(|w| w.split(' ')));
    run_in(ns, "tc", &args, None, "adding netem").map(|_| ())
}

/// The nftables table of the stand-in on `ifname`.
fn table(ifname: &str) -> String {
    format!("cnlab_impair_{}", ifname.replace(['-', '.'], "_"))
}

fn stand_in(ns: &NetNs, p: &NetemPlan) -> Result<(), KernelError> {
    let dev = &p.ifname;
    let t = table(dev);
    let mut script = String::new();
    if nft::list_ruleset(ns)?.contains(&format!("table netdev {t} ")) {
        script.push_str(&format!("delete table netdev {t}\n"));
    }
    let n = &p.netem;
    let mut rules = Vec::new();
    // `numgen random mod 100 < p`: p percent of packets, each on its own.
    let share = |p: u32| match p {
        100.. => String::new(),
        p => format!("numgen random mod 100 < {p} "),
    };
    if let Some(d) = n.duplicate.filter(|d| *d > 0) {
        rules.push(format!(
            "meta mark & {COPY_MARK:#x} == {COPY_MARK:#x} accept"
        ));
        rules.push(format!(
            "{}meta mark set meta mark | {COPY_MARK:#x} dup to \"{dev}\"",
            share(d)
        ));
    }
    if let Some(l) = n.loss.filter(|l| *l > 0) {
        rules.push(format!("{}drop", share(l)));
    }
    if !rules.is_empty() {
        script.push_str(&format!(
            "table netdev {t} {{\n  chain egress {{\n    type filter hook egress device \"{dev}\" priority 0; policy accept;\n"
        ));
        for r in rules {
            script.push_str(&format!("    {r}\n"));
        }
        script.push_str("  }\n}\n");
    }
    if !script.is_empty() {
        nft::apply(ns, &script)?;
    }
    match &n.rate {
        Some(rate) => run_in(
            ns,
            "tc",
            &[
                "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kbit",
                "latency", "400ms",
            ],
            None,
            "adding tbf",
        )
        .map(|_| ()),
        None => clear_qdisc(ns, dev, "tbf"),
    }
}

/// Deletes the root qdisc of `ifname` if it is a `kind` one.
fn clear_qdisc(ns: &NetNs, ifname: &str, kind: &str) -> Result<(), KernelError> {
    if !show(ns, ifname)?.contains(&format!("qdisc {kind} ")) {
        return Ok(());
    }
    run_in(
        ns,
        "tc",
        &["qdisc", "del", "dev", ifname, "root"],
        None,
        "removing an impairment",
    )
    .map(|_| ())
}

/// `tc qdisc show dev IFNAME`.
pub fn show(ns: &NetNs, ifname: &str) -> Result<String, KernelError> {
    run_in(
        ns,
        "tc",
        &["qdisc", "show", "dev", ifname],
        None,
        "listing qdiscs",
    )
}
