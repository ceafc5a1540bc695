//! Expectations against observations: every verdict comes from a probe.

pub mod counters;
pub mod explain;
pub mod file;
pub mod input;
pub mod observe;
pub mod pcap;
pub mod progress;
pub mod repeat;
pub mod report;
pub mod runner;
pub mod steps;
pub mod style;

use crate::topology::PointId;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::plan::LabPlan;
use crate::topology::expect::{parse_source, SourceExpect};
use crate::topology::model::{Expectation, Proto, Verdict};
pub use observe::{observe, Observation};

pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(1500);

/// One expectation, what was observed, and every way they differ.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub expect: Expectation,
    pub observed: Observation,
    /// Empty when the expectation holds.
    pub failures: Vec<String>,
    pub elapsed: Duration,
    /// `Some(why)` when the expectation's `when` does not match this lab:
    /// no probe ran, reported as `n/a` (never counted as passed).
    pub not_applicable: Option<String>,
    /// For a failing probe: what a second probe with every tap open showed.
    pub explanation: Option<explain::Explanation>,
}

impl CheckResult {
    /// Nothing failed (true for a not-applicable expectation too, so it
    /// never fails a run; reports show it as `n/a`, not as passed).
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn is_na(&self) -> bool {
        self.not_applicable.is_some()
    }
}

/// Why `e` does not apply to this lab, if it does not (`expect[].when`).
pub fn not_applicable(plan: &LabPlan, e: &Expectation) -> Result<Option<String>, String> {
    let Some(w) = &e.when else { return Ok(None) };
    let cluster = crate::topology::model::Cluster {
        kubernetes: plan.kubernetes.clone(),
        cni: plan.cni,
        proxy: plan.proxy,
        ..Default::default()
    };
    Ok((!w.matches(&cluster)?).then(|| format!("applies only when {}", w.describe())))
}

/// How `run_with` records what it saw.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write one pcapng per probe into this directory (`check --pcap`),
    /// files named after `topology` and the expectation.
    pub pcap: Option<std::path::PathBuf>,
    pub topology: String,
}

/// Checks expectations against a live lab, `parallel` probes at a time.
/// Probes never share a source port, so parallel probes (and their taps)
/// cannot see each other's packets as their own.
pub fn run(lab: &Lab, expects: &[Expectation], parallel: usize) -> Vec<CheckResult> {
    run_with(lab, expects, parallel, &RunOptions::default())
}

/// As `run`, recording as `opts` says.
pub fn run_with(
    lab: &Lab,
    expects: &[Expectation],
    parallel: usize,
    opts: &RunOptions,
) -> Vec<CheckResult> {
    let parallel = parallel.max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<CheckResult>> = vec![None; expects.len()];
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..parallel.min(expects.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(e) = expects.get(i) else { break };
                let r = check_one_with(lab, e, opts);
                progress::finished(&opts.topology, &r);
                if let Ok(mut slots) = slots.lock() {
                    slots[i] = Some(r);
                }
            });
        }
    });
    let mut results: Vec<CheckResult> = results.into_iter().flatten().collect();
    // One at a time, after the others: rule counters are per lab.
    for r in results.iter_mut().filter(|r| needs_explaining(r)) {
        r.explanation = Some(explain::explain(lab, &r.expect, deadline(&r.expect)));
    }
    results
}

/// A failed probe (not an input error, a pending pod or an n/a row).
pub fn needs_explaining(r: &CheckResult) -> bool {
    !r.passed() && !r.is_na() && r.observed.error.is_none() && r.expect.result != Verdict::Pending
}

fn deadline(e: &Expectation) -> Duration {
    e.timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_DEADLINE)
}

pub fn check_one(lab: &Lab, e: &Expectation) -> CheckResult {
    check_one_with(lab, e, &RunOptions::default())
}

