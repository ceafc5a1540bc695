//! Turns one `from → to` question into packets and reports what happened:
//! verdict, the source address the server saw, who served, and the hops.

use crate::topology::PointId;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::lab::Lab;
use crate::plan::{EndpointKind, LabPlan, NsKind};
use crate::probe::{self, Capture, Hop, ProbeOutcome, ProbeSpec, TapPoint, Taps};
use crate::topology::expect::{parse_origin, parse_target, Target};
use crate::topology::model::{Proto, Verdict};

/// What the packets said.
#[derive(Debug, Clone)]
pub struct Observation {
    pub outcome: ProbeOutcome,
    /// Where the probe was aimed.
    pub dst: Option<(Ipv4Addr, u16)>,
    /// Request journey, as observation point ids (client node and server
    /// node added as `node/<n>` where the stack itself is an end).
    pub request: Vec<Hop>,
    pub reply: Vec<Hop>,
    /// The probe could not even be attempted (unknown endpoint, feature not
    /// implemented): a failure, never a verdict.
    pub error: Option<String>,
    /// How to show a hop id to a person: `eni/primary:<node>` reads better
    /// than `eni/eni-1a2b3c4d5e`.
    pub display: std::collections::BTreeMap<String, String>,
    /// The outcomes of the probes after the first when the expectation
    /// repeats (`repeat`, a `served_by` list, `sticky`); each from its own
    /// source port, without taps.
    pub repeats: Vec<ProbeOutcome>,
}

impl Observation {
    /// What an expectation observed when no packet was sent: its verdict and
    /// why, no hops.
    pub(crate) fn without_probe(verdict: crate::topology::model::Verdict, detail: String) -> Self {
        Observation {
            outcome: ProbeOutcome {
                verdict,
                ..ProbeOutcome::timeout(detail)
            },
            dst: None,
            request: vec![],
            reply: vec![],
            error: None,
            display: Default::default(),
            repeats: vec![],
        }
    }

    /// Every probe's outcome, the first one first.
    pub fn outcomes(&self) -> impl Iterator<Item = &ProbeOutcome> {
        std::iter::once(&self.outcome).chain(self.repeats.iter())
    }
}

impl Observation {
    /// Request then reply hop ids, in order.
    pub fn journey(&self) -> Vec<String> {
        self.request
            .iter()
            .chain(self.reply.iter())
            .map(|h| h.point.clone())
            .collect()
    }
}

/// Where a probe goes: address and port.
pub fn resolve_target(plan: &LabPlan, to: &str) -> Result<(Ipv4Addr, u16), String> {
    let target = parse_target(to)?;
    match target {
        Target::Pod { ns, name, port } => {
            let id = PointId::pod(ns, name);
            let ep = plan
                .endpoint(&id)
                .ok_or_else(|| pending_or_unknown(plan, &id))?;
            Ok((ep.ip, port.unwrap_or(0)))
        }
        Target::Ip { addr, port } => Ok((addr, port.unwrap_or(0))),
        Target::Service { .. } | Target::NodePort { .. } => {
            resolve_service_target(plan, to, &target)
        }
    }
}

/// `service/<ns>/<name>:<port>[@external-ip|@lb]` and `nodeport/<node>/<ns>/<name>`.
fn resolve_service_target(
    plan: &LabPlan,
    to: &str,
    target: &Target,
) -> Result<(Ipv4Addr, u16), String> {
    use crate::topology::expect::ServiceVia;
    let find = |ns: &str, name: &str| {
        plan.service(ns, name)
            .ok_or_else(|| format!("{to}: no service {ns}/{name} in this lab"))
    };
    match target {
        Target::Service {
            ns,
            name,
            port,
            via,
        } => {
            let svc = find(ns, name)?;
            let port = port
                .or_else(|| svc.ports.first().map(|p| p.port))
                .unwrap_or(0);
            let ip = match via {
                ServiceVia::ClusterIp => svc.cluster_ip.ok_or_else(|| {
                    format!("{to}: service {ns}/{name} is headless (no cluster IP)")
                })?,
                ServiceVia::ExternalIp => *svc
                    .external_ips
                    .first()
                    .ok_or_else(|| format!("{to}: service {ns}/{name} has no externalIPs"))?,
                ServiceVia::Lb => svc.lb_ip.ok_or_else(|| {
                    format!("{to}: service {ns}/{name} has no load balancer address")
                })?,
            };
            Ok((ip, port))
        }
        Target::NodePort { node, ns, name } => {
            let svc = find(ns, name)?;
            let np = svc
                .ports
                .iter()
                .find_map(|p| p.node_port)
                .ok_or_else(|| format!("{to}: service {ns}/{name} has no node port"))?;
            let ip =
                node_ip(plan, node).ok_or_else(|| format!("{to}: no node {node} in this lab"))?;
            Ok((ip, np))
        }
        _ => Err(format!("{to}: not a service target")),
    }
}

