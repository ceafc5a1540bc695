//! `impairments:` and `events:` as kernel changes, decided up front.
//!
//! Link faults name the veth pair at an observation point: impairments
//! act on both ends, link down/up on the interface at the point (its peer
//! loses carrier). Events that change what the cluster is (an endpoint
//! terminating, a route entry removed) are planned by planning the cluster
//! again with the change made, and keeping the difference: the routes,
//! neighbours and rulesets that differ. Anything else differing is an
//! error, as the lab could not apply it to running namespaces.

use serde::{Deserialize, Serialize};

use super::agent::plugins::CniAdds;
use super::{IpvsService, LabPlan, NeighPlan, NetemPlan, NsIdx, NsPlan, PlanError, RoutePlan};
use crate::plan::Backends;
use crate::topology::model::{Event, EventAction, Impairment, Netem, RouteAction};
use crate::topology::Resolved;

/// One event as the changes it makes, in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventPlan {
    pub name: String,
    /// What happens, for reports (`link_down eth0/n1`).
    pub what: String,
    pub steps: Vec<EventStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EventStep {
    /// Administratively down: the kernel drops the link's routes and
    /// neighbours, and the peer loses carrier.
    LinkDown {
        ns: NsIdx,
        ifname: String,
    },
    /// Up again, and the routes and neighbours the kernel dropped with it
    /// back (replaced: whatever survived stays as it is).
    LinkUp {
        ns: NsIdx,
        ifname: String,
        routes: Vec<RoutePlan>,
        neighs: Vec<NeighPlan>,
    },
    Netem(NetemPlan),
    /// `Lab::restart_pod`: new namespace, plumbing and servers, same address.
    RestartPod {
        pod: String,
    },
    Routes {
        ns: NsIdx,
        del: Vec<RoutePlan>,
        add: Vec<RoutePlan>,
    },
    Neighs {
        ns: NsIdx,
        del: Vec<NeighPlan>,
        add: Vec<NeighPlan>,
    },
    /// One nft transaction: the old tables deleted, the new ruleset added.
    Nft {
        ns: NsIdx,
        script: String,
    },
    /// iptables-restore input replacing kube-proxy's chains.
    Iptables {
        ns: NsIdx,
        rules: String,
    },
    /// The IPVS table flushed and programmed again.
    Ipvs {
        ns: NsIdx,
        services: Vec<IpvsService>,
    },
}

fn err(path: String, reason: impl Into<String>) -> PlanError {
    PlanError::Fault {
        path,
        reason: reason.into(),
    }
}

/// Fills `plan.impairments` and `plan.events` from the topology.
pub fn add(
    r: &Resolved,
    backends: Backends,
    adds: &CniAdds,
    plan: &mut LabPlan,
) -> Result<(), PlanError> {
    for (i, imp) in r.topo.impairments.iter().enumerate() {
        plan.impairments
            .extend(netem(plan, imp, format!("impairments[{i}]"))?);
    }
    // The cluster as each event leaves it; `current` is the plan of `now`.
    let mut now = r.clone();
    now.topo.events.clear();
    now.topo.impairments.clear();
    let mut current = plan.clone();
    let mut events = Vec::new();
    for (i, ev) in r.topo.events.iter().enumerate() {
        let path = format!("events[{i}].{}", ev.action.key());
        let steps = match &ev.action {
            // The interface at the point only: its peer loses carrier but
            // keeps its routes, as the far side of a pulled cable does.
            EventAction::LinkDown(p) => link_ends(&current, p, &path)?
                .into_iter()
                .take(1)
                .map(|(ns, ifname)| EventStep::LinkDown { ns, ifname })
                .collect(),
            EventAction::LinkUp(p) => link_ends(&current, p, &path)?
                .into_iter()
                .take(1)
                .map(|(ns, ifname)| link_up(&current.namespaces[ns], ns, ifname))
                .collect(),
            EventAction::Impair(imp) => netem(&current, imp, path)?
                .into_iter()
                .map(EventStep::Netem)
                .collect(),
            EventAction::PodsRestarted(node) => restarts(&current, node, &path)?,
            EventAction::EndpointTerminating(pod) => {
                terminating(&mut now, pod, &path)?;
                replan(&now, backends, adds, &mut current, &path)?
            }
            EventAction::RouteEntryRemoved(dest) => {
                remove_route_entry(&mut now, &current, *dest, &path)?;
                replan(&now, backends, adds, &mut current, &path)?
            }
        };
        events.push(EventPlan {
            name: ev.name.clone(),
            what: describe(ev),
            steps,
        });
    }
    plan.events = events;
    Ok(())
}

/// `link_down eth0/n1`.
pub fn describe(ev: &Event) -> String {
    let arg = match &ev.action {
        EventAction::LinkDown(p)
        | EventAction::LinkUp(p)
        | EventAction::PodsRestarted(p)
        | EventAction::EndpointTerminating(p) => p.clone(),
        EventAction::RouteEntryRemoved(d) => d.to_string(),
        EventAction::Impair(i) => format!("{} {}", i.link, netem_words(&i.netem).join(" ")),
    };
    format!("{} {arg}", ev.action.key())
}