pub fn check_one_with(lab: &Lab, e: &Expectation, opts: &RunOptions) -> CheckResult {
    let t = Instant::now();
    match not_applicable(lab.plan(), e) {
        Ok(None) => {}
        Ok(Some(why)) => return skipped(e, why, vec![], t),
        Err(err) => return skipped(e, String::new(), vec![format!("when: {err}")], t),
    }
    if e.result == Verdict::Pending {
        return pending(lab.plan(), e, t);
    }
    let deadline = deadline(e);
    let http = e.http_status.is_some();
    let wants_path = e.path.is_some() || e.avoids.is_some() || opts.pcap.is_some();
    let (mut observed, frames) = observe::observe_captured(
        lab, &e.name, &e.from, &e.to, e.proto, deadline, wants_path, http,
    );
    if observed.error.is_none() {
        for _ in 1..repeat::probes_for(e) {
            let again = observe::observe_captured(
                lab, &e.name, &e.from, &e.to, e.proto, deadline, false, http,
            )
            .0;
            if let Some(err) = again.error {
                observed.error = Some(err);
                break;
            }
            observed.repeats.push(again.outcome);
        }
    }
    let failures = compare(lab.plan(), e, &observed);
    let mut r = CheckResult {
        expect: e.clone(),
        observed,
        failures,
        elapsed: t.elapsed(),
        not_applicable: None,
        explanation: None,
    };
    if let Some(dir) = &opts.pcap {
        let path = pcap::file_for(dir, &opts.topology, &e.name);
        if let Err(err) = pcap::write(&path, lab.plan(), &r, &frames) {
            r.failures
                .push(format!("pcap: writing {}: {err}", path.display()));
        }
    }
    r
}

/// What an expectation that sent no probe observed.
fn no_probe(verdict: Verdict, detail: String) -> Observation {
    Observation::without_probe(verdict, detail)
}

/// `result: pending`: the CNI left the pod pending (for the reason given).
/// The plan decides this as the real CNI would, so no packet is involved.
fn pending(plan: &LabPlan, e: &Expectation, t: Instant) -> CheckResult {
    let key = e.from.strip_prefix("pod/").unwrap_or(&e.from);
    let found = plan.pending.iter().find(|p| p.pod == key);
    let mut failures = Vec::new();
    let observed = match found {
        Some(p) => {
            if let Some(want) = &e.reason {
                if !p.reason.contains(want.as_str()) {
                    failures.push(format!(
                        "expected pending because {want:?}, pending because {:?}",
                        p.reason
                    ));
                }
            }
            no_probe(Verdict::Pending, p.reason.clone())
        }
        None => {
            let id = PointId::parse_pod(key).ok();
            let running = plan
                .namespaces
                .iter()
                .find(|n| id.as_ref().is_some_and(|id| *id == n.key))
                .map(|n| format!(" (namespace {})", n.key))
                .unwrap_or_default();
            failures.push(format!("expected pending, the pod is running{running}"));
            no_probe(Verdict::Connected, "running".into())
        }
    };
    CheckResult {
        expect: e.clone(),
        observed,
        failures,
        elapsed: t.elapsed(),
        not_applicable: None,
        explanation: None,
    }
}

/// An expectation that could not be probed at all (`why`): a failure,
/// never a verdict.
pub fn failed_before_probe(e: &Expectation, why: String) -> CheckResult {
    let mut observed = no_probe(Verdict::Timeout, why.clone());
    observed.error = Some(why.clone());
    CheckResult {
        expect: e.clone(),
        observed,
        failures: vec![why],
        elapsed: Duration::ZERO,
        not_applicable: None,
        explanation: None,
    }
}

fn skipped(e: &Expectation, why: String, failures: Vec<String>, t: Instant) -> CheckResult {
    let observed = no_probe(Verdict::Timeout, why.clone());
    let not_applicable = failures.is_empty().then_some(why);
    CheckResult {
        expect: e.clone(),
        observed,
        failures,
        elapsed: t.elapsed(),
        not_applicable,
        explanation: None,
    }
}

