//! Pins every IPv4 neighbour a lab needs as a permanent entry.
//!
//! The kernel's neighbour table is one table for the whole host: its limit
//! (`net.ipv4.neigh.default.gc_thresh3`, 1024 by default) counts the dynamic
//! entries of *every* namespace, and an entry younger than five seconds
//! cannot be collected. A lab of a few hundred pods, or a few labs at once,
//! resolving addresses with ARP fills it, and from then on every namespace
//! on the machine fails to resolve anything ("neighbor table overflow"):
//! probes time out for reasons that have nothing to do with the network
//! under test. Permanent entries are exempt from that limit, and the plan
//! knows every MAC, so the lab answers its own ARP questions up front — as
//! the cloud does (a VPC has no ARP beyond the vSwitch gateway, and Terway
//! pins 169.254.1.1 the same way).
//!
//! For each interface that can send IPv4 (veth ends, bridges, L2 children)
//! the pass collects the addresses its namespace would ask for on it (route
//! gateways, on-link destinations, known lab addresses inside its connected
//! subnets), and finds who on the same L2 segment would answer: a device
//! whose namespace owns the address (Linux answers ARP for any local address
//! by default) or one with `proxy_arp`. Nothing is pinned where nobody
//! would answer: that packet stays unanswered, exactly as with ARP.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::types::{AddrPlan, Backends, LabPlan, LinkKind, NeighPlan, NsIdx, NsPlan, RoutePlan};

/// A device that can take part in an L2 segment.
#[derive(Debug, Clone)]
struct Dev {
    ns: NsIdx,
    name: String,
    mac: Option<[u8; 6]>,
    /// Enslaved to a bridge: frames go to the bridge, which answers instead.
    port_of: Option<String>,
    proxy_arp: bool,
    /// vxlan and port-less address holders resolve nothing by ARP here.
    skip: bool,
}

/// Union-find over device indices.
struct Segments(Vec<usize>);

impl Segments {
    fn find(&mut self, i: usize) -> usize {
        let p = self.0[i];
        if p == i {
            return i;
        }
        let r = self.find(p);
        self.0[i] = r;
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra] = rb;
        }
    }
}

pub fn pin_neighbours(plan: &mut LabPlan) {
    let devs = devices(plan);
    let index: HashMap<(NsIdx, &str), usize> = devs
        .iter()
        .enumerate()
        .map(|(i, d)| ((d.ns, d.name.as_str()), i))
        .collect();
    let mut seg = Segments((0..devs.len()).collect());
    for v in &plan.veths {
        if let (Some(&a), Some(&b)) = (
            index.get(&(v.a.ns, v.a.name.as_str())),
            index.get(&(v.b.ns, v.b.name.as_str())),
        ) {
            seg.union(a, b);
        }
    }
    for (i, d) in devs.iter().enumerate() {
        if let Some(&m) = d.port_of.as_deref().and_then(|m| index.get(&(d.ns, m))) {
            seg.union(i, m);
        }
    }
    for (ns, n) in plan.namespaces.iter().enumerate() {
        for l in &n.links {
            if let Some(&p) = parent(&l.kind).and_then(|p| index.get(&(ns, p))) {
                if let Some(&c) = index.get(&(ns, l.name.as_str())) {
                    seg.union(c, p);
                }
            }
        }
        for a in &n.adopted_links {
            if let Some(&p) = parent(&a.link.kind).and_then(|p| index.get(&(a.parent_ns, p))) {
                if let Some(&c) = index.get(&(ns, a.link.name.as_str())) {
                    seg.union(c, p);
                }
            }
        }
    }
    let roots: Vec<usize> = (0..devs.len()).map(|i| seg.find(i)).collect();
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, r) in roots.iter().enumerate() {
        members.entry(*r).or_default().push(i);
    }

    let local: Vec<BTreeSet<Ipv4Addr>> = plan
        .namespaces
        .iter()
        .map(|n| n.addrs.iter().filter_map(|a| v4(a.addr.addr())).collect())
        .collect();
    let known: BTreeSet<Ipv4Addr> = local
        .iter()
        .flatten()
        .copied()
        .chain(plan.endpoints.iter().map(|e| e.ip))
        .collect();
    let macs = effective_macs(plan, &devs, &index);
    // Per segment: the first member (in device order) that owns each
    // address, and the first two that proxy ARP — looked up once instead of
    // scanning the segment for every address (10,000 pods: 10^8 steps).
    let mut owners: HashMap<usize, HashMap<Ipv4Addr, usize>> = HashMap::new();
    let mut proxies: HashMap<usize, Vec<usize>> = HashMap::new();
    for (r, ms) in &members {
        let own = owners.entry(*r).or_default();
        for &j in ms.iter().filter(|&&j| devs[j].port_of.is_none()) {
            if !devs[j].skip {
                for ip in &local[devs[j].ns] {
                    own.entry(*ip).or_insert(j);
                }
            }
            if devs[j].proxy_arp {
                let p = proxies.entry(*r).or_default();
                if p.len() < 2 {
                    p.push(j);
                }
            }
        }
    }

    // Per namespace, what each device already has: the VPC router of a
    // 10,000-pod lab has 10,000 devices, and scanning its addresses, routes
    // and neighbours once per device is quadratic.
    let by_dev: Vec<HashMap<&str, DevConfig>> = plan.namespaces.iter().map(DevConfig::of).collect();
    let none = DevConfig::default();
    let mut add: Vec<(NsIdx, NeighPlan)> = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        if d.skip || d.port_of.is_some() {
            continue;
        }
        let cfg = by_dev[d.ns].get(d.name.as_str()).unwrap_or(&none);
        for ip in wanted(cfg, &known) {
            if local[d.ns].contains(&ip) || cfg.pinned.contains(&ip) {
                continue;
            }
            // `i` owns none of its namespace's addresses here (skipped
            // above), so the first owner is never `i` itself.
            let answerer = owners[&roots[i]].get(&ip).filter(|&&j| j != i).or_else(|| {
                proxies
                    .get(&roots[i])
                    .and_then(|p| p.iter().find(|&&j| j != i))
            });
            if let Some(mac) = answerer.and_then(|&j| macs[j]) {
                add.push((
                    d.ns,
                    NeighPlan {
                        dev: d.name.clone(),
                        ip,
                        mac,
                    },
                ));
            }
        }
    }
    for (ns, n) in add {
        plan.namespaces[ns].neighs.push(n);
    }
}