/// tc's words for `n` (`delay 20ms loss 5%`); empty: no impairment.
pub fn netem_words(n: &Netem) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(d) = n.delay_ms {
        w.push(format!("delay {d}ms"));
        if let Some(j) = n.jitter_ms {
            w.push(format!("{j}ms"));
        }
    }
    if let Some(l) = n.loss {
        w.push(format!("loss {l}%"));
    }
    if let Some(d) = n.duplicate {
        w.push(format!("duplicate {d}%"));
    }
    if let Some(r) = n.reorder {
        w.push(format!("reorder {r}%"));
    }
    if let Some(r) = &n.rate {
        w.push(format!("rate {r}"));
    }
    w
}

fn netem(plan: &LabPlan, imp: &Impairment, path: String) -> Result<Vec<NetemPlan>, PlanError> {
    let stand_in = !plan.backends.netem;
    let n = &imp.netem;
    if stand_in {
        // Without netem nothing in this kernel holds a packet back.
        let timed = [
            ("delay_ms", n.delay_ms.is_some_and(|d| d > 0)),
            ("jitter_ms", n.jitter_ms.is_some_and(|d| d > 0)),
            ("reorder", n.reorder.is_some_and(|d| d > 0)),
        ];
        if let Some((key, _)) = timed.iter().find(|(_, set)| *set) {
            return Err(err(
                format!("{path}.{key}"),
                "needs the kernel's netem qdisc (CONFIG_NET_SCH_NETEM); this lab runs its stand-in (`cnlab doctor`: netem STAND-IN, as on a kernel without netem or with --backend portable), which does loss, duplicate and rate only",
            ));
        }
    }
    Ok(link_ends(plan, &imp.link, &format!("{path}.link"))?
        .into_iter()
        .map(|(ns, ifname)| NetemPlan {
            ns,
            ifname,
            stand_in,
            netem: imp.netem.clone(),
        })
        .collect())
}

/// Both ends of the link at observation point `point`: its interface and,
/// for a veth, the peer.
pub fn link_ends(
    plan: &LabPlan,
    point: &str,
    path: &str,
) -> Result<Vec<(NsIdx, String)>, PlanError> {
    let p = plan
        .points
        .iter()
        .find(|p| p.id == point || p.aliases.iter().any(|a| a == point))
        .ok_or_else(|| {
            err(
                path.into(),
                format!("{point}: no such observation point in this lab"),
            )
        })?;
    let ifname = match (&p.ifname, point.starts_with("pod/")) {
        (Some(i), _) => i.clone(),
        // A pod's point is its whole namespace; its link is eth0.
        (None, true) => "eth0".to_string(),
        (None, false) => {
            return Err(err(
                path.into(),
                format!(
                    "{point} is not a link: name one of {}",
                    crate::topology::validate::LINK_FORMS
                ),
            ))
        }
    };
    let mut ends = vec![(p.ns, ifname.clone())];
    for v in &plan.veths {
        if v.a.ns == p.ns && v.a.name == ifname {
            ends.push((v.b.ns, v.b.name.clone()));
        } else if v.b.ns == p.ns && v.b.name == ifname {
            ends.push((v.a.ns, v.a.name.clone()));
        }
    }
    Ok(ends)
}

fn link_up(n: &NsPlan, ns: NsIdx, ifname: String) -> EventStep {
    EventStep::LinkUp {
        routes: n
            .routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some(ifname.as_str()))
            .cloned()
            .collect(),
        neighs: n
            .neighs
            .iter()
            .filter(|x| x.dev == ifname)
            .cloned()
            .collect(),
        ns,
        ifname,
    }
}

fn restarts(plan: &LabPlan, node: &str, path: &str) -> Result<Vec<EventStep>, PlanError> {
    let steps: Vec<EventStep> = plan
        .endpoints
        .iter()
        .filter(|e| {
            matches!(e.id, crate::topology::PointId::Pod { .. }) && e.node.as_deref() == Some(node)
        })
        // hostNetwork pods share the node's namespace: nothing to recreate.
        .filter(|e| plan.ns_index(&e.id).is_some())
        .map(|e| EventStep::RestartPod {
            pod: e.id.to_string(),
        })
        .collect();
    if steps.is_empty() {
        return Err(err(
            path.into(),
            format!("node {node} runs no pod with its own network namespace"),
        ));
    }
    Ok(steps)
}