fn pending_or_unknown(plan: &LabPlan, id: &PointId) -> String {
    let id = id.to_string();
    let key = id.trim_start_matches("pod/");
    match plan.pending.iter().find(|p| p.pod == key) {
        Some(p) => format!("{id} is pending: {}", p.reason),
        None => format!("{id}: no such endpoint in this lab"),
    }
}

/// The namespace a probe starts from.
pub fn resolve_origin(plan: &LabPlan, from: &str) -> Result<usize, String> {
    let origin = parse_origin(from)?;
    let id = PointId::from(&origin);
    plan.endpoint(&id)
        .map(|e| e.ns)
        .ok_or_else(|| pending_or_unknown(plan, &id))
}

/// Runs one probe; with `taps`, also captures its journey.
pub fn observe(
    lab: &Lab,
    name: &str,
    from: &str,
    to: &str,
    proto: Proto,
    deadline: Duration,
    taps: bool,
) -> Observation {
    observe_captured(lab, name, from, to, proto, deadline, taps, false).0
}

/// As `observe`, also returning every frame the taps saw of this probe
/// (its client port or ICMP identifier, in either direction), in time order.
/// With `http`, the probe is an HTTP GET instead of the echo exchange.
#[allow(clippy::too_many_arguments)]
pub fn observe_captured(
    lab: &Lab,
    name: &str,
    from: &str,
    to: &str,
    proto: Proto,
    deadline: Duration,
    taps: bool,
    http: bool,
) -> (Observation, Vec<Capture>) {
    let plan = lab.plan();
    let failed = |e: String| Observation {
        error: Some(e.clone()),
        ..Observation::without_probe(crate::topology::model::Verdict::Timeout, e)
    };
    let client_ns = match resolve_origin(plan, from) {
        Ok(i) => i,
        Err(e) => return (failed(e), vec![]),
    };
    let (dst, port) = match resolve_target(plan, to) {
        Ok(t) => t,
        Err(e) => return (failed(e), vec![]),
    };
    if port == 0 && proto != Proto::Icmp {
        return (
            failed(format!("{to}: a {proto:?} probe needs a port")),
            vec![],
        );
    }
    let src_port = lab.next_probe_port();
    let spec = ProbeSpec {
        id: format!("{}:{name}", lab.id()),
        proto,
        dst,
        port,
        src_port: Some(src_port),
        deadline,
        http,
    };
    let tapset = if taps { open_taps(lab) } else { Ok(None) };
    let tapset = match tapset {
        Ok(t) => t,
        Err(e) => return (failed(format!("opening taps: {e}")), vec![]),
    };
    let outcome = probe::probe(lab.netns(client_ns), &spec);
    let mut frames = match tapset {
        Some(t) => {
            // Let the last frames of the exchange reach the taps.
            std::thread::sleep(Duration::from_millis(20));
            t.stop()
        }
        None => vec![],
    };
    let (mut request, mut reply) = probe::hops(&frames, proto, src_port);
    // The first packet never left: the kernel held it for ARP. Show where
    // the client's ARP requests went instead (and keep them for pcaps).
    let client_ip = plan
        .endpoints
        .iter()
        .find(|e| e.ns == client_ns)
        .map(|e| e.ip);
    let arp_of = match client_ip {
        Some(ip) if request.is_empty() => {
            request = probe::arp_hops(&frames, ip);
            Some(ip)
        }
        _ => None,
    };
    frames.retain(|c| match c.arp {
        Some(_) => arp_of == Some(c.src),
        None => c.sport == src_port || c.dport == src_port || c.icmp_id == Some(src_port),
    });
    if taps {
        add_stack_ends(plan, client_ns, &outcome, &mut request, &mut reply);
    }
    let display = request
        .iter()
        .chain(reply.iter())
        .map(|h| (h.point.clone(), display_point(plan, &h.point)))
        .collect();
    let o = Observation {
        outcome,
        dst: Some((dst, port)),
        request,
        reply,
        error: None,
        display,
        repeats: vec![],
    };
    (o, frames)
}