/// Every difference between what was expected and what the packets showed.
pub fn compare(plan: &LabPlan, e: &Expectation, o: &Observation) -> Vec<String> {
    if let Some(err) = &o.error {
        return vec![err.clone()];
    }
    let mut f = Vec::new();
    let got = o.outcome.verdict;
    if got != e.result {
        let why = if o.outcome.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", o.outcome.detail)
        };
        f.push(format!(
            "expected {}, observed {}{why}",
            e.result.as_str(),
            got.as_str()
        ));
    }
    if got == Verdict::Connected {
        if let Some(src) = &e.source {
            if let Some(msg) = source_mismatch(plan, src, o) {
                f.push(msg);
            }
        }
        if let (Some([want]), true) = (e.served_by.as_deref(), o.repeats.is_empty()) {
            match &o.outcome.served_by {
                Some(by) if by == want => {}
                Some(by) => f.push(format!("expected served by {want}, answered by {by}")),
                None => f.push(format!(
                    "expected served by {want}, nobody identified itself"
                )),
            }
        }
    }
    if let (Some(want), Verdict::Connected) = (e.http_status, got) {
        if o.outcome.http_status != Some(want) {
            let status = o
                .outcome
                .http_status
                .map_or("no status".to_string(), |s| s.to_string());
            f.push(format!(
                "expected HTTP {want}, got {status}: {}",
                o.outcome.detail.replace("\r\n", " | ")
            ));
        }
    }
    if got == Verdict::Refused {
        if let Some(want) = e.refused_by {
            if o.outcome.refused_by != Some(want) {
                f.push(format!(
                    "expected refused by {}, refused by {} ({})",
                    want.as_str(),
                    o.outcome.refused_by.map_or("unknown", |r| r.as_str()),
                    o.outcome.detail
                ));
            }
        }
    }
    if !o.repeats.is_empty()
        || e.served_by.as_ref().is_some_and(|l| l.len() > 1)
        || e.sticky == Some(true)
    {
        f.extend(repeat::compare(e, o));
    }
    let journey: Vec<&crate::probe::Hop> = o.request.iter().chain(o.reply.iter()).collect();
    if let (Some(path), Verdict::Timeout) = (&e.path, got) {
        // `path: []`: the packet may not leave the client at all.
        let tapped = journey.iter().any(|h| !h.is_stack_end());
        if path.is_empty() && tapped {
            f.push(format!(
                "path: [] says no packet leaves the client; observed {}",
                show_journey(o)
            ));
        }
    }
    if let Some(path) = e.path.as_ref().filter(|p| !p.is_empty()) {
        let want: Vec<PointPattern> = path.iter().map(|p| PointPattern::new(plan, p)).collect();
        if let Some(missing) = first_missing_in_order(&want, &journey) {
            f.push(format!(
                "path: {} not crossed in order; observed {}",
                missing.text,
                show_journey(o)
            ));
        } else if let Some(stop) = want.last() {
            // A timeout's path ends where the packet stops: seen anywhere
            // after it, it was dropped somewhere else. A refusal's path ends
            // where the request was refused (the RST or ICMP error starts
            // there): seen further on, something else refused it.
            let (end, what) = match (e.result, got) {
                (Verdict::Timeout, Verdict::Timeout) => {
                    (journey.last().copied(), "the packet did not stop")
                }
                (Verdict::Refused, Verdict::Refused) => {
                    (o.request.last(), "the request was not refused")
                }
                _ => (None, ""),
            };
            if let Some(end) = end.filter(|end| !stop.stops_at(plan, end)) {
                let name = o.display.get(&end.point).unwrap_or(&end.point);
                f.push(format!(
                    "path: {what} at {}: it was last seen at {name}; observed {}",
                    stop.text,
                    show_journey(o)
                ));
            }
        }
    }
    if let Some(avoids) = &e.avoids {
        for a in avoids {
            let a = PointPattern::new(plan, a);
            if !a.names_a_point(plan) {
                // A typo or a point this lab lacks would always be avoided.
                f.push(format!(
                    "avoids: {} is no observation point of this lab, so avoiding it proves nothing",
                    a.text
                ));
                continue;
            }
            if let Some(hit) = journey.iter().find(|h| a.matches(h)) {
                let name = o.display.get(&hit.point).unwrap_or(&hit.point);
                f.push(format!(
                    "path crossed {name}, which it must avoid ({})",
                    a.text
                ));
            }
        }
    }
    f
}

