//! Why an expectation failed, from the packets: the probe is sent once more
//! with every tap open and the rule counters read before and after, so a
//! failing row says which hops the request and reply really crossed, the
//! last observation point that saw the packet, the security-group, NAT and
//! filter rules it moved, and what the kernel itself would do with the
//! packet where it went missing (`ip route get`, with the rule that chose
//! the table). The same as `cnlab explain`, for every failing row.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::counters::{self, Moved};
use super::observe::{display_point, observe_captured};
use super::show_journey;
use crate::kernel::fib::{self, Decision, Lookup};
use crate::lab::Lab;
use crate::probe::{Capture, Hop};
use crate::topology::model::{Expectation, Verdict};

/// The last place the packet was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSeen {
    /// Observation point id, as a person reads it.
    pub point: String,
    /// Plan namespace key (`vpc`, `node/node-a`).
    pub ns: String,
    pub ifname: String,
    /// Leaving this namespace (true) or arriving in it.
    pub outgoing: bool,
    /// `true` when it was the reply that went missing.
    pub reply: bool,
}

/// What a second, fully tapped probe showed.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub verdict: Verdict,
    pub detail: String,
    pub request: Vec<Hop>,
    pub reply: Vec<Hop>,
    pub display: BTreeMap<String, String>,
    pub last_seen: Option<LastSeen>,
    /// Rule counters the probe moved (namespace shown as a point).
    pub rules: Vec<Moved>,
    /// Where the packet went missing: that namespace's key and the kernel's
    /// decision there.
    pub route: Option<(String, Decision)>,
    /// What could not be found out (counters unreadable, …).
    pub notes: Vec<String>,
}

/// Probes `e` once more, taps open, counters read around it. Run it while
/// no other probe is in flight: counters are per lab, not per probe.
pub fn explain(lab: &Lab, e: &Expectation, deadline: Duration) -> Explanation {
    let plan = lab.plan();
    let mut notes = Vec::new();
    let before = counters::snapshot(lab)
        .map_err(|err| notes.push(format!("rule counters unreadable: {err}")))
        .ok();
    let (o, frames) = observe_captured(
        lab,
        &format!("{}-explain", e.name),
        &e.from,
        &e.to,
        e.proto,
        deadline,
        true,
        e.http_status.is_some(),
    );
    let rules = match (before, counters::snapshot(lab)) {
        (Some((b, _)), Ok((a, verdicts))) => counters::moved(&b, &a, &verdicts)
            .into_iter()
            .map(|mut m| {
                m.ns = display_point(plan, &m.ns);
                m
            })
            .collect(),
        (Some(_), Err(err)) => {
            notes.push(format!("rule counters unreadable: {err}"));
            vec![]
        }
        _ => vec![],
    };
    if let Some(err) = &o.error {
        notes.push(err.clone());
    }
    let last_seen = last_seen(lab, &o.request, &o.reply, &frames);
    let route = if o.outcome.verdict == Verdict::Timeout && o.error.is_none() {
        missing_at(lab, e, &o.request, &frames, o.dst.map(|d| d.0))
    } else {
        None
    };
    let route = match route {
        Some((ns, Ok(d))) => Some((ns, d)),
        Some((ns, Err(err))) => {
            notes.push(format!("route decision at {ns}: {err}"));
            None
        }
        None => None,
    };
    Explanation {
        verdict: o.outcome.verdict,
        detail: o.outcome.detail.clone(),
        request: o.request.clone(),
        reply: o.reply.clone(),
        display: o.display.clone(),
        last_seen,
        rules,
        route,
        notes,
    }
}

/// The capture of the last hop (of the reply if one came back, else of the
/// request).
fn last_seen(lab: &Lab, request: &[Hop], reply: &[Hop], frames: &[Capture]) -> Option<LastSeen> {
    let (hop, is_reply) = match reply.last() {
        Some(h) => (h, true),
        None => (request.last()?, false),
    };
    let c = frames
        .iter()
        .rev()
        .find(|c| c.point == hop.point && c.src == hop.src && c.dst == hop.dst)
        .or_else(|| frames.iter().rev().find(|c| c.point == hop.point))?;
    Some(LastSeen {
        point: display_point(lab.plan(), &hop.point),
        ns: ns_key(lab, &c.ns).unwrap_or_else(|| c.ns.clone()),
        ifname: c.ifname.clone(),
        outgoing: c.outgoing,
        reply: is_reply,
    })
}

/// Plan key of the kernel namespace `name`.
fn ns_key(lab: &Lab, name: &str) -> Option<String> {
    ns_index(lab, name).map(|i| lab.plan().namespaces[i].key.clone())
}

fn ns_index(lab: &Lab, name: &str) -> Option<usize> {
    (0..lab.plan().namespaces.len()).find(|i| lab.netns(*i).name() == name)
}

