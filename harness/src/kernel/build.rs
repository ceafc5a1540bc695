//! Executes a `LabPlan` in namespaces that already exist.
//!
//! Phases (each waits for the previous one in every namespace):
//! 0. global sysctls (`conf/default/*` must precede the links it shapes);
//! 1. veth pairs, created from the `a` side with the `b` end placed
//!    directly in its namespace;
//! 2. per namespace: other links (parents first), link settings (masters
//!    and MTUs, then up), link-level sysctls, addresses, routes (main table
//!    first), neighbours, FDB entries, rules, the nft ruleset, then the
//!    IPVS virtual services (native IPVS backend only).
//!
//! A bounded pool of std threads works across namespaces; each thread
//! enters a namespace itself and opens one batched netlink socket there.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::netlink::{Netlink, UpAtCreation};
use super::{iptables, ipvs, netns, nft, sysctl, KernelError, NetNs};
use crate::plan::types::{AdoptedLink, Backends, LabPlan, LinkKind, LinkPlan, NsPlan, TABLE_MAIN};

use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, KernelError>;

/// Threads working on namespaces at once.
const WORKERS: usize = 4;
/// Veth pairs created per batch before their peers are finished (see
/// `create_veths`): the peers of a namespace with thousands of pairs (the
/// VPC router) would otherwise wait down, queued for linkwatch, until all
/// of them exist.
const VETH_CHUNK: usize = 32;
/// Teardown threads for a large lab, and from how many namespaces on.
const TEARDOWN_WORKERS: usize = 8;
const TEARDOWN_PARALLEL_FROM: usize = 512;

/// Builds everything `plan` describes. `ns[i]` is `plan.namespaces[i]`.
/// On error the namespaces hold a partial lab; the caller tears it down.
pub fn build(plan: &LabPlan, ns: &[NetNs]) -> Result<()> {
    if ns.len() != plan.namespaces.len() {
        return Err(KernelError::new(format!(
            "building lab {}: {} namespaces opened for {} planned",
            plan.name,
            ns.len(),
            plan.namespaces.len()
        )));
    }
    for v in &plan.veths {
        if v.a.ns >= ns.len() || v.b.ns >= ns.len() {
            return Err(KernelError::new(format!(
                "building lab {}: veth {}/{} names a namespace index out of range",
                plan.name, v.a.name, v.b.name
            )));
        }
    }
    let all: Vec<usize> = (0..ns.len()).collect();
    let mut lap = Lap::new(&plan.name);
    for_each_ns(&all, ns, plan, |i, _| global_sysctls(&plan.namespaces[i]))?;
    lap.mark("sysctls");
    // Sets, not a scan of every veth per namespace: that is O(n²) in a
    // 10,000-pod lab.
    let mut pairs_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, v) in plan.veths.iter().enumerate() {
        pairs_of.entry(v.a.ns).or_default().push(k);
    }
    let veth_sides: Vec<usize> = pairs_of.keys().copied().collect();
    let ends = VethEnds::of_plan(plan);
    for_each_ns(&veth_sides, ns, plan, |i, nl| {
        pairs_of[&i]
            .chunks(VETH_CHUNK)
            .try_for_each(|part| create_veths(plan, ns, part, &ends, nl))
    })?;
    lap.mark("veths");
    // Links adopted by another namespace (a pod's ipvlan eth0 on the node's
    // ENI) are created from their parent's namespace once the parent exists.
    let parents: Vec<usize> = plan
        .namespaces
        .iter()
        .flat_map(|n| n.adopted_links.iter().map(|a| a.parent_ns))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for_each_ns(&parents, ns, plan, |j, nl| create_adopted(plan, ns, j, nl))?;
    let adopters: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !plan.namespaces[*i].adopted_links.is_empty())
        .collect();
    for_each_ns(&adopters, ns, plan, |i, nl| rename_adopted(plan, i, nl))?;
    lap.mark("adopted links");
    for_each_ns(&all, ns, plan, |i, nl| {
        let hooked = ends.hooked.get(i);
        let ready = |l: &str| hooked.is_some_and(|h| h.contains(l));
        build_namespace(&plan.namespaces[i], &ns[i], &plan.backends, &ready, nl)
    })?;
    lap.mark("namespaces built");
    for_each_ns(&all, ns, plan, |_, nl| wait_until_active(nl))?;
    lap.mark("links active");
    Ok(())
}