/// A `path`/`avoids` entry: a point id or alias, or an `eni/*`-style
/// prefix of either (`eni/member:*` is every member ENI), optionally with
/// `@vlan=<id>` (the 802.1Q id the hop must carry, as on `trunk/<node>`);
/// or several of these joined by `|`, any of which may match (where the
/// proxy's choice of endpoint decides which one a packet crosses).
#[derive(Debug, Clone, PartialEq)]
pub struct PointPattern {
    /// As the user wrote it.
    pub text: String,
    pub alternatives: Vec<PointAlt>,
}

/// One alternative of a [`PointPattern`].
#[derive(Debug, Clone, PartialEq)]
pub struct PointAlt {
    /// Canonical point id (or prefix ending in `*`).
    pub point: String,
    /// For a prefix: the canonical ids of the points whose id or an alias
    /// starts with it (hops carry canonical ids).
    pub prefixed: Option<Vec<String>>,
    pub vlan: Option<u16>,
    /// For member ENIs it names: (their hypervisor's point, their VLAN id).
    /// A frame on the hypervisor's trunk with that tag is the member's.
    pub member_frames: Vec<(String, u16)>,
}

impl PointPattern {
    pub fn new(plan: &LabPlan, text: &str) -> Self {
        PointPattern {
            text: text.to_string(),
            alternatives: text
                .split('|')
                .map(|a| PointAlt::new(plan, a.trim()))
                .collect(),
        }
    }

    /// Whether every alternative could match some hop of this lab.
    pub fn names_a_point(&self, plan: &LabPlan) -> bool {
        self.alternatives.iter().all(|a| a.names_a_point(plan))
    }

    pub fn matches(&self, hop: &crate::probe::Hop) -> bool {
        self.alternatives.iter().any(|a| a.matches(hop))
    }

    /// Whether a packet last seen at `hop` stopped where this pattern says.
    /// A packet stops in a namespace's stack (its routing, its netfilter),
    /// so any interface of the named point's namespace may be the last to
    /// see it: a node's `cni0` bridge after the pod's host veth.
    ///
    /// A member ENI shares its hypervisor's namespace with the others of its
    /// trunk, yet it is a place of its own: a hop on a member's link stops
    /// only at that member, and a stop named by namespace (`hv/<node>`, or a
    /// point in it) takes no member's hop.
    pub fn stops_at(&self, plan: &LabPlan, hop: &crate::probe::Hop) -> bool {
        if self.matches(hop) {
            return true;
        }
        if member_vlan(plan, &hop.point).is_some() {
            return false;
        }
        let Some(ns) = point_ns(plan, &hop.point) else {
            return false;
        };
        self.alternatives
            .iter()
            .filter(|a| a.vlan.is_none())
            .any(|a| a.stop_namespaces(plan).contains(&ns))
    }
}

/// The VLAN id of a member ENI's point (its frames on the hypervisor's
/// trunk carry it); `None` for any other point.
fn member_vlan(plan: &LabPlan, id: &str) -> Option<u16> {
    plan.points.iter().find(|p| p.id == id).and_then(|p| p.vlan)
}

/// The namespace of a point id (a node's own stack: the node's).
fn point_ns(plan: &LabPlan, id: &str) -> Option<usize> {
    plan.points
        .iter()
        .find(|p| p.id.to_string() == id)
        .map(|p| p.ns)
        .or_else(|| match id.parse::<PointId>() {
            Ok(node @ PointId::Node(_)) => plan.ns_index(&node),
            _ => None,
        })
}

impl PointAlt {
    fn new(plan: &LabPlan, text: &str) -> Self {
        let (id, vlan) = split_vlan(text);
        let prefixed: Option<Vec<String>> = id.strip_suffix('*').map(|prefix| {
            plan.points
                .iter()
                .filter(|p| {
                    p.id.to_string().starts_with(prefix)
                        || p.aliases.iter().any(|a| a.to_string().starts_with(prefix))
                })
                .map(|p| p.id.to_string())
                .collect()
        });
        let mut alt = PointAlt {
            point: observe::canonical_point(plan, id),
            prefixed,
            vlan,
            member_frames: vec![],
        };
        alt.member_frames = plan
            .points
            .iter()
            .filter(|m| m.vlan.is_some() && alt.names(&m.id.to_string()))
            .filter_map(|m| {
                let hv = plan
                    .points
                    .iter()
                    .find(|h| h.ns == m.ns && h.ifname.is_none())?;
                Some((hv.id.to_string(), m.vlan?))
            })
            .collect();
        alt
    }

