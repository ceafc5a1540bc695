//! cnlab as a library: bring a lab up inside your own `cargo test`, send
//! real packets through it, assert what connected, which source the server
//! saw and which path the packets took. The lab is torn down when the
//! [`Lab`] is dropped, also when the test panics.
//!
//! ```no_run
//! // Cargo.toml: cnlab = { version = "0.1", default-features = false }
//! // Run as root: `sudo -E cargo test` (network namespaces need it).
//! let lab = cnlab::Lab::from_yaml(r#"
//! name: two-pods
//! cluster: {kubernetes: "1.30", cni: flannel, proxy: iptables, pod_cidr: 172.16.0.0/16}
//! vpc:
//!   cidr: 10.0.0.0/8
//!   vswitches: [{id: vsw-a, cidr: 10.0.4.0/24}]
//! nodes: [{name: node-1, vswitch: vsw-a}, {name: node-2, vswitch: vsw-a}]
//! kubernetes:
//!   - {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c}]}}
//!   - {apiVersion: v1, kind: Pod, metadata: {name: web},
//!      spec: {nodeName: node-2, containers: [{name: web, ports: [{containerPort: 80}]}]}}
//! "#)?;
//! let r = lab
//!     .probe("pod/default/a", "pod/default/web:80")
//!     .expect_connected()
//!     .source_seen("pod/default/a")
//!     .through(&["eth0/node-1", "vpc", "eth0/node-2"])
//!     .assert();
//! println!("{r}"); // verdict, source, request and reply hops
//! # Ok::<(), cnlab::Error>(())
//! ```
//!
//! Every verdict comes from packets: a [`Probe`] opens a TCP (UDP, ICMP)
//! connection from the client's network namespace, AF_PACKET taps at every
//! observation point record the hops, and the echo server reports the peer
//! address it saw. A failing [`Probe::assert`] panics with the explanation
//! `cnlab check` prints: the hops, the last point that saw the packet, the
//! kernel's route decision there and the rules whose counters moved.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::check::counters::{self, Counters, Moved};
use crate::check::explain::{self, Explanation};
use crate::check::{self, observe, Observation};
use crate::kernel::caps::BackendChoice;
use crate::lab::{self as live, LabError, UpOptions};
use crate::plan::LabPlan;
use crate::topology::model::{Expectation, Proto, Verdict};
use crate::topology::{Loaded, Problem, Report};

/// Why a lab could not be brought up or inspected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology is invalid: every problem with its YAML path and line.
    #[error("{0}")]
    Input(Box<Report>),
    /// Bringing the lab up failed (not root, a kernel feature missing, …).
    #[error("{0}")]
    Lab(#[from] LabError),
    /// Reading the lab's rule counters failed.
    #[error("reading rule counters: {0}")]
    Counters(String),
}

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kernel feature backends (default: `CNLAB_BACKEND`, else `Auto`).
    pub backend: BackendChoice,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: UpOptions::default().backend,
        }
    }
}

/// A running lab: namespaces, links, rules and echo servers built from a
/// topology. Dropping it tears everything down (on panic too; after a
/// SIGKILL, `cnlab gc` does).
pub struct Lab {
    inner: live::Lab,
    loaded: Loaded,
}