/// Phase timings of one build, logged at debug level (`--log debug`).
struct Lap<'a> {
    lab: &'a str,
    at: Instant,
}

impl<'a> Lap<'a> {
    fn new(lab: &'a str) -> Self {
        Lap {
            lab,
            at: Instant::now(),
        }
    }

    fn mark(&mut self, phase: &str) {
        tracing::debug!("build {}: {phase} {:?}", self.lab, self.at.elapsed());
        self.at = Instant::now();
    }
}

/// How long links may take to be activated before the build gives up.
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until the kernel has activated every up link that has carrier.
///
/// Carrier changes are handled later by the kernel's global linkwatch
/// worker, under RTNL, and a busy host delays it. Until it has run, a veth
/// end brought up while its peer was still down has no qdisc (`noop`: it
/// silently drops everything sent, ARP included) and a bridge port is still
/// disabled (the bridge drops what arrives on it). Either turns a lab's
/// first probes into timeouts, so a lab is ready only once every such link
/// reports operstate `up` with a real qdisc.
pub(crate) fn wait_until_active(nl: &mut Netlink) -> Result<()> {
    let start = Instant::now();
    loop {
        let pending: Vec<String> = nl
            .links()?
            .into_iter()
            .filter(|l| l.up && l.lower_up)
            .filter(|l| {
                // lo, dummy, bridge and vxlan report `unknown` for good.
                let follows_carrier = matches!(
                    l.kind.as_deref(),
                    Some("veth" | "macvlan" | "ipvlan" | "vlan")
                );
                // An ipvlan child created on a parent that already has
                // carrier (a restarted pod's eth0) gets its carrier before
                // it is registered, so no linkwatch event ever sets its
                // operstate: it stays `unknown`, which the kernel treats
                // as up (netif_oper_up), and it carries packets.
                let settled = l.oper_up || (l.kind.as_deref() == Some("ipvlan") && l.oper_unknown);
                l.qdisc.as_deref() == Some("noop") || (follows_carrier && !settled)
            })
            .map(|l| l.name)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() > ACTIVATION_TIMEOUT {
            return Err(KernelError::new(format!(
                "links {} still not activated by the kernel after {} s",
                pending.join(", "),
                ACTIVATION_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Re-plumbs namespace `i` after it was deleted and created anew (a pod
/// restart): its veths and adopted links from the other side, everything
/// planned inside it, and — in the namespaces on the other end of those
/// links — every setting, address, route and neighbour that named the links
/// that died with it. `ns[i]` is the new namespace.
pub fn rebuild_namespace(plan: &LabPlan, ns: &[NetNs], i: usize) -> Result<()> {
    if ns.len() != plan.namespaces.len() || i >= ns.len() {
        return Err(KernelError::new(format!(
            "rebuilding namespace #{i} of lab {}: out of range",
            plan.name
        )));
    }
    for_each_ns(&[i], ns, plan, |i, _| global_sysctls(&plan.namespaces[i]))?;
    // Peer ends that lived in `i` were deleted with it, and so were their
    // partners in other namespaces (a veth pair dies whole).
    let mut touched: Vec<(usize, Vec<String>)> = Vec::new();
    let mut note = |j: usize, dev: &str| match touched.iter_mut().find(|(n, _)| *n == j) {
        Some((_, devs)) => devs.push(dev.to_string()),
        None => touched.push((j, vec![dev.to_string()])),
    };
    let mut create: Vec<(usize, usize)> = Vec::new();
    for (k, v) in plan.veths.iter().enumerate() {
        if v.a.ns == i && v.b.ns != i {
            create.push((k, v.b.ns));
            note(v.b.ns, &v.b.name);
        } else if v.b.ns == i && v.a.ns != i {
            create.push((k, v.a.ns));
            note(v.a.ns, &v.a.name);
        } else if v.a.ns == i {
            create.push((k, i));
        }
    }
    let sides: Vec<usize> = {
        let mut v: Vec<usize> = create.iter().map(|(_, j)| *j).collect();
        v.sort();
        v.dedup();
        v
    };
    for_each_ns(&sides, ns, plan, |j, nl| {
        batch(nl, |nl| {
            for (k, _) in create.iter().filter(|(_, side)| *side == j) {
                let v = &plan.veths[*k];
                let (a, b) = veth_indexes(*k);
                if v.a.ns == j {
                    nl.add_veth_indexed(&v.a, &v.b, &ns[v.b.ns], (a, b), UpAtCreation::default())?;
                } else {
                    nl.add_veth_indexed(&v.b, &v.a, &ns[v.a.ns], (b, a), UpAtCreation::default())?;
                }
            }
            Ok(())
        })
    })?;
    let parents: Vec<usize> = {
        let mut v: Vec<usize> = plan.namespaces[i]
            .adopted_links
            .iter()
            .map(|a| a.parent_ns)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for_each_ns(&parents, ns, plan, |j, nl| {
        batch(nl, |nl| {
            for (_, a, temp) in adopted(plan).filter(|(t, a, _)| *t == i && a.parent_ns == j) {
                adopt(nl, a, &temp, &ns[i], &plan.backends)?;
            }
            Ok(())
        })
    })?;
    if !plan.namespaces[i].adopted_links.is_empty() {
        for_each_ns(&[i], ns, plan, |i, nl| rename_adopted(plan, i, nl))?;
    }
    for_each_ns(&[i], ns, plan, |i, nl| {
        build_namespace(&plan.namespaces[i], &ns[i], &plan.backends, &|_| false, nl)
    })?;
    let others: Vec<usize> = touched.iter().map(|(j, _)| *j).collect();
    for_each_ns(&others, ns, plan, |j, nl| {
        let devs = &touched
            .iter()
            .find(|(n, _)| *n == j)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        build_namespace(
            &only_devices(&plan.namespaces[j], devs),
            &ns[j],
            &plan.backends,
            &|_| false,
            nl,
        )
    })?;
    let mut all = others;
    all.push(i);
    for_each_ns(&all, ns, plan, |_, nl| wait_until_active(nl))
}

/// Applies `p` to a namespace that exists already, whose links the caller
/// created (the mock cloud's run-time ENIs): global sysctls, the links
/// planned inside, settings, link sysctls, addresses, routes, neighbours,
/// rules and nft, in the order `build` uses.
pub fn configure_namespace(p: &NsPlan, ns: &NetNs, backends: &Backends) -> Result<()> {
    ns.run(|| {
        global_sysctls(p)?;
        let mut nl = Netlink::open()?;
        build_namespace(p, ns, backends, &|_| false, &mut nl)
    })?
    .map_err(|e| e.context(format_args!("in namespace {} ({})", ns.name(), p.key)))
}

/// What of `p` names one of `devs`: what a namespace loses with those links.
fn only_devices(p: &NsPlan, devs: &[String]) -> NsPlan {
    let on = |d: &str| devs.iter().any(|x| x == d);
    NsPlan {
        key: p.key.clone(),
        short: p.short.clone(),
        kind: p.kind,
        link_settings: p
            .link_settings
            .iter()
            .filter(|s| on(&s.name))
            .cloned()
            .collect(),
        addrs: p.addrs.iter().filter(|a| on(&a.dev)).cloned().collect(),
        routes: p
            .routes
            .iter()
            .filter(|r| r.dev.as_deref().is_some_and(on))
            .cloned()
            .collect(),
        neighs: p.neighs.iter().filter(|n| on(&n.dev)).cloned().collect(),
        fdbs: p.fdbs.iter().filter(|f| on(&f.dev)).cloned().collect(),
        sysctls: p
            .sysctls
            .iter()
            .filter(|(path, _)| link_of_sysctl(path).is_some_and(on))
            .cloned()
            .collect(),
        ..Default::default()
    }
}

/// Deletes the lab's namespaces (the kernel frees every link inside).
/// Deleting link by link would cost an RCU grace period per veth.
///
/// The kernel frees dead namespaces in batches (`cleanup_net`), and for
/// each one it walks every namespace still alive, taking its nsid lock and
/// scanning its table of peer namespace ids (`unhash_nsid`). Namespaces
/// that die one by one as their mounts go cost O(n²) of that walk, on one
/// CPU, and the VPC router's table names all 10,000 ENI namespaces of a big
/// trunking lab: most of the kernel's share of its teardown. So a
/// descriptor holds each namespace while its mount goes, and all are closed
/// together: they die in one batch, whose walk covers only the namespaces
/// outside it. Where RLIMIT_NOFILE cannot cover every namespace, the first
/// ones are held (a plan lists the VPC router, nodes and hypervisors, the
/// namespaces with the largest nsid tables, first) and the rest are
/// deleted after the held ones were let go.
pub fn teardown(names: &[String]) -> Result<()> {
    let held = netns::hold_first(names);
    let (first, rest) = names.split_at(held.len().min(names.len()));
    let mut errors = unmount_all(first);
    drop(held);
    errors.extend(unmount_all(rest));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(KernelError::new(errors.join("; ")))
    }
}

/// Unmounts and removes the namespace files of `names`. Each unmount ends
/// in an expedited RCU grace period (the kernel's `namespace_unlock`);
/// threads that unmount at the same time share grace periods.
fn unmount_all(names: &[String]) -> Vec<String> {
    let workers = if names.len() >= TEARDOWN_PARALLEL_FROM {
        TEARDOWN_WORKERS
    } else {
        1
    };
    super::in_chunks(
        names,
        workers,
        |n| netns::delete(n).err().map(|e| e.0),
        || Some("namespace deletion worker panicked".into()),
    )
    .into_iter()
    .flatten()
    .collect()
}

/// Runs `work` for each listed namespace on a pool of threads, each inside
/// that namespace with a fresh netlink socket. Stops handing out work after
/// the first failure and reports every failure (first one first).
fn for_each_ns<F>(which: &[usize], ns: &[NetNs], plan: &LabPlan, work: F) -> Result<()>
where
    F: Fn(usize, &mut Netlink) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors: Mutex<Vec<KernelError>> = Mutex::new(Vec::new());
    let workers = WORKERS.min(which.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some(&i) = which.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let key = &plan.namespaces[i].key;
                // This thread is ours alone, so it may switch namespaces.
                let res = ns[i]
                    .enter_current_thread()
                    .and_then(|()| Netlink::open())
                    .and_then(|mut nl| work(i, &mut nl))
                    .map_err(|e| e.context(format_args!("in namespace {} ({key})", ns[i].name())));
                if let Err(e) = res {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut v) = errors.lock() {
                        v.push(e);
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    let n = errors.len();
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) if n == 1 => Err(e),
        Some(e) => Err(KernelError::new(format!(
            "{e} (and {} more namespaces failed)",
            n - 1
        ))),
    }
}

/// Runs `f` inside a batch; a failure of an earlier queued request is the
/// root cause and is reported before a later one that merely followed.
fn batch(nl: &mut Netlink, f: impl FnOnce(&mut Netlink) -> Result<()>) -> Result<()> {
    nl.begin_batch();
    let res = f(nl);
    let acks = nl.finish_batch();
    match (acks, res) {
        (Err(first), Err(later)) => Err(KernelError::new(format!("{first} (then: {later})"))),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Creates the veth pairs `pairs` (all with their `a` end here), gives
/// each end that carries a tc hook its clsact qdisc, and brings up at once
/// every end planned up.
///
/// Why at once: a new veth end is queued for the kernel's linkwatch worker
/// (its carrier goes off at registration) and a down one stays queued.
/// Every urgent linkwatch run (one per burst of links gaining carrier)
/// walks that whole queue holding RTNL, with interrupts off: with 60,000
/// ends created down and brought up later, those walks were a fifth of a
/// 10,000-pod bring-up's CPU time, and every other netlink request spun on
/// RTNL meanwhile. An end that is up gets its carrier from its peer and
/// leaves the queue in the next run. A hooked end gets its qdisc first,
/// while still down (see `build_namespace`). The local end of a pair can
/// come up in the request that creates it; the peer cannot (veth_newlink
/// configures it before the two are joined, and veth_open refuses an end
/// without a peer: ENOTCONN), so this thread enters each peer's namespace
/// and finishes its ends there.
fn create_veths(
    plan: &LabPlan,
    ns: &[NetNs],
    pairs: &[usize],
    ends: &VethEnds,
    nl: &mut Netlink,
) -> Result<()> {
    let mut hooked_here: Vec<EndToFinish> = Vec::new();
    batch(nl, |nl| {
        for &k in pairs {
            let v = &plan.veths[k];
            let (up, hooked) = ends.of(v.a.ns, &v.a.name);
            let now = UpAtCreation {
                local: up && !hooked,
            };
            nl.add_veth_indexed(&v.a, &v.b, &ns[v.b.ns], veth_indexes(k), now)?;
            if hooked {
                hooked_here.push(EndToFinish {
                    index: veth_indexes(k).0,
                    name: &v.a.name,
                    up,
                    hooked,
                });
            }
        }
        // The qdiscs one after the other: each clsact is bound to the
        // kernel's global list of indirect flow blocks, which every bind
        // walks (flow_indr_dev_setup_offload); back to back the walks stay
        // in cache, interleaved with link creation they cost 5x more.
        finish_hooked(nl, &hooked_here)
    })?;
    let mut peers: BTreeMap<usize, Vec<EndToFinish>> = BTreeMap::new();
    for &k in pairs {
        let b = &plan.veths[k].b;
        let (up, hooked) = ends.of(b.ns, &b.name);
        if up || hooked {
            peers.entry(b.ns).or_default().push(EndToFinish {
                index: veth_indexes(k).1,
                name: &b.name,
                up,
                hooked,
            });
        }
    }
    // This thread belongs to `for_each_ns`, which enters the namespace of
    // its next item itself; `nl` stays bound to this one.
    for (j, list) in peers {
        ns[j]
            .enter_current_thread()
            .and_then(|()| Netlink::open())
            .and_then(|mut peer_nl| batch(&mut peer_nl, |nl| finish_hooked(nl, &list)))
            .map_err(|e| e.context(format_args!("in namespace {}", ns[j].name())))?;
    }
    Ok(())
}

/// A veth end of this namespace that still needs its clsact qdisc (if
/// `hooked`) and to come up (if `up`).
struct EndToFinish<'a> {
    index: u32,
    name: &'a str,
    up: bool,
    hooked: bool,
}

/// Queues the qdiscs of `ends`, then brings them up: a qdisc grafted onto
/// a link that is up deactivates it, an expedited RCU grace period under
/// RTNL (see `build_namespace`).
fn finish_hooked(nl: &mut Netlink, ends: &[EndToFinish]) -> Result<()> {
    for e in ends.iter().filter(|e| e.hooked) {
        nl.add_clsact(e.index)?;
    }
    for e in ends.iter().filter(|e| e.up) {
        nl.set_up_at(e.index, e.name)?;
    }
    Ok(())
}

/// Per namespace, the veth ends planned up and those that carry a tc hook
/// (they get their clsact qdisc in `create_veths`, before they come up).
struct VethEnds<'a> {
    up: Vec<HashSet<&'a str>>,
    hooked: Vec<HashSet<&'a str>>,
}

impl<'a> VethEnds<'a> {
    fn of_plan(plan: &'a LabPlan) -> Self {
        let by_ns = plan.veth_ends_by_ns();
        let mut up = Vec::new();
        let mut hooked = Vec::new();
        for (n, ends) in plan.namespaces.iter().zip(&by_ns) {
            let is_end: HashSet<&str> = ends.iter().map(|e| e.name.as_str()).collect();
            up.push(
                n.link_settings
                    .iter()
                    .filter(|s| s.up && is_end.contains(s.name.as_str()))
                    .map(|s| s.name.as_str())
                    .collect(),
            );
            hooked.push(
                n.tc.iter()
                    .flat_map(|t| t.links())
                    .filter(|l| is_end.contains(l))
                    .collect(),
            );
        }
        VethEnds { up, hooked }
    }

    /// (planned up, hooked) for end `name` of namespace `ns`.
    fn of(&self, ns: usize, name: &str) -> (bool, bool) {
        let has = |v: &[HashSet<&str>]| v.get(ns).is_some_and(|s| s.contains(name));
        (has(&self.up), has(&self.hooked))
    }
}

/// Every adopted link of the plan with its namespace and its temporary
/// name (see `adopt`).
fn adopted(plan: &LabPlan) -> impl Iterator<Item = (usize, &AdoptedLink, String)> {
    plan.namespaces
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.adopted_links.iter().map(move |a| (i, a)))
        .enumerate()
        .map(|(k, (i, a))| (i, a, format!("cnladopt{k}")))
}

/// Creates adopted link `a` from its parent's namespace into `target`
/// under `temp`. Kernels before 6.14 look a new link's name up in the
/// namespace that asks, not the one it goes to: `ip link add link eth1
/// name eth0 netns pod type ipvlan` fails with "File exists" on a node that
/// has an eth0 of its own. So the link travels under a name no namespace
/// of the lab uses and `rename_adopted` gives it its own there.
fn adopt(
    nl: &mut Netlink,
    a: &AdoptedLink,
    temp: &str,
    target: &NetNs,
    b: &Backends,
) -> Result<()> {
    let l = LinkPlan {
        name: temp.to_string(),
        ..a.link.clone()
    };
    nl.add_link_into(&l, b, Some(target))
        .map_err(|e| KernelError::new(format!("{e} (link {} of {})", a.link.name, target.name())))
}

/// Gives namespace `i`'s adopted links their planned names.
fn rename_adopted(plan: &LabPlan, i: usize, nl: &mut Netlink) -> Result<()> {
    batch(nl, |nl| {
        for (_, a, temp) in adopted(plan).filter(|(j, _, _)| *j == i) {
            nl.rename_link(&temp, &a.link.name)?;
        }
        Ok(())
    })
}

fn create_adopted(plan: &LabPlan, ns: &[NetNs], parent: usize, nl: &mut Netlink) -> Result<()> {
    batch(nl, |nl| {
        for (i, a, temp) in adopted(plan).filter(|(_, a, _)| a.parent_ns == parent) {
            adopt(nl, a, &temp, &ns[i], &plan.backends)?;
        }
        Ok(())
    })
}

/// Interface indexes for the ends of veth pair `k`: different from each
/// other (see `Netlink::add_veth_indexed`), unique in the lab, and above the
/// small indexes the kernel hands out to the lab's other links.
fn veth_indexes(k: usize) -> (u32, u32) {
    let base = 1000 + 2 * u32::try_from(k).unwrap_or(u32::MAX / 4).min(u32::MAX / 4);
    (base, base + 1)
}

/// `net/ipv4/conf/eth0/rp_filter` names a link; `conf/all`, `conf/default`
/// and everything outside `conf`/`neigh` do not.
fn link_of_sysctl(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["net", _, "conf" | "neigh", dev, ..] if !matches!(*dev, "all" | "default") => Some(dev),
        _ => None,
    }
}

fn global_sysctls(p: &NsPlan) -> Result<()> {
    sysctl::write_all(
        p.sysctls
            .iter()
            .filter(|(path, _)| link_of_sysctl(path).is_none()),
    )
}

/// Links in an order where every parent (macvlan/ipvlan/vlan parent, vxlan
/// dev) planned in this namespace comes before its children.
fn parents_first(links: &[LinkPlan]) -> Result<Vec<&LinkPlan>> {
    fn parent(l: &LinkPlan) -> Option<&str> {
        match &l.kind {
            LinkKind::Macvlan { parent, .. }
            | LinkKind::Ipvlan { parent }
            | LinkKind::Vlan { parent, .. } => Some(parent),
            LinkKind::Vxlan { dev, .. } => dev.as_deref(),
            LinkKind::Bridge | LinkKind::Dummy => None,
        }
    }
    let mut left: Vec<&LinkPlan> = links.iter().collect();
    let mut out = Vec::with_capacity(links.len());
    while !left.is_empty() {
        let (ready, wait): (Vec<&LinkPlan>, Vec<&LinkPlan>) = left
            .iter()
            .partition(|l| parent(l).is_none_or(|p| !left.iter().any(|o| o.name == p)));
        if ready.is_empty() {
            let names: Vec<&str> = wait.iter().map(|l| l.name.as_str()).collect();
            return Err(KernelError::new(format!(
                "links {} are each other's parents",
                names.join(", ")
            )));
        }
        out.extend(ready);
        left = wait;
    }
    Ok(out)
}

/// `has_clsact` names the hooked links that got their clsact qdisc when
/// they were created (see `create_veths`).
fn build_namespace(
    p: &NsPlan,
    ns: &NetNs,
    backends: &Backends,
    has_clsact: &dyn Fn(&str) -> bool,
    nl: &mut Netlink,
) -> Result<()> {
    let links = parents_first(&p.links)?;
    batch(nl, |nl| {
        links.iter().try_for_each(|l| nl.add_link(l, backends))
    })?;
    // The clsact qdiscs the tc hooks need, while their links are still
    // down: grafting a qdisc onto an up link deactivates it, which waits
    // for an expedited RCU grace period holding RTNL (every other lab's
    // netlink work waits too). `lab::tc` finds them there.
    let mut hooked: Vec<&str> =
        p.tc.iter()
            .flat_map(|t| t.links())
            .filter(|l| !has_clsact(l))
            .collect();
    hooked.sort_unstable();
    hooked.dedup();
    batch(nl, |nl| {
        hooked.iter().try_for_each(|l| {
            let index = nl.require_index(l, &format!("adding clsact qdisc to {l}"))?;
            nl.add_clsact(index)
        })
    })?;
    batch(nl, |nl| {
        for s in p
            .link_settings
            .iter()
            .filter(|s| s.master.is_some() || s.mtu.is_some())
        {
            nl.set_link(&s.name, s.master.as_deref(), s.mtu, None)?;
        }
        for s in p.link_settings.iter().filter(|s| s.hairpin) {
            nl.set_hairpin(&s.name, true)?;
        }
        for s in &p.link_settings {
            nl.set_link(&s.name, None, None, Some(s.up))?;
        }
        Ok(())
    })?;
    sysctl::write_all(
        p.sysctls
            .iter()
            .filter(|(path, _)| link_of_sysctl(path).is_some()),
    )?;
    batch(nl, |nl| p.addrs.iter().try_for_each(|a| nl.add_addr(a)))?;
    let mut routes: Vec<_> = p.routes.iter().collect();
    routes.sort_by_key(|r| r.table != TABLE_MAIN);
    batch(nl, |nl| routes.iter().try_for_each(|r| nl.add_route(r)))?;
    batch(nl, |nl| {
        p.neighs.iter().try_for_each(|n| nl.add_neigh(n))?;
        p.fdbs.iter().try_for_each(|f| nl.add_fdb(f))?;
        p.rules.iter().try_for_each(|r| nl.add_rule(r))
    })?;
    if let Some(script) = &p.nft {
        // The caller entered `ns`: no thread of its own is needed.
        nft::apply_here(ns.name(), script)?;
    }
    if !p.ipvs.is_empty() {
        // The generic-netlink socket belongs to this thread's namespace
        // (the caller entered `ns`), so this programs this node's table.
        ipvs::Ipvs::open()?.program(&p.ipvs)?;
    }
    if let Some(rules) = &p.iptables {
        iptables::restore(ns, rules)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::types::MacvlanMode;

    fn link(name: &str, kind: LinkKind) -> LinkPlan {
        LinkPlan {
            name: name.into(),
            kind,
            mac: None,
        }
    }

    #[test]
    fn parents_come_first() {
        let links = vec![
            link(
                "mv0",
                LinkKind::Macvlan {
                    parent: "br0".into(),
                    mode: MacvlanMode::Bridge,
                },
            ),
            link(
                "vl5",
                LinkKind::Vlan {
                    parent: "mv0".into(),
                    id: 5,
                },
            ),
            link("br0", LinkKind::Bridge),
            link(
                "ipv",
                LinkKind::Ipvlan {
                    parent: "eth0".into(),
                },
            ),
        ];
        let order: Vec<&str> = parents_first(&links)
            .unwrap()
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(order, ["br0", "ipv", "mv0", "vl5"]);
    }

    #[test]
    fn parent_cycles_are_refused() {
        let links = vec![
            link(
                "a",
                LinkKind::Vlan {
                    parent: "b".into(),
                    id: 1,
                },
            ),
            link(
                "b",
                LinkKind::Vlan {
                    parent: "a".into(),
                    id: 2,
                },
            ),
        ];
        let err = parents_first(&links).unwrap_err();
        assert!(err.0.contains("a, b"), "{err}");
    }

    #[test]
    fn link_level_sysctls_are_recognised() {
        assert_eq!(link_of_sysctl("net/ipv4/conf/eth0/rp_filter"), Some("eth0"));
        assert_eq!(
            link_of_sysctl("net/ipv4/neigh/eth0/proxy_delay"),
            Some("eth0")
        );
        assert_eq!(link_of_sysctl("net/ipv4/conf/all/rp_filter"), None);
        assert_eq!(link_of_sysctl("net/ipv4/conf/default/rp_filter"), None);
        assert_eq!(link_of_sysctl("net/ipv4/ip_forward"), None);
    }
}