/// A hop id as a person reads it: the first alias where there is one.
pub fn display_point(plan: &LabPlan, id: &str) -> String {
    match plan
        .points
        .iter()
        .find(|p| p.id == id)
        .and_then(|p| p.aliases.first())
    {
        Some(alias) => alias.to_string(),
        None => id.to_string(),
    }
}

/// A node's own stack is not a tap point: add `node/<n>` where the client or
/// the server is the node itself (or a hostNetwork pod on it).
fn add_stack_ends(
    plan: &LabPlan,
    client_ns: usize,
    outcome: &ProbeOutcome,
    request: &mut Vec<Hop>,
    reply: &mut Vec<Hop>,
) {
    let node_of_ns = |ns: usize| -> Option<String> {
        let n = &plan.namespaces[ns];
        (n.kind == Some(NsKind::Node)).then(|| n.key.clone())
    };
    let stub = |point: String| Hop {
        point,
        vlan: None,
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        encap: None,
    };
    if let Some(node) = node_of_ns(client_ns) {
        request.insert(0, stub(node.clone()));
        // A probe that timed out got nothing back: no reply reached it.
        if outcome.verdict != Verdict::Timeout {
            reply.push(stub(node));
        }
    }
    let server_ns = outcome
        .served_by
        .as_deref()
        .and_then(|s| plan.endpoint(s))
        .map(|e| e.ns);
    if let Some(node) = server_ns.and_then(node_of_ns) {
        request.push(stub(node.clone()));
        reply.insert(0, stub(node));
    }
}

fn open_taps(lab: &Lab) -> Result<Option<Taps>, String> {
    let plan = lab.plan();
    let mut per_ns: Vec<Vec<TapPoint>> = (0..plan.namespaces.len()).map(|_| Vec::new()).collect();
    for p in &plan.points {
        per_ns[p.ns].extend(tap_points(plan, p));
    }
    let targets: Vec<_> = per_ns
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, v)| (lab.netns(i), v))
        .collect();
    Taps::open(&targets).map(Some).map_err(|e| e.to_string())
}

/// What to tap for observation point `p`: its interface (or its whole
/// namespace); for a member ENI whose VLAN ends in an 802.1Q device of its
/// hypervisor, that device too (its frames there are the member's).
pub fn tap_points(plan: &LabPlan, p: &crate::plan::ObsPoint) -> Vec<TapPoint> {
    let mut v = vec![TapPoint {
        id: p.id.to_string(),
        ifname: p.ifname.clone(),
    }];
    if let (Some(vlan), true) = (p.vlan, plan.backends.vlan_devices) {
        v.push(TapPoint {
            id: p.id.to_string(),
            ifname: Some(crate::plan::agent::trunking::hv_vlan_link(vlan)),
        });
    }
    v
}

/// The canonical observation point id for an id or alias a user wrote.
pub fn canonical_point(plan: &LabPlan, id: &str) -> String {
    plan.points
        .iter()
        .find(|p| p.id == id || p.aliases.iter().any(|a| a == id))
        .map(|p| p.id.to_string())
        .unwrap_or_else(|| id.to_string())
}

/// `node/<n>`'s primary address, for `source: node/<n>`.
pub fn node_ip(plan: &LabPlan, node: &str) -> Option<Ipv4Addr> {
    plan.endpoints
        .iter()
        .find(|e| e.kind == EndpointKind::Node && e.id == PointId::node(node))
        .map(|e| e.ip)
}