impl Lab {
    /// Brings up the topology in `path` (the format of `cnlab check`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Lab, Error> {
        Self::from_file_with(path, &Options::default())
    }

    /// As [`Lab::from_file`], with options.
    pub fn from_file_with(path: impl AsRef<Path>, opts: &Options) -> Result<Lab, Error> {
        let path = path.as_ref();
        let loaded = check::input::load_planned(path).map_err(|r| Error::Input(Box::new(r)))?;
        Self::up(loaded, Some(path.display().to_string()), opts)
    }

    /// Brings up a topology written inline.
    pub fn from_yaml(yaml: &str) -> Result<Lab, Error> {
        Self::from_yaml_with(yaml, &Options::default())
    }

    /// As [`Lab::from_yaml`], with options.
    pub fn from_yaml_with(yaml: &str, opts: &Options) -> Result<Lab, Error> {
        let loaded = check::input::load_planned_str(yaml, "<yaml>")
            .map_err(|r| Error::Input(Box::new(r)))?;
        Self::up(loaded, None, opts)
    }

    fn up(loaded: Loaded, file: Option<String>, opts: &Options) -> Result<Lab, Error> {
        let inner = live::Lab::up(
            &loaded.resolved,
            &UpOptions {
                backend: opts.backend,
                file,
                ..Default::default()
            },
        )?;
        Ok(Lab { inner, loaded })
    }

    /// The lab's id (its namespaces are `cnl-<id>-…`).
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// Problems the topology has that do not stop it (e.g. a pod that stays pending).
    pub fn warnings(&self) -> &[Problem] {
        &self.loaded.warnings
    }

    /// Everything the lab was built from: namespaces, links, routes, rules,
    /// observation points, endpoints, pending pods.
    pub fn plan(&self) -> &LabPlan {
        self.inner.plan()
    }

    /// The address of an endpoint: `pod/<ns>/<name>`, `node/<name>` or
    /// `external/<name>`.
    pub fn ip_of(&self, endpoint: &str) -> Option<Ipv4Addr> {
        self.plan().endpoint(endpoint).map(|e| e.ip)
    }

    /// Starts a probe from `from` (`pod/<ns>/<name>`, `node/<name>`,
    /// `external/<name>`) to `to` (`pod/<ns>/<name>:<port>`,
    /// `service/<ns>/<name>:<port>[@external-ip|@lb]`,
    /// `nodeport/<node>/<ns>/<name>`, `ip/<addr>:<port>`), TCP unless told.
    /// Nothing is sent until [`Probe::send`] or [`Probe::assert`].
    pub fn probe(&self, from: &str, to: &str) -> Probe<'_> {
        Probe {
            lab: self,
            e: Expectation::new(format!("{from} -> {to}"), from, to, Verdict::Connected),
            expected: None,
            source_text: None,
            count_rules: false,
        }
    }

    /// Runs the topology's own `expect:` list, as `cnlab check` does.
    pub fn check_expectations(&self) -> Vec<check::CheckResult> {
        check::run(&self.inner, &self.loaded.resolved.topo.expect, 8)
    }

    /// As [`Lab::check_expectations`]; panics with `cnlab check`'s table if
    /// any expectation does not hold.
    pub fn assert_expectations(&self) {
        let results = self.check_expectations();
        if results.iter().all(|r| r.passed()) {
            return;
        }
        let view = check::report::FileResults {
            file: "topology",
            lab_id: self.id(),
            results: &results,
            error: None,
            pending: vec![],
            not_modelled: vec![],
        };
        panic!("{}", check::report::table(&[view]));
    }

    /// Every commented nft rule counter of the lab, per `(namespace key,
    /// rule comment)`: security-group rules, kube-proxy and CNI NAT rules.
    pub fn rule_counters(&self) -> Result<Counters, Error> {
        counters::snapshot(&self.inner)
            .map(|(c, _)| c)
            .map_err(Error::Counters)
    }

    /// Recreates a pod's sandbox as a kubelet does (it keeps its address).
    pub fn restart_pod(&mut self, pod: &str) -> Result<(), Error> {
        Ok(self.inner.restart_pod(pod)?)
    }

    /// The lab underneath, for what this API does not cover.
    pub fn raw(&self) -> &live::Lab {
        &self.inner
    }

    /// Tears the lab down now (dropping it does the same).
    pub fn down(self) {
        self.inner.down();
    }
}

/// One probe being described; [`Probe::send`] or [`Probe::assert`] sends it.
#[must_use = "a probe is sent by .send() or .assert()"]
pub struct Probe<'l> {
    lab: &'l Lab,
    e: Expectation,
    expected: Option<Verdict>,
    /// `source_seen` as the caller wrote it, when it had to be resolved.
    source_text: Option<String>,
    count_rules: bool,
}

impl<'l> Probe<'l> {
    /// UDP instead of TCP.
    pub fn udp(mut self) -> Self {
        self.e.proto = Proto::Udp;
        self
    }

    /// ICMP echo (the target's port is ignored).
    pub fn icmp(mut self) -> Self {
        self.e.proto = Proto::Icmp;
        self
    }

