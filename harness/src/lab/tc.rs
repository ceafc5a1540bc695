//! tc programs a lab attaches after the kernel build: the eBPF VLAN backend
//! of trunk ENIs (`NsPlan::tc`). On this kernel the programs are TCX links
//! that live only as long as their handles, so the lab holds them and drops
//! them before its namespaces go.

use crate::kernel::tc::{self, HvHandle, TrunkHandle};
use crate::kernel::{KernelError, NetNs};
use crate::plan::{LabPlan, TcPlan};

/// Every attachment of one lab; dropping it detaches them all.
#[derive(Debug, Default)]
pub struct TcHandles {
    trunks: Vec<TrunkHandle>,
    hvs: Vec<HvHandle>,
}

impl TcHandles {
    /// How many trunk (node side) and hv (cloud side) attachments are held.
    pub fn counts(&self) -> (usize, usize) {
        (self.trunks.len(), self.hvs.len())
    }
}

/// One attachment, whichever side it is on.
enum Handle {
    Trunk(TrunkHandle),
    Hv(HvHandle),
}

/// Attaches every `TcPlan` of `plan`; `ns[i]` is `plan.namespaces[i]`.
/// Loading and verifying the programs is most of the cost, so the
/// attachments run on a few threads at once.
pub fn attach_all(plan: &LabPlan, ns: &[NetNs]) -> Result<TcHandles, KernelError> {
    let mut work: Vec<(&str, &NetNs, &TcPlan)> = Vec::new();
    for (i, p) in plan.namespaces.iter().enumerate() {
        let netns = ns
            .get(i)
            .ok_or_else(|| KernelError::new(format!("tc for {}: namespace not open", p.key)))?;
        work.extend(p.tc.iter().map(|t| (p.key.as_str(), netns, t)));
    }
    let attach = |(key, netns, t): &(&str, &NetNs, &TcPlan)| -> Result<Handle, KernelError> {
        match t {
            TcPlan::Trunk { link, pods } => tc::attach_trunk(netns, link, pods)
                .map(Handle::Trunk)
                .map_err(|e| e.context(format_args!("trunk {link} of {key}"))),
            TcPlan::Hv {
                trunk_link,
                members,
            } => tc::attach_hv(netns, trunk_link, members)
                .map(Handle::Hv)
                .map_err(|e| e.context(format_args!("hypervisor {key}"))),
        }
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let chunk = work.len().div_ceil(workers).max(1);
    let results: Vec<Result<Handle, KernelError>> = std::thread::scope(|s| {
        let threads: Vec<_> = work
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(attach).collect::<Vec<_>>()))
            .collect();
        threads
            .into_iter()
            .flat_map(|t| {
                t.join()
                    .unwrap_or_else(|_| vec![Err(KernelError::new("tc attach worker panicked"))])
            })
            .collect()
    });
    let mut h = TcHandles::default();
    for r in results {
        match r? {
            Handle::Trunk(t) => h.trunks.push(t),
            Handle::Hv(v) => h.hvs.push(v),
        }
    }
    Ok(h)
}

impl Drop for TcHandles {
    /// Detaching a TCX link waits for an RCU grace period: let a few go at once.
    fn drop(&mut self) {
        let trunks = std::mem::take(&mut self.trunks);
        let hvs = std::mem::take(&mut self.hvs);
        std::thread::scope(|s| {
            for t in trunks {
                s.spawn(move || drop(t));
            }
            for v in hvs {
                s.spawn(move || drop(v));
            }
        });
    }
}