    /// A point of the plan (a prefix: at least one), or a node's own stack
    /// (`node/<n>`).
    fn names_a_point(&self, plan: &LabPlan) -> bool {
        !self.namespaces(plan).is_empty()
    }

    /// The namespaces of the points this alternative names.
    fn namespaces(&self, plan: &LabPlan) -> Vec<usize> {
        match &self.prefixed {
            Some(ids) => ids.iter().filter_map(|id| point_ns(plan, id)).collect(),
            None => plan
                .points
                .iter()
                .filter(|pt| point_matches(&self.point, &pt.id.to_string()))
                .map(|pt| pt.ns)
                .chain(point_ns(plan, &self.point))
                .collect(),
        }
    }

    /// The namespaces where a packet may stop for this alternative: those
    /// of the points it names, member ENIs' excepted (their namespace is
    /// their hypervisor's, shared with every other member of the trunk).
    fn stop_namespaces(&self, plan: &LabPlan) -> Vec<usize> {
        let members: Vec<usize> = plan
            .points
            .iter()
            .filter(|p| p.vlan.is_some() && self.names(&p.id.to_string()))
            .map(|p| p.ns)
            .collect();
        let others = plan
            .points
            .iter()
            .filter(|p| p.vlan.is_none() && self.names(&p.id.to_string()))
            .map(|p| p.ns)
            .collect::<Vec<_>>();
        self.namespaces(plan)
            .into_iter()
            .filter(|ns| !members.contains(ns) || others.contains(ns))
            .collect()
    }

    /// Whether this alternative names point `id` (by id, alias or prefix).
    fn names(&self, id: &str) -> bool {
        match &self.prefixed {
            Some(ids) => ids.iter().any(|i| i == id) || point_matches(&self.point, id),
            None => point_matches(&self.point, id),
        }
    }

    fn matches(&self, hop: &crate::probe::Hop) -> bool {
        let member_frame = self
            .member_frames
            .iter()
            .any(|(hv, v)| *hv == hop.point && hop.vlan == Some(*v));
        (self.names(&hop.point) || member_frame) && self.vlan.is_none_or(|v| hop.vlan == Some(v))
    }
}

/// `trunk/n1@vlan=1027` → (`trunk/n1`, Some(1027)); anything else unchanged.
pub fn split_vlan(s: &str) -> (&str, Option<u16>) {
    match s.rsplit_once("@vlan=") {
        Some((id, v)) => match v.parse() {
            Ok(v) => (id, Some(v)),
            Err(_) => (s, None),
        },
        None => (s, None),
    }
}

fn source_mismatch(plan: &LabPlan, src: &str, o: &Observation) -> Option<String> {
    let seen = o.outcome.seen_peer.map(|s| *s.ip());
    let Some(seen) = seen else {
        return Some(format!(
            "expected source {src}, the server reported no peer address"
        ));
    };
    let want = match parse_source(src) {
        Ok(SourceExpect::Client) => match o.outcome.local {
            Some(l) => *l.ip(),
            None => return Some("source: the client socket had no local address".into()),
        },
        Ok(SourceExpect::Node(n)) => match observe::node_ip(plan, &n) {
            Some(ip) => ip,
            None => return Some(format!("source: no node {n}")),
        },
        Ok(SourceExpect::Ip(ip)) => ip,
        Err(e) => return Some(format!("source: {e}")),
    };
    (seen != want).then(|| format!("expected source {src} ({want}), server saw {seen}"))
}

/// `want` must appear in `journey` in order (other hops may come between).
fn first_missing_in_order<'a>(
    want: &'a [PointPattern],
    journey: &[&crate::probe::Hop],
) -> Option<&'a PointPattern> {
    let mut it = journey.iter();
    want.iter().find(|w| !it.any(|h| w.matches(h)))
}