    /// How long to wait for an answer (default 1.5 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.e.timeout_ms = Some(d.as_millis() as u64);
        self
    }

    /// The server must answer.
    pub fn expect_connected(self) -> Self {
        self.expect(Verdict::Connected)
    }

    /// The client must be refused (TCP RST or ICMP unreachable).
    pub fn expect_refused(self) -> Self {
        self.expect(Verdict::Refused)
    }

    /// Nothing may answer before the deadline (the packet is dropped).
    pub fn expect_timeout(self) -> Self {
        self.expect(Verdict::Timeout)
    }

    fn expect(mut self, v: Verdict) -> Self {
        self.expected = Some(v);
        self.e.result = v;
        self
    }

    /// The source address the server must see: `client` (the client's own
    /// address), an endpoint (`pod/<ns>/<name>`, `node/<name>`,
    /// `external/<name>`: its address) or `ip/<addr>`.
    pub fn source_seen(mut self, who: &str) -> Self {
        let source = match who {
            "client" => who.to_string(),
            _ if who.starts_with("ip/") || who.starts_with("node/") => who.to_string(),
            _ => match self.lab.ip_of(who) {
                Some(ip) => format!("ip/{ip}"),
                // Left as written: the comparison reports it.
                None => who.to_string(),
            },
        };
        self.source_text = Some(who.to_string());
        self.e.source = Some(source);
        self
    }

    /// Who must answer (`pod/<ns>/<name>`, `node/<name>`, …).
    pub fn served_by(mut self, who: &str) -> Self {
        self.e.served_by = Some(vec![who.to_string()]);
        self
    }

    /// Observation points the request and reply must cross, in this order
    /// (others may come between); `trunk/<node>@vlan=1027` checks the tag.
    pub fn through(mut self, points: &[&str]) -> Self {
        self.e.path = Some(points.iter().map(|p| p.to_string()).collect());
        self
    }

    /// Observation points the packets must not cross (`eni/*`: every ENI).
    pub fn avoids(mut self, points: &[&str]) -> Self {
        self.e.avoids = Some(points.iter().map(|p| p.to_string()).collect());
        self
    }

    /// Read the lab's rule counters before and after, so that
    /// [`ProbeResult::rules`] names every rule the probe's packets hit.
    /// Counters are per lab: run such probes one at a time.
    pub fn count_rules(mut self) -> Self {
        self.count_rules = true;
        self
    }

    /// Sends the probe and compares; never panics.
    pub fn send(self) -> ProbeResult {
        let lab = &self.lab.inner;
        let plan = lab.plan();
        let deadline = self
            .e
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(check::DEFAULT_DEADLINE);
        let mut notes = Vec::new();
        let before = self
            .count_rules
            .then(|| counters::snapshot(lab))
            .and_then(|r| r.map_err(|e| notes.push(format!("counters: {e}"))).ok());
        let o = observe(
            lab,
            &self.e.name,
            &self.e.from,
            &self.e.to,
            self.e.proto,
            deadline,
            true,
        );
        let rules = match before {
            Some((before, _)) => match counters::snapshot(lab) {
                Ok((after, verdicts)) => counters::moved(&before, &after, &verdicts),
                Err(e) => {
                    notes.push(format!("counters: {e}"));
                    vec![]
                }
            },
            None => vec![],
        };
        let mut e = self.e;
        // Without an expected verdict only the other assertions count.
        if self.expected.is_none() {
            e.result = o.outcome.verdict;
        }
        let mut failures = check::compare(plan, &e, &o);
        if let (Some(text), Some(src)) = (&self.source_text, &e.source) {
            if text != src {
                for f in failures.iter_mut().filter(|f| f.contains(src.as_str())) {
                    *f = f.replace(src.as_str(), &format!("{text} ({src})"));
                }
            }
        }
        failures.extend(notes);
        let explanation = (!failures.is_empty() && o.error.is_none())
            .then(|| explain::explain(lab, &e, deadline));
        ProbeResult {
            hops: Hops::of(&o),
            expectation: e,
            observed: o,
            failures,
            explanation,
            rules,
        }
    }

    /// Sends the probe; panics with the full explanation if anything
    /// expected does not hold (or the probe could not be sent).
    #[track_caller]
    pub fn assert(self) -> ProbeResult {
        let r = self.send();
        if !r.passed() {
            panic!("{r}");
        }
        r
    }
}

/// The hops of one probe, as `path:` entries write them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Hops {
    request: Vec<String>,
    reply: Vec<String>,
}

