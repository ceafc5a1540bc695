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

/// Attaches every `TcPlan` of `plan`; `ns[i]` is `plan.namespaces[i]`.
pub fn attach_all(plan: &LabPlan, ns: &[NetNs]) -> Result<TcHandles, KernelError> {
    let mut h = TcHandles::default();
    for (i, p) in plan.namespaces.iter().enumerate() {
        let Some(netns) = ns.get(i) else {
            return Err(KernelError::new(format!(
                "tc for {}: namespace not open",
                p.key
            )));
        };
        for t in &p.tc {
            match t {
                TcPlan::Trunk { link, pods } => h.trunks.push(
                    tc::attach_trunk(netns, link, pods)
                        .map_err(|e| e.context(format_args!("trunk {link} of {}", p.key)))?,
                ),
                TcPlan::Hv {
                    trunk_link,
                    members,
                } => h.hvs.push(
                    tc::attach_hv(netns, trunk_link, members)
                        .map_err(|e| e.context(format_args!("hypervisor {}", p.key)))?,
                ),
            }
        }
    }
    Ok(h)
}
