//! What every plan must satisfy whatever the topology: the fuzzer's
//! oracle for the planner (and usable by any test). Each violation is one
//! line naming the namespace and object.

use std::collections::HashSet;

use super::{LabPlan, LinkKind, NsIdx};

/// Every interface name a namespace will have: its own links, veth ends
/// and adopted links, and `lo`.
pub fn links_of(p: &LabPlan, idx: NsIdx) -> Vec<String> {
    let mut v: Vec<String> = p.namespaces[idx]
        .links
        .iter()
        .map(|l| l.name.clone())
        .collect();
    for veth in &p.veths {
        for end in [&veth.a, &veth.b] {
            if end.ns == idx {
                v.push(end.name.clone());
            }
        }
    }
    v.extend(
        p.namespaces[idx]
            .adopted_links
            .iter()
            .map(|a| a.link.name.clone()),
    );
    v.push("lo".into());
    v
}

/// Every broken invariant of `p` (empty: none).
pub fn violations(p: &LabPlan) -> Vec<String> {
    let mut out = Vec::new();
    let n = p.namespaces.len();
    for v in &p.veths {
        if v.a.ns >= n || v.b.ns >= n {
            out.push(format!(
                "veth {}/{}: namespace out of range",
                v.a.name, v.b.name
            ));
        }
    }
    if !out.is_empty() {
        return out;
    }
    let mut shorts = HashSet::new();
    for (i, ns) in p.namespaces.iter().enumerate() {
        let links = links_of(p, i);
        let mut seen = HashSet::new();
        for l in &links {
            // The kernel's IFNAMSIZ is 16 with the terminating NUL.
            if l.is_empty() || l.len() > 15 {
                out.push(format!(
                    "{}: interface name {l:?} is not 1..=15 bytes",
                    ns.key
                ));
            }
            if !seen.insert(l) {
                out.push(format!("{}: interface {l} twice", ns.key));
            }
        }
        let has = |d: &str| links.iter().any(|l| l == d);
        let mut refs: Vec<(&str, &str)> = Vec::new();
        refs.extend(ns.addrs.iter().map(|a| ("address", a.dev.as_str())));
        refs.extend(
            ns.routes
                .iter()
                .filter_map(|r| r.dev.as_deref())
                .map(|d| ("route", d)),
        );
        refs.extend(ns.neighs.iter().map(|x| ("neighbour", x.dev.as_str())));
        refs.extend(ns.fdbs.iter().map(|x| ("fdb", x.dev.as_str())));
        for s in &ns.link_settings {
            refs.push(("setting", s.name.as_str()));
            if let Some(m) = &s.master {
                refs.push(("master", m.as_str()));
            }
        }
        for l in &ns.links {
            if let LinkKind::Vxlan { dev: Some(d), .. } = &l.kind {
                refs.push(("vxlan dev", d.as_str()));
            }
        }
        refs.extend(
            ns.rules
                .iter()
                .filter_map(|r| r.iif.as_deref())
                .map(|d| ("rule iif", d)),
        );
        for (path, _) in &ns.sysctls {
            // net/ipv4/conf/<link>/…, net/ipv4/neigh/<link>/…
            let parts: Vec<&str> = path.split('/').collect();
            if parts.len() == 5
                && matches!(parts[2], "conf" | "neigh")
                && !matches!(parts[3], "all" | "default")
            {
                refs.push(("sysctl", parts[3]));
            }
        }
        for (what, dev) in refs {
            if !has(dev) {
                out.push(format!(
                    "{}: {what} names {dev}, which it does not have",
                    ns.key
                ));
            }
        }
        for l in &links {
            if !ns.link_settings.iter().any(|s| &s.name == l && s.up) {
                out.push(format!("{}: {l} is never set up", ns.key));
            }
        }
        let safe = !ns.short.is_empty()
            && ns.short.len() <= 40
            && ns
                .short
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !safe {
            out.push(format!(
                "{}: namespace suffix {:?} is not file-name safe",
                ns.key, ns.short
            ));
        }
        if !shorts.insert(&ns.short) {
            out.push(format!("{}: namespace suffix {} twice", ns.key, ns.short));
        }
    }
    for pt in &p.points {
        if pt.ns >= n {
            out.push(format!("point {}: namespace out of range", pt.id));
        } else if let Some(i) = &pt.ifname {
            if !links_of(p, pt.ns).contains(i) {
                out.push(format!("point {}: names missing interface {i}", pt.id));
            }
        }
    }
    for e in &p.endpoints {
        if e.ns >= n {
            out.push(format!("endpoint {}: namespace out of range", e.id));
        }
    }
    let mut macs = HashSet::new();
    let gateway = super::agent::trunking::VPC_GATEWAY_MAC;
    let all = p.veths.iter().flat_map(|v| [v.a.mac, v.b.mac]).chain(
        p.namespaces
            .iter()
            .flat_map(|n| n.links.iter().map(|l| l.mac)),
    );
    for m in all.flatten() {
        if m == gateway {
            continue;
        }
        if m[0] & 0x03 != 0x02 {
            out.push(format!("MAC {m:02x?} is not locally administered unicast"));
        }
        if !macs.insert(m) {
            out.push(format!("MAC {m:02x?} twice"));
        }
    }
    out
}