/// The kernel's route decision where the request was last seen: for a
/// packet that arrived there, as a forwarded packet from its interface; for
/// one that left, as it was when it entered that namespace (or was sent by
/// it). With no capture at all, in the client's own namespace.
fn missing_at(
    lab: &Lab,
    e: &Expectation,
    request: &[Hop],
    frames: &[Capture],
    dst: Option<std::net::Ipv4Addr>,
) -> Option<(String, Result<Decision, String>)> {
    let plan = lab.plan();
    let last = request.last().and_then(|h| {
        frames
            .iter()
            .rev()
            .find(|c| c.point == h.point && c.dst == h.dst)
    });
    let (ns, lookup) = match last {
        Some(c) => {
            let ns = ns_index(lab, &c.ns)?;
            let arrived = if c.outgoing {
                frames
                    .iter()
                    .rfind(|f| f.ns == c.ns && !f.outgoing && f.dst == c.dst)
            } else {
                Some(c)
            };
            let src = Some(c.src);
            let (iif, mark) = arrived_as(lab, ns, arrived);
            (
                ns,
                Lookup {
                    dst: c.dst,
                    src,
                    iif,
                    mark,
                },
            )
        }
        None => {
            let ns = super::observe::resolve_origin(plan, &e.from).ok()?;
            (
                ns,
                Lookup {
                    dst: dst?,
                    src: None,
                    iif: None,
                    mark: None,
                },
            )
        }
    };
    let key = plan.namespaces[ns].key.clone();
    let decided = lab
        .netns(ns)
        .run(move || fib::route_get(&lookup))
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    Some((key, decided))
}

/// A frame that arrived tagged on a hypervisor's trunk is routed as its
/// member ENI's VLAN: from the 802.1Q device `t<vlan>`, or (eBPF) from the
/// trunk with the VLAN id in its mark, as the demux program leaves it.
/// Returns the lookup's input interface and mark for the frame that
/// `arrived` in namespace `ns` (none: the namespace sent it itself).
fn arrived_as(lab: &Lab, ns: usize, arrived: Option<&Capture>) -> (Option<String>, Option<u32>) {
    let Some(c) = arrived else {
        return (None, None);
    };
    let plan = lab.plan();
    let iif = Some(c.ifname.clone());
    let in_hv = plan.namespaces[ns].kind == Some(crate::plan::NsKind::Hypervisor);
    let on_trunk = c.ifname == crate::plan::agent::trunking::HV_TRUNK_SIDE;
    match (c.vlan, in_hv && on_trunk) {
        (Some(v), true) if plan.backends.vlan_devices => {
            (Some(crate::plan::agent::trunking::hv_vlan_link(v)), None)
        }
        (Some(v), true) => (iif, Some(u32::from(v))),
        _ => (iif, None),
    }
}

impl Explanation {
    /// The explanation as indented lines for the table and JUnit bodies.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let o = crate::check::Observation {
            request: self.request.clone(),
            reply: self.reply.clone(),
            display: self.display.clone(),
            ..crate::check::Observation::without_probe(self.verdict, String::new())
        };
        out.push(format!("packets: {}", show_journey(&o)));
        if let Some(l) = &self.last_seen {
            out.push(format!(
                "last seen: {} ({} {} in {}){}",
                l.point,
                if l.outgoing {
                    "leaving on"
                } else {
                    "arriving on"
                },
                l.ifname,
                l.ns,
                if l.reply {
                    ": the reply went no further"
                } else {
                    ": the request went no further"
                }
            ));
        } else {
            out.push("last seen: no tap saw the packet".into());
        }
        if let Some((ns, d)) = &self.route {
            out.push(format!("kernel at {ns}: {d}"));
        }
        if self.rules.is_empty() {
            out.push("rules: no commented nft rule counted this probe".into());
        }
        for m in &self.rules {
            let verdict = m
                .verdict
                .as_deref()
                .map(|v| format!(" → {v}"))
                .unwrap_or_default();
            out.push(format!(
                "rule: {}  {}{verdict} ({} packet{})",
                m.ns,
                m.rule,
                m.packets,
                if m.packets == 1 { "" } else { "s" }
            ));
        }
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let hop = |h: &Hop| json!({"point": h.point, "at": h.label(&h.point), "vlan": h.vlan, "src": h.src.to_string(), "dst": h.dst.to_string(), "encap": h.encap});
        json!({
            "reprobe": self.verdict.as_str(),
            "detail": self.detail,
            "request_path": self.request.iter().map(hop).collect::<Vec<_>>(),
            "reply_path": self.reply.iter().map(hop).collect::<Vec<_>>(),
            "last_seen": self.last_seen.as_ref().map(|l| json!({
                "point": l.point, "namespace": l.ns, "interface": l.ifname,
                "outgoing": l.outgoing, "reply": l.reply,
            })),
            "route": self.route.as_ref().map(|(ns, d)| json!({
                "namespace": ns,
                "text": d.to_string(),
                "dst": d.lookup.dst.to_string(),
                "src": d.lookup.src.map(|s| s.to_string()),
                "iif": d.lookup.iif,
                "type": d.kind,
                "dev": d.dev,
                "via": d.via.map(|v| v.to_string()),
                "table": d.table,
                "rule": d.rule,
                "error": d.error,
            })),
            "rules": self.rules.iter().map(|m| json!({
                "at": m.ns, "rule": m.rule, "packets": m.packets, "verdict": m.verdict,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}
