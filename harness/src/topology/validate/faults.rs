//! `impairments:`, `events:` and `expect[].after`: every link named is a
//! link, every event does something this topology has, every `after`
//! names an event.

use super::V;
use crate::topology::expect::{parse_target, Target};
use crate::topology::lines::{is_within, join_index, join_key};
use crate::topology::model::{Cni, EventAction, Impairment};
use crate::topology::PointId;
use std::collections::HashMap;

/// The point kinds `link:` accepts, for messages.
pub const LINK_FORMS: &str =
    "eth0/<node>, host-veth/<ns>/<pod>, pod/<ns>/<pod>, trunk/<node> or node/<node>:<ifname>";

impl V<'_> {
    pub(super) fn faults(&mut self) {
        let r = self.r;
        for (i, imp) in r.topo.impairments.iter().enumerate() {
            let path = join_index("impairments", i);
            if self.any_broken_within(&path) {
                continue;
            }
            self.impairment(&path, imp, false);
        }
        let mut names: HashMap<&str, String> = HashMap::new();
        for (i, ev) in r.topo.events.iter().enumerate() {
            let path = join_index("events", i);
            if self.any_broken_within(&path) {
                continue;
            }
            let at_name = join_key(&path, "name");
            if ev.name.trim().is_empty() {
                self.err(&at_name, "the event needs a name");
            } else if let Some(first) = names.get(ev.name.as_str()) {
                let first = self.place(first);
                self.err(
                    &at_name,
                    format!("event name {:?} is used twice (first at {first})", ev.name),
                );
            } else {
                names.insert(ev.name.as_str(), at_name.clone());
            }
            let at = join_key(&path, ev.action.key());
            match &ev.action {
                EventAction::LinkDown(p) | EventAction::LinkUp(p) => self.link(&at, p),
                EventAction::PodsRestarted(n) => self.need_node(&at, n),
                EventAction::EndpointTerminating(p) => match parse_target(p) {
                    Ok(Target::Pod {
                        ns,
                        name,
                        port: None,
                    }) => self.need_pod(&at, &ns, &name),
                    _ => self.err(&at, format!("{p:?}: expected pod/<ns>/<name>")),
                },
                // Which entries exist is known once the cloud controller's
                // are planned: the planner checks it.
                EventAction::RouteEntryRemoved(_) => {}
                EventAction::Impair(imp) => self.impairment(&at, imp, true),
            }
            let replans = matches!(
                ev.action,
                EventAction::EndpointTerminating(_) | EventAction::RouteEntryRemoved(_)
            );
            let plugins =
                r.topo.cluster.cni == Cni::Plugins || r.topo.cluster.cni_plugins.is_some();
            if replans && plugins {
                self.err(
                    &at,
                    "not with CNI plugins: pod addresses come from the plugins at bring-up, and the lab cannot plan the cluster again without running them",
                );
            }
        }
        for (i, e) in r.topo.expect.iter().enumerate() {
            let at = join_key(&join_index("expect", i), "after");
            let Some(after) = &e.after else { continue };
            if self.ok(&at) && !names.contains_key(after.as_str()) {
                let known: Vec<&str> = r.topo.events.iter().map(|e| e.name.as_str()).collect();
                let msg = if known.is_empty() {
                    format!("after {after:?}: the topology has no events")
                } else {
                    format!(
                        "after {after:?}: no such event (events: {})",
                        known.join(", ")
                    )
                };
                self.err(&at, msg);
            }
        }
    }

    /// Whether some value at or under `path` could not be read.
    fn any_broken_within(&self, path: &str) -> bool {
        self.broken.iter().any(|b| is_within(b, path))
    }

    fn impairment(&mut self, path: &str, imp: &Impairment, lifting_allowed: bool) {
        self.link(&join_key(path, "link"), &imp.link);
        let n = &imp.netem;
        if n.jitter_ms.is_some() && n.delay_ms.is_none() {
            self.err(&join_key(path, "jitter_ms"), "jitter needs delay_ms");
        }
        if n.reorder.is_some_and(|r| r > 0) && n.delay_ms.is_none_or(|d| d == 0) {
            self.err(
                &join_key(path, "reorder"),
                "reordering needs delay_ms (the packets not reordered wait that long)",
            );
        }
        let sets_nothing = n.delay_ms.is_none()
            && n.loss.is_none()
            && n.duplicate.is_none()
            && n.reorder.is_none()
            && n.rate.is_none();
        if sets_nothing && !lifting_allowed {
            self.err(
                path,
                "the impairment sets nothing: give delay_ms, loss, duplicate, reorder or rate",
            );
        }
    }

    /// `p` names a link (an observation point with an interface).
    fn link(&mut self, path: &str, p: &str) {
        if !self.ok(path) {
            return;
        }
        match p.parse::<PointId>() {
            Ok(
                PointId::Eth0(_)
                | PointId::HostVeth { .. }
                | PointId::Pod { .. }
                | PointId::Trunk(_)
                | PointId::NodeIf { .. },
            ) => self.point(path, p),
            Ok(_) => self.err(
                path,
                format!("{p:?} is not a link: name one of {LINK_FORMS}"),
            ),
            Err(e) => self.err(path, e),
        }
    }
}