fn parent(kind: &LinkKind) -> Option<&str> {
    match kind {
        LinkKind::Macvlan { parent, .. }
        | LinkKind::Ipvlan { parent }
        | LinkKind::Vlan { parent, .. } => Some(parent),
        _ => None,
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    }
}

fn devices(plan: &LabPlan) -> Vec<Dev> {
    let veth_ends = plan.veth_ends_by_ns();
    let mut out = Vec::new();
    for (ns, n) in plan.namespaces.iter().enumerate() {
        // Once per namespace, not per device (the VPC router has 10,000).
        let masters: HashMap<&str, &str> = n
            .link_settings
            .iter()
            .filter_map(|s| Some((s.name.as_str(), s.master.as_deref()?)))
            .collect();
        let proxies: HashSet<&str> = n
            .sysctls
            .iter()
            .filter(|(_, v)| v == "1")
            .filter_map(|(p, _)| p.strip_prefix("net/ipv4/conf/")?.strip_suffix("/proxy_arp"))
            .collect();
        let mut push = |name: &str, mac: Option<[u8; 6]>, skip: bool| {
            out.push(Dev {
                ns,
                name: name.to_string(),
                mac,
                port_of: masters.get(name).map(|m| m.to_string()),
                proxy_arp: proxies.contains(name),
                skip,
            });
        };
        for l in &n.links {
            let skip = matches!(l.kind, LinkKind::Vxlan { .. } | LinkKind::Dummy);
            push(&l.name, l.mac, skip);
        }
        for a in &n.adopted_links {
            push(&a.link.name, a.link.mac, false);
        }
        for end in &veth_ends[ns] {
            push(&end.name, end.mac, false);
        }
    }
    out
}

/// The MAC a device really has: a native ipvlan child carries its parent's.
fn effective_macs(
    plan: &LabPlan,
    devs: &[Dev],
    index: &HashMap<(NsIdx, &str), usize>,
) -> Vec<Option<[u8; 6]>> {
    let Backends { ipvlan, .. } = plan.backends;
    let mut macs: Vec<Option<[u8; 6]>> = devs.iter().map(|d| d.mac).collect();
    if ipvlan {
        for (ns, n) in plan.namespaces.iter().enumerate() {
            let children = n
                .links
                .iter()
                .map(|l| (ns, l))
                .chain(n.adopted_links.iter().map(|a| (a.parent_ns, &a.link)));
            for (parent_ns, l) in children {
                if let LinkKind::Ipvlan { parent } = &l.kind {
                    if let (Some(&c), Some(&p)) = (
                        index.get(&(ns, l.name.as_str())),
                        index.get(&(parent_ns, parent.as_str())),
                    ) {
                        macs[c] = devs[p].mac;
                    }
                }
            }
        }
    }
    macs
}

/// What one device of a namespace already has in the plan.
#[derive(Default)]
struct DevConfig<'a> {
    addrs: Vec<&'a AddrPlan>,
    routes: Vec<&'a RoutePlan>,
    pinned: BTreeSet<Ipv4Addr>,
}

impl<'a> DevConfig<'a> {
    fn of(ns: &'a NsPlan) -> HashMap<&'a str, DevConfig<'a>> {
        let mut out: HashMap<&str, DevConfig> = HashMap::new();
        for a in &ns.addrs {
            out.entry(a.dev.as_str()).or_default().addrs.push(a);
        }
        for r in &ns.routes {
            if let Some(dev) = r.dev.as_deref() {
                out.entry(dev).or_default().routes.push(r);
            }
        }
        for n in &ns.neighs {
            out.entry(n.dev.as_str()).or_default().pinned.insert(n.ip);
        }
        out
    }
}

/// Addresses a namespace would resolve on a device configured as `cfg`.
fn wanted(cfg: &DevConfig, known: &BTreeSet<Ipv4Addr>) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    let mut subnets: Vec<Ipv4Net> = Vec::new();
    for a in cfg.addrs.iter().filter(|a| !a.noprefixroute) {
        if let IpNet::V4(n) = a.addr {
            if n.prefix_len() < 32 {
                subnets.push(n.trunc());
            }
        }
    }
    for r in &cfg.routes {
        match (r.via, r.dst) {
            (Some(gw), _) => {
                out.insert(gw);
            }
            (None, IpNet::V4(dst)) if dst.prefix_len() == 32 => {
                out.insert(dst.addr());
            }
            (None, IpNet::V4(dst)) => subnets.push(dst),
            _ => {}
        }
    }
    for net in subnets {
        // A range of the ordered set: every known address in `net`, without
        // scanning all of them for each device (10,000 pods: 10^8 checks).
        out.extend(known.range(net.network()..=net.broadcast()));
    }
    out
}