impl Hops {
    fn of(o: &Observation) -> Hops {
        let label = |hs: &[crate::probe::Hop]| -> Vec<String> {
            hs.iter()
                .map(|h| h.label(o.display.get(&h.point).unwrap_or(&h.point)))
                .collect()
        };
        Hops {
            request: label(&o.request),
            reply: label(&o.reply),
        }
    }
}

/// What one probe showed.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    expectation: Expectation,
    observed: Observation,
    hops: Hops,
    failures: Vec<String>,
    explanation: Option<Explanation>,
    rules: Vec<Moved>,
}

impl ProbeResult {
    /// Connected, refused or timeout.
    pub fn verdict(&self) -> Verdict {
        self.observed.outcome.verdict
    }

    pub fn connected(&self) -> bool {
        self.verdict() == Verdict::Connected && self.observed.error.is_none()
    }

    /// The source address the server saw (connected TCP/UDP probes).
    pub fn source_seen(&self) -> Option<Ipv4Addr> {
        self.observed.outcome.seen_peer.map(|s| *s.ip())
    }

    /// The client socket's own address.
    pub fn client_address(&self) -> Option<Ipv4Addr> {
        self.observed.outcome.local.map(|s| *s.ip())
    }

    /// Who answered (`pod/<ns>/<name>`, …).
    pub fn served_by(&self) -> Option<&str> {
        self.observed.outcome.served_by.as_deref()
    }

    /// The points the request crossed, in order (`trunk/n1@vlan=1027`).
    pub fn request_hops(&self) -> &[String] {
        &self.hops.request
    }

    /// The points the reply crossed, in order.
    pub fn reply_hops(&self) -> &[String] {
        &self.hops.reply
    }

    /// Whether the request or reply crossed `point`: an id or the name a
    /// hop is shown by (`eni/primary:<node>`), `eni/*` for every ENI,
    /// optionally with `@vlan=<id>`.
    pub fn crossed(&self, point: &str) -> bool {
        let (want, vlan) = check::split_vlan(point);
        self.observed
            .request
            .iter()
            .chain(&self.observed.reply)
            .any(|h| {
                let shown = self.observed.display.get(&h.point).map(String::as_str);
                let id = h.point.to_string();
                (check::point_matches(want, &id)
                    || shown.is_some_and(|s| check::point_matches(want, s)))
                    && vlan.is_none_or(|v| h.vlan == Some(v))
            })
    }

    /// Rules whose counters the probe moved ([`Probe::count_rules`]; a
    /// failing probe's explanation has them too).
    pub fn rules(&self) -> &[Moved] {
        match (&self.explanation, self.rules.is_empty()) {
            (Some(x), true) => &x.rules,
            _ => &self.rules,
        }
    }

    /// Every way the observation differs from what was expected.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// For a failing probe: what a second, fully observed probe showed.
    pub fn explanation(&self) -> Option<&Explanation> {
        self.explanation.as_ref()
    }

    /// The expectation the probe was compared with.
    pub fn expectation(&self) -> &Expectation {
        &self.expectation
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.expectation;
        write!(
            f,
            "{} → {} {}: {}",
            e.from,
            e.to,
            check::proto_word(e.proto),
            self.verdict().as_str()
        )?;
        if let Some(err) = &self.observed.error {
            write!(f, " (not sent: {err})")?;
        }
        if let Some(s) = self.source_seen() {
            write!(f, ", server saw {s}")?;
        }
        if let Some(by) = self.served_by() {
            write!(f, ", served by {by}")?;
        }
        writeln!(f)?;
        let show = |hops: &[String]| {
            if hops.is_empty() {
                "(nothing captured)".to_string()
            } else {
                hops.join(" → ")
            }
        };
        writeln!(f, "  request: {}", show(&self.hops.request))?;
        writeln!(f, "  reply:   {}", show(&self.hops.reply))?;
        for m in &self.rules {
            writeln!(f, "  rule: {}  {} ({} packets)", m.ns, m.rule, m.packets)?;
        }
        for x in &self.failures {
            writeln!(f, "  ✗ {x}")?;
        }
        for l in self.explanation.iter().flat_map(|x| x.lines()) {
            writeln!(f, "    {l}")?;
        }
        Ok(())
    }
}