/// The pod is being deleted: `deletionTimestamp` set, and in pasted
/// EndpointSlices its endpoint not ready, still serving, terminating.
fn terminating(r: &mut Resolved, pod: &str, path: &str) -> Result<(), PlanError> {
    let key = pod.strip_prefix("pod/").unwrap_or(pod);
    let p = r
        .pods
        .iter_mut()
        .find(|p| format!("{}/{}", p.metadata.ns(), p.metadata.name) == key)
        .ok_or_else(|| err(path.into(), format!("{pod}: no such pod")))?;
    p.metadata.deletion_timestamp = Some("cnlab event".into());
    let (ns, name, ip) = (
        p.metadata.ns().to_string(),
        p.metadata.name.clone(),
        p.status.pod_ip,
    );
    for s in &mut r.endpoint_slices {
        for e in &mut s.endpoints {
            let by_ref = e.target_ref.as_ref().is_some_and(|t| {
                t.name.as_deref() == Some(name.as_str())
                    && t.namespace.as_deref().unwrap_or(s.metadata.ns()) == ns
            });
            let by_ip = ip.is_some_and(|ip| e.addresses.contains(&ip));
            if by_ref || by_ip {
                let serving = e.conditions.serving.or(e.conditions.ready).unwrap_or(true);
                e.conditions.ready = Some(false);
                e.conditions.serving = Some(serving);
                e.conditions.terminating = Some(true);
            }
        }
    }
    Ok(())
}

/// The VPC's entry for `dest` goes: a customer's extra entry leaves the
/// table, the cloud controller's (or a customer's in its place) is marked
/// removed.
fn remove_route_entry(
    r: &mut Resolved,
    plan: &LabPlan,
    dest: ipnet::Ipv4Net,
    path: &str,
) -> Result<(), PlanError> {
    if !plan.route_entries.iter().any(|e| e.dest == dest) {
        let have: Vec<String> = plan
            .route_entries
            .iter()
            .map(|e| e.dest.to_string())
            .collect();
        return Err(err(
            path.into(),
            format!(
                "the VPC route table has no entry for {dest} (it has: {})",
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                }
            ),
        ));
    }
    let entries = &mut r.topo.vpc.route_entries;
    let extra = entries
        .iter()
        .any(|e| e.dest == dest && e.action == RouteAction::Add);
    entries.retain(|e| e.dest != dest);
    if !extra {
        entries.push(crate::topology::model::RouteEntry {
            dest,
            next_hop: String::new(),
            action: RouteAction::Remove,
        });
    }
    Ok(())
}

/// Plans `now` and returns what differs from `current` as steps; `current`
/// becomes the new plan.
fn replan(
    now: &Resolved,
    backends: Backends,
    adds: &CniAdds,
    current: &mut LabPlan,
    path: &str,
) -> Result<Vec<EventStep>, PlanError> {
    let mut after = super::plan_cni(now, backends, adds)?;
    let same_shape = after.namespaces.len() == current.namespaces.len()
        && after.veths == current.veths
        && after
            .namespaces
            .iter()
            .zip(&current.namespaces)
            .all(|(a, b)| a.key == b.key);
    if !same_shape {
        return Err(err(
            path.into(),
            "the cluster after this event has other namespaces or links; the lab can only change routes, neighbours and rules of a running lab",
        ));
    }
    let mut steps = Vec::new();
    for (ns, (b, a)) in current.namespaces.iter().zip(&after.namespaces).enumerate() {
        fn fixed(n: &NsPlan) -> impl PartialEq + '_ {
            (
                &n.links,
                &n.link_settings,
                &n.addrs,
                &n.rules,
                &n.fdbs,
                &n.sysctls,
                &n.servers,
                &n.tc,
                &n.adopted_links,
            )
        }
        if fixed(a) != fixed(b) {
            return Err(err(
                path.into(),
                format!(
                    "{}: the event changes links, addresses, rules, sysctls or servers, which the lab cannot change in a running namespace",
                    a.key
                ),
            ));
        }
        let gone = |x: &[RoutePlan], y: &[RoutePlan]| -> Vec<RoutePlan> {
            x.iter().filter(|r| !y.contains(r)).cloned().collect()
        };
        let (del, add) = (gone(&b.routes, &a.routes), gone(&a.routes, &b.routes));
        if !del.is_empty() || !add.is_empty() {
            steps.push(EventStep::Routes { ns, del, add });
        }
        let gone_n = |x: &[NeighPlan], y: &[NeighPlan]| -> Vec<NeighPlan> {
            x.iter().filter(|n| !y.contains(n)).cloned().collect()
        };
        let (del, add) = (gone_n(&b.neighs, &a.neighs), gone_n(&a.neighs, &b.neighs));
        if !del.is_empty() || !add.is_empty() {
            steps.push(EventStep::Neighs { ns, del, add });
        }
        if a.nft != b.nft {
            let mut script = String::new();
            for t in b.nft.as_deref().map(nft_tables).unwrap_or_default() {
                script.push_str(&format!("delete table {t}\n"));
            }
            script.push_str(a.nft.as_deref().unwrap_or_default());
            steps.push(EventStep::Nft { ns, script });
        }
        if a.iptables != b.iptables {
            steps.push(EventStep::Iptables {
                ns,
                rules: a.iptables.clone().unwrap_or_default(),
            });
        }
        if a.ipvs != b.ipvs {
            steps.push(EventStep::Ipvs {
                ns,
                services: a.ipvs.clone(),
            });
        }
    }
    after.impairments = std::mem::take(&mut current.impairments);
    *current = after;
    Ok(steps)
}

/// `family name` of each `table` an nft script declares.
pub fn nft_tables(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("table "))
        .map(|rest| rest.trim_end_matches('{').trim().to_string())
        .collect()
}
