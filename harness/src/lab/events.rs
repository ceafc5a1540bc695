//! Faults on a running lab: the impairments of `plan.impairments` at
//! bring-up, and each planned event's steps when the checker reaches it.

use std::time::{Duration, Instant};

use super::{Lab, LabError};
use crate::kernel::netlink::Netlink;
use crate::kernel::{build, iptables, ipvs, netem, nft, KernelError};
use crate::plan::faults::EventStep;

impl Lab {
    /// Puts the planned netem qdiscs in place.
    pub fn apply_impairments(&self) -> Result<(), LabError> {
        for p in &self.plan.impairments {
            netem::apply(&self.ns[p.ns], p).map_err(LabError::Kernel)?;
        }
        Ok(())
    }

    /// Makes event `i` of the plan happen; returns how long it took.
    pub fn apply_event(&mut self, i: usize) -> Result<Duration, LabError> {
        let t = Instant::now();
        let Some(ev) = self.plan.events.get(i).cloned() else {
            return Err(LabError::Event(format!("no event #{i} in this lab")));
        };
        let fail = |e: String| LabError::Event(format!("event {} ({}): {e}", ev.name, ev.what));
        for step in &ev.steps {
            self.step(step).map_err(|e| fail(e.to_string()))?;
        }
        // Only once both ends are up does the kernel give them carrier
        // (and a real qdisc): wait for it where links came up.
        let mut woke: Vec<usize> = ev
            .steps
            .iter()
            .filter_map(|s| match s {
                EventStep::LinkUp { ns, .. } => Some(*ns),
                _ => None,
            })
            .collect();
        woke.dedup();
        for ns in woke {
            self.ns[ns]
                .run(|| -> Result<(), KernelError> {
                    build::wait_until_active(&mut Netlink::open()?)
                })
                .and_then(|r| r)
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(t.elapsed())
    }

    fn step(&mut self, step: &EventStep) -> Result<(), LabError> {
        let in_ns = |ns: usize, f: &(dyn Fn(&mut Netlink) -> Result<(), KernelError> + Sync)| {
            self.ns[ns]
                .run(|| -> Result<(), KernelError> {
                    let mut nl = Netlink::open()?;
                    f(&mut nl)
                })
                .and_then(|r| r)
                .map_err(|e| e.context(format_args!("in {}", self.plan.namespaces[ns].key)))
        };
        match step {
            EventStep::LinkDown { ns, ifname } => {
                in_ns(*ns, &|nl| nl.set_link(ifname, None, None, Some(false)))?
            }
            EventStep::LinkUp {
                ns,
                ifname,
                routes,
                neighs,
            } => in_ns(*ns, &|nl| {
                nl.set_link(ifname, None, None, Some(true))?;
                // Administrative down took these with it.
                routes.iter().try_for_each(|r| nl.replace_route(r))?;
                neighs.iter().try_for_each(|n| nl.add_neigh(n))
            })?,
            EventStep::Netem(p) => netem::apply(&self.ns[p.ns], p)?,
            EventStep::RestartPod { pod } => self.restart_pod(pod)?,
            EventStep::Routes { ns, del, add } => in_ns(*ns, &|nl| {
                del.iter().try_for_each(|r| nl.del_route(r))?;
                add.iter().try_for_each(|r| nl.replace_route(r))
            })?,
            EventStep::Neighs { ns, del, add } => in_ns(*ns, &|nl| {
                del.iter().try_for_each(|n| nl.del_neigh(&n.dev, n.ip))?;
                add.iter().try_for_each(|n| nl.add_neigh(n))
            })?,
            EventStep::Nft { ns, script } => nft::apply(&self.ns[*ns], script)?,
            EventStep::Iptables { ns, rules } => iptables::restore(&self.ns[*ns], rules)?,
            EventStep::Ipvs { ns, services } => self.ns[*ns]
                .run(|| -> Result<(), String> {
                    let mut t = ipvs::Ipvs::open().map_err(|e| e.to_string())?;
                    t.flush().map_err(|e| e.to_string())?;
                    t.program(services).map_err(|e| e.to_string())
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(LabError::Event)?,
        }
        Ok(())
    }
}
