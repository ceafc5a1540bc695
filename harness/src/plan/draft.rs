//! `Draft`: a `LabPlan` under construction, with the bookkeeping that keeps
//! namespace suffixes and MACs unique.

use std::collections::HashSet;

use super::names::{self, ShortNames};
use super::types::*;
use crate::topology::PointId;

pub struct Draft {
    pub plan: LabPlan,
    shorts: ShortNames,
    macs: HashSet<[u8; 6]>,
}

impl Draft {
    pub fn new(plan: LabPlan) -> Self {
        Draft {
            plan,
            shorts: ShortNames::default(),
            macs: HashSet::new(),
        }
    }

    /// A new namespace; `lo` is brought up in every one.
    pub fn add_ns(&mut self, key: &PointId, kind: NsKind) -> NsIdx {
        let key = key.to_string();
        let short = self.shorts.alloc(&key);
        self.plan.namespaces.push(NsPlan::new(&key, &short, kind));
        self.plan.namespaces.len() - 1
    }

    pub fn ns(&mut self, idx: NsIdx) -> &mut NsPlan {
        &mut self.plan.namespaces[idx]
    }

    pub fn key(&self, idx: NsIdx) -> &str {
        &self.plan.namespaces[idx].key
    }

    /// Deterministic MAC for `ifname` in namespace `ns`, unique in the lab.
    pub fn mac(&mut self, ns: NsIdx, ifname: &str) -> [u8; 6] {
        let key = self.plan.namespaces[ns].key.clone();
        let mut salt = 0;
        loop {
            let m = names::mac(&key, ifname, salt);
            if self.macs.insert(m) {
                return m;
            }
            salt += 1;
        }
    }

    /// A veth pair, both ends up. Returns the MACs of end a and end b.
    pub fn veth(&mut self, a: NsIdx, a_name: &str, b: NsIdx, b_name: &str) -> ([u8; 6], [u8; 6]) {
        let ma = self.mac(a, a_name);
        let mb = self.mac(b, b_name);
        self.veth_ends(a, a_name, ma, b, b_name, mb);
        (ma, mb)
    }

    /// A veth pair with the MACs given, both ends up.
    pub fn veth_ends(
        &mut self,
        a: NsIdx,
        a_name: &str,
        ma: [u8; 6],
        b: NsIdx,
        b_name: &str,
        mb: [u8; 6],
    ) {
        self.plan.veths.push(VethPlan {
            a: VethEnd {
                ns: a,
                name: a_name.into(),
                mac: Some(ma),
            },
            b: VethEnd {
                ns: b,
                name: b_name.into(),
                mac: Some(mb),
            },
        });
        self.up(a, a_name);
        self.up(b, b_name);
    }

    /// A link created inside `ns` (bridge, vxlan, …), brought up.
    pub fn link(&mut self, ns: NsIdx, name: &str, kind: LinkKind) -> [u8; 6] {
        let mac = self.mac(ns, name);
        self.ns(ns).links.push(LinkPlan {
            name: name.into(),
            kind,
            mac: Some(mac),
        });
        self.up(ns, name);
        mac
    }

    /// The setting of `name` in `ns`, created `up` if absent.
    pub fn setting(&mut self, ns: NsIdx, name: &str) -> &mut LinkSetting {
        self.plan.namespaces[ns].setting(name)
    }

    pub fn up(&mut self, ns: NsIdx, name: &str) {
        self.setting(ns, name).up = true;
    }

    /// `path` is under /proc/sys, so a link name keeps its dots
    /// (`net/ipv4/conf/flannel.1/rp_filter`); the first value set wins.
    pub fn sysctl(&mut self, ns: NsIdx, path: &str, value: &str) {
        self.ns(ns).sysctl(path, value);
    }

    pub fn addr(&mut self, ns: NsIdx, dev: &str, addr: ipnet::IpNet, scope: Scope) {
        self.ns(ns).addrs.push(AddrPlan {
            dev: dev.into(),
            addr,
            scope,
            noprefixroute: false,
        });
    }

    pub fn route(&mut self, ns: NsIdx, route: RoutePlan) {
        self.ns(ns).routes.push(route);
    }

    /// Every link that will exist in `ns` (own links and `veth_ends`), `lo` excluded.
    fn link_names_with(&self, ns: NsIdx, veth_ends: &[&VethEnd]) -> Vec<String> {
        let own = self.plan.namespaces[ns].links.iter().map(|l| &l.name);
        own.chain(veth_ends.iter().map(|e| &e.name))
            .cloned()
            .collect()
    }

    /// `ip_forward=1` and `rp_filter=0` on all, default and every link: the
    /// effective rp_filter is max(all, link), and links created before
    /// `default` was set keep the value inherited from the host.
    pub fn router_sysctls(&mut self, ns: NsIdx) {
        self.router_sysctls_where(|i, _| i == ns);
    }

    /// [`Self::router_sysctls`] for every namespace `pick` chooses, with
    /// one pass over the veths for all of them.
    pub fn router_sysctls_where(&mut self, pick: impl Fn(NsIdx, &NsPlan) -> bool) {
        let picked: Vec<(NsIdx, Vec<String>)> = {
            let ends = self.plan.veth_ends_by_ns();
            (0..self.plan.namespaces.len())
                .filter(|&i| pick(i, &self.plan.namespaces[i]))
                .map(|i| (i, self.link_names_with(i, &ends[i])))
                .collect()
        };
        for (i, links) in picked {
            self.ns(i).router_sysctls(links.iter().map(String::as_str));
        }
    }
}