/// `eni/*` matches every `eni/…` point; a pod (`pod/<ns>/<name>`) matches
/// each of its interfaces (`pod/<ns>/<name>:<ifname>`); otherwise ids must
/// be equal.
pub fn point_matches(pattern: &str, point: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return point.starts_with(prefix);
    }
    if pattern == point {
        return true;
    }
    match (pattern.parse::<PointId>(), point.parse::<PointId>()) {
        (
            Ok(PointId::Pod { ns, name }),
            Ok(PointId::PodIf {
                ns: n2, name: m2, ..
            }),
        ) => ns == n2 && name == m2,
        _ => false,
    }
}

/// `a → b@vlan=5 → c ⇢ c → b → a` (request, then reply after ⇢).
pub fn show_journey(o: &Observation) -> String {
    let show = |hops: &[crate::probe::Hop]| {
        hops.iter()
            .map(|h| h.label(o.display.get(&h.point).unwrap_or(&h.point)))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    match (o.request.is_empty(), o.reply.is_empty()) {
        (true, true) => "(no packets captured)".into(),
        (false, true) => show(&o.request),
        _ => format!("{} ⇢ {}", show(&o.request), show(&o.reply)),
    }
}

/// ICMP probes go to the address alone.
pub fn proto_word(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
        Proto::All => "all",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Hop, ProbeOutcome};
    use std::net::Ipv4Addr;

    fn plan() -> LabPlan {
        let text = include_str!("../../../topologies/examples/trunk-member-eni-quota.yaml");
        let r = crate::topology::load_str(text, "quota").unwrap().resolved;
        crate::plan::plan(&r, crate::plan::Backends::PORTABLE).unwrap()
    }

    fn hop(p: &LabPlan, point: &str) -> Hop {
        Hop {
            point: observe::canonical_point(p, point),
            vlan: None,
            src: Ipv4Addr::new(10, 0, 4, 2),
            dst: Ipv4Addr::new(10, 0, 5, 2),
            encap: None,
        }
    }

    #[test]
    fn a_member_enis_stop_in_the_shared_hv_is_its_own() {
        let p = plan();
        let hv = "hv/cn-hongkong.10.0.4.20";
        // a1 and a2 are node .20's first two trunk pods: VLANs 1027, 1028.
        let tagged = |v| Hop {
            vlan: Some(v),
            ..hop(&p, hv)
        };
        let a1 = PointPattern::new(&p, "eni/member:default/a1");
        let a2 = PointPattern::new(&p, "eni/member:default/a2");
        let at_hv = PointPattern::new(&p, hv);
        // a1's frames on hv's trunk carry its VLAN: they are a1's.
        assert!(a1.matches(&tagged(1027)));
        assert!(a1.stops_at(&p, &tagged(1027)));
        assert!(!a1.matches(&tagged(1028)));
        assert!(!a2.stops_at(&p, &tagged(1027)));
        // A hop on a2's own link stops at a2 only, not at a1 nor at hv.
        let on_a2 = hop(&p, "eni/member:default/a2");
        assert!(a2.stops_at(&p, &on_a2));
        assert!(!a1.stops_at(&p, &on_a2));
        assert!(!at_hv.stops_at(&p, &on_a2));
        // hv stops take hv's own hops, tagged or not; a member takes no
        // untagged hv hop.
        assert!(at_hv.stops_at(&p, &tagged(1028)));
        assert!(at_hv.stops_at(&p, &hop(&p, hv)));
        assert!(!a1.stops_at(&p, &hop(&p, hv)));
    }

    fn timed_out(p: &LabPlan, request: &[&str]) -> Observation {
        Observation {
            outcome: ProbeOutcome::timeout("no answer"),
            dst: None,
            request: request.iter().map(|h| hop(p, h)).collect(),
            reply: vec![],
            error: None,
            display: Default::default(),
            repeats: vec![],
        }
    }

    fn timeout(path: Option<&[&str]>, avoids: &[&str]) -> Expectation {
        Expectation {
            path: path.map(|p| p.iter().map(|s| s.to_string()).collect()),
            avoids: (!avoids.is_empty()).then(|| avoids.iter().map(|s| s.to_string()).collect()),
            ..Expectation::new(
                "t",
                "pod/default/b2",
                "pod/default/a2:8080",
                Verdict::Timeout,
            )
        }
    }

    const TO_A2: [&str; 4] = [
        "pod/default/b2",
        "eni/secondary:cn-hongkong.10.0.4.22/eth1",
        "vpc",
        "eni/member:default/a2",
    ];

    #[test]
    fn a_timeout_path_ends_where_the_packet_stops() {
        let p = plan();
        let stop = timeout(
            Some(&["pod/default/b2", "vpc", "eni/member:default/a2"]),
            &[],
        );
        assert!(compare(&p, &stop, &timed_out(&p, &TO_A2)).is_empty());
        // Dropped later than the path says (or by something else): a failure.
        let further = [&TO_A2[..], &["trunk/cn-hongkong.10.0.4.20"]].concat();
        let f = compare(&p, &stop, &timed_out(&p, &further));
        assert!(
            f[0].contains("did not stop at eni/member:default/a2"),
            "{f:?}"
        );
        // Another interface of the stop's namespace may be the last to see
        // it (the node's eth0 after the pod's host veth: both node .22).
        let host = timeout(Some(&["pod/default/b2", "host-veth/default/b2"]), &[]);
        let node = [
            "pod/default/b2",
            "host-veth/default/b2",
            "eth0/cn-hongkong.10.0.4.22",
        ];
        assert!(compare(&p, &host, &timed_out(&p, &node)).is_empty());
        let out = [
            "pod/default/b2",
            "host-veth/default/b2",
            "eni/secondary:cn-hongkong.10.0.4.22/eth1",
            "vpc",
        ];
        let f = compare(&p, &host, &timed_out(&p, &out));
        assert!(
            f[0].contains("did not stop at host-veth/default/b2"),
            "{f:?}"
        );
        // Any of the alternatives may be the stop.
        let either = timeout(
            Some(&["vpc", "eni/member:default/a1|eni/member:default/a2"]),
            &[],
        );
        assert!(compare(&p, &either, &timed_out(&p, &TO_A2)).is_empty());
        // `path: []`: nothing may leave the client.
        let none = timeout(Some(&[]), &[]);
        assert!(compare(&p, &none, &timed_out(&p, &[])).is_empty());
        let f = compare(&p, &none, &timed_out(&p, &TO_A2[..1]));
        assert!(f[0].contains("no packet leaves the client"), "{f:?}");
    }

    #[test]
    fn a_refused_path_ends_where_the_request_is_refused() {
        let p = plan();
        let refused = |request: &[&str], reply: &[&str]| Observation {
            outcome: ProbeOutcome {
                verdict: Verdict::Refused,
                ..ProbeOutcome::timeout("rst")
            },
            reply: reply.iter().map(|h| hop(&p, h)).collect(),
            ..timed_out(&p, request)
        };
        let e = Expectation {
            path: Some(vec!["vpc".into(), "eni/member:default/a2".into()]),
            ..Expectation::new(
                "t",
                "pod/default/b2",
                "pod/default/a2:8080",
                Verdict::Refused,
            )
        };
        let back = ["eni/member:default/a2", "vpc", "pod/default/b2"];
        assert!(compare(&p, &e, &refused(&TO_A2, &back)).is_empty());
        let further = [
            &TO_A2[..],
            &["trunk/cn-hongkong.10.0.4.20", "pod/default/a2"],
        ]
        .concat();
        let f = compare(&p, &e, &refused(&further, &back));
        assert!(
            f[0].contains("the request was not refused at eni/member:default/a2"),
            "{f:?}"
        );
    }

    #[test]
    fn an_avoid_naming_nothing_fails() {
        let p = plan();
        let o = timed_out(&p, &TO_A2);
        let f = compare(&p, &timeout(None, &["trunk/cn-hongkong.10.0.4.22"]), &o);
        assert!(
            f[0].contains("is no observation point of this lab"),
            "{f:?}"
        );
        let f = compare(&p, &timeout(None, &["eni/member:*"]), &o);
        assert!(f[0].contains("which it must avoid (eni/member:*)"), "{f:?}");
        assert!(compare(&p, &timeout(None, &["trunk/cn-hongkong.10.0.4.20"]), &o).is_empty());
    }
}
