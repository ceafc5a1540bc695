//! tc programs a lab attaches after the kernel build: the eBPF VLAN backend
//! of trunk ENIs (`NsPlan::tc`). The lab loads `vlan.o` once and hooks the
//! same programs to every trunk and hypervisor link, a few namespaces at a
//! time. The hooks belong to the links: the lab's teardown deletes the
//! namespaces and the kernel drops them with the links; dropping the handles
//! only closes descriptors.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::kernel::netlink::Netlink;
use crate::kernel::tc::{HvHandle, TcAttach, TrunkHandle, VlanPrograms};
use crate::kernel::{KernelError, NetNs};
use crate::plan::{LabPlan, TcPlan};

/// Every attachment of one lab and the programs they share.
#[derive(Debug, Default)]
pub struct TcHandles {
    progs: Option<Arc<VlanPrograms>>,
    trunks: Vec<TrunkHandle>,
    hvs: Vec<HvHandle>,
}

impl TcHandles {
    /// How many trunk (node side) and hv (cloud side) attachments are held.
    pub fn counts(&self) -> (usize, usize) {
        (self.trunks.len(), self.hvs.len())
    }

    /// How the programs are hooked, when the lab has any.
    pub fn mode(&self) -> Option<TcAttach> {
        self.progs.as_ref().map(|p| p.mode())
    }

    /// Kernel ids of the lab's programs.
    pub fn program_ids(&self) -> Vec<u32> {
        self.progs
            .as_ref()
            .map(|p| p.program_ids())
            .unwrap_or_default()
    }
}

/// One attachment, whichever side it is on.
enum Handle {
    Trunk(TrunkHandle),
    Hv(HvHandle),
    /// u32 filters live as long as the namespace: nothing to hold.
    Filter,
}

/// The lab's VLAN programs, loading on a thread of their own from the start
/// of bring-up. Loading is CPU work (the verifier; once per process, aya's
/// BTF parse) while creating and building namespaces mostly waits on RTNL,
/// so the two overlap even on two cores.
pub struct Preload {
    loading: Option<std::thread::JoinHandle<Result<Arc<VlanPrograms>, KernelError>>>,
}

/// Whether `t` hooks the VLAN programs (Terway IPVLAN's u32 redirects load nothing).
fn needs_programs(t: &TcPlan) -> bool {
    !matches!(t, TcPlan::RedirectToHost { .. })
}

/// Starts loading the programs when `plan` has a trunk or hypervisor hook.
pub fn preload(plan: &LabPlan, mode: TcAttach) -> Preload {
    let needed = plan
        .namespaces
        .iter()
        .flat_map(|n| &n.tc)
        .any(needs_programs);
    let owner = format!("lab {}", plan.name);
    Preload {
        loading: needed.then(|| std::thread::spawn(move || VlanPrograms::load_vlan(owner, mode))),
    }
}

impl Preload {
    fn wait(&mut self) -> Result<Arc<VlanPrograms>, KernelError> {
        self.loading
            .take()
            .ok_or_else(|| KernelError::new("the VLAN programs were not preloaded"))?
            .join()
            .unwrap_or_else(|_| Err(KernelError::new("loading vlan.o panicked")))
    }
}

impl Drop for Preload {
    /// A bring-up that failed before attaching still waits for the load, so
    /// no program outlives the lab (the soak counts them).
    fn drop(&mut self) {
        if let Some(h) = self.loading.take() {
            let _ = h.join();
        }
    }
}

/// Attaches every `TcPlan` of `plan` with the programs of `progs`; `ns[i]` is
/// `plan.namespaces[i]`. Nothing is loaded for a lab without trunks.
pub fn attach_all(
    plan: &LabPlan,
    ns: &[NetNs],
    mut progs: Preload,
) -> Result<TcHandles, KernelError> {
    let mut work: Vec<(&str, &NetNs, &TcPlan)> = Vec::new();
    for (i, p) in plan.namespaces.iter().enumerate() {
        let netns = ns
            .get(i)
            .ok_or_else(|| KernelError::new(format!("tc for {}: namespace not open", p.key)))?;
        for t in &p.tc {
            match t {
                TcPlan::RedirectToHost { link, cidrs, to } => redirect(netns, link, cidrs, to)
                    .map_err(|e| e.context(format_args!("redirect on {link} of {}", p.key)))?,
                _ => work.push((p.key.as_str(), netns, t)),
            }
        }
    }
    if work.is_empty() {
        return Ok(TcHandles::default());
    }
    let t0 = std::time::Instant::now();
    let progs = progs.wait()?;
    tracing::debug!(
        "tc {}: waited for the programs {:?}",
        plan.name,
        t0.elapsed()
    );
    let attach = |(key, netns, t): &(&str, &NetNs, &TcPlan)| -> Result<Handle, KernelError> {
        match t {
            TcPlan::Trunk { link, pods } => progs
                .attach_trunk(netns, link, pods)
                .map(Handle::Trunk)
                .map_err(|e| e.context(format_args!("trunk {link} of {key}"))),
            TcPlan::Hv {
                trunk_link,
                members,
            } => progs
                .attach_hv(netns, trunk_link, members)
                .map(Handle::Hv)
                .map_err(|e| e.context(format_args!("hypervisor {key}"))),
            TcPlan::RedirectToHost { .. } => Ok(Handle::Filter),
        }
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4);
    let results = crate::kernel::in_chunks(&work, workers, attach, || {
        Err(KernelError::new("tc attach worker panicked"))
    });
    let mut h = TcHandles {
        progs: Some(progs),
        ..Default::default()
    };
    for r in results {
        match r? {
            Handle::Trunk(t) => h.trunks.push(t),
            Handle::Hv(v) => h.hvs.push(v),
            Handle::Filter => {}
        }
    }
    check_unique_indexes(&h)?;
    tracing::debug!("tc {}: attached {:?}", plan.name, t0.elapsed());
    Ok(h)
}

/// Terway IPVLAN's u32 redirect filters (no eBPF: nothing is loaded).
fn redirect(
    netns: &NetNs,
    link: &str,
    cidrs: &[ipnet::Ipv4Net],
    to: &str,
) -> Result<(), KernelError> {
    netns
        .run(|| {
            let mut nl = Netlink::open()?;
            cidrs
                .iter()
                .try_for_each(|c| nl.add_ingress_redirect(link, *c, to))
        })
        .and_then(|r| r)
}

/// The shared maps are keyed by interface index: two keyed links of the
/// lab with one index (in different namespaces) would share entries. The
/// node side is keyed by its trunk links (the hooked ones), the hv side by
/// its trunk link and every member ENI link (which carry no hook).
fn check_unique_indexes(h: &TcHandles) -> Result<(), KernelError> {
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    let links = h
        .trunks
        .iter()
        .flat_map(|t| {
            t.hooks()
                .iter()
                .map(|k| (t.namespace(), k.ifname.as_str(), k.ifindex))
        })
        .chain(h.hvs.iter().flat_map(|v| {
            v.keyed_links()
                .into_iter()
                .map(|(name, index)| (v.namespace(), name, index))
        }));
    for (ns, ifname, ifindex) in links {
        let here = format!("{ifname} in {ns}");
        match seen.get(&ifindex) {
            Some(other) if *other != here => {
                return Err(KernelError::new(format!(
                    "links {other} and {here} share interface index {ifindex}: the VLAN maps are keyed by index"
                )))
            }
            _ => {
                seen.insert(ifindex, here);
            }
        }
    }
    Ok(())
}
