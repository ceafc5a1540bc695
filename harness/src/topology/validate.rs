//! Checks a parsed topology as a whole: names, references, CIDRs, addresses,
//! security group rules, versions and expectations. Every problem is
//! collected; nothing stops at the first one.

mod faults;
pub use faults::LINK_FORMS;

use super::expect::{
    parse_origin, parse_source, parse_target, Origin, ServiceVia, SourceExpect, Target,
};
use super::k8s::{Pod, Service, MAX_AFFINITY_SECONDS, SOURCE_RANGES_ANNOTATION};
use super::lines::{is_within, join_index, join_key, split, LineMap, Seg};
use super::model::*;
use super::parse::{KubeIndex, Problem};
use super::point::{EniRef, PointId};
use super::Resolved;
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

/// The CCM annotation that makes a Service reuse an existing CLB.
pub const LB_ID_ANNOTATION: &str = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-id";

// ---------------------------------------------------------------- reusable parsers

/// A Kubernetes version, `1.24` or `v1.30.2` (a vendor suffix such as
/// `1.24.6-aliyun.1` is accepted and dropped). Ordered by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KubeVersion {
    pub fn new(major: u32, minor: u32, patch: u32) -> KubeVersion {
        KubeVersion {
            major,
            minor,
            patch,
        }
    }

    pub fn parse(s: &str) -> Result<KubeVersion, String> {
        let bad = || format!("{s:?} is not a Kubernetes version (like \"1.24\" or \"v1.30.2\")");
        let t = s.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let core = t.split(['-', '+']).next().unwrap_or("");
        let nums: Vec<&str> = core.split('.').collect();
        if !(2..=3).contains(&nums.len()) {
            return Err(bad());
        }
        let mut parsed = [0u32; 3];
        for (slot, n) in parsed.iter_mut().zip(&nums) {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            *slot = n.parse().map_err(|_| bad())?;
        }
        if parsed[0] != 1 {
            return Err(format!("{s:?}: only Kubernetes 1.x is modelled"));
        }
        Ok(KubeVersion::new(parsed[0], parsed[1], parsed[2]))
    }
}

/// A version condition of `expect[].when.kubernetes`: an optional
/// operator (`>=`, `>`, `<=`, `<`, `=`, `==`) and a version. Without a patch
/// number the comparison is by major.minor (`"1.22"` is every 1.22.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionReq {
    pub op: VersionOp,
    pub version: KubeVersion,
    pub with_patch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl VersionReq {
    pub fn parse(s: &str) -> Result<VersionReq, String> {
        let t = s.trim();
        let (op, rest) = [
            (">=", VersionOp::Ge),
            ("<=", VersionOp::Le),
            ("==", VersionOp::Eq),
            (">", VersionOp::Gt),
            ("<", VersionOp::Lt),
            ("=", VersionOp::Eq),
        ]
        .iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r)))
        .unwrap_or((VersionOp::Eq, t));
        let version = KubeVersion::parse(rest.trim()).map_err(|e| {
            format!("{e}; a condition looks like \">=1.24\", \"<1.24\" or \"1.22\"")
        })?;
        let core = rest.trim().trim_start_matches(['v', 'V']);
        let core = core.split(['-', '+']).next().unwrap_or("");
        Ok(VersionReq {
            op,
            version,
            with_patch: core.split('.').count() == 3,
        })
    }

    pub fn matches(&self, v: KubeVersion) -> bool {
        let (have, want) = if self.with_patch {
            (
                (v.major, v.minor, v.patch),
                (self.version.major, self.version.minor, self.version.patch),
            )
        } else {
            (
                (v.major, v.minor, 0),
                (self.version.major, self.version.minor, 0),
            )
        };
        match self.op {
            VersionOp::Ge => have >= want,
            VersionOp::Gt => have > want,
            VersionOp::Le => have <= want,
            VersionOp::Lt => have < want,
            VersionOp::Eq => have == want,
        }
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Port ranges of a security group rule: `80`, `"80"`, `"8000-9000"`,
/// `"80,443"` (the Alibaba console's `"8000/9000"` is accepted too). Each
/// range is inclusive, ports 1..=65535, low ≤ high.
pub fn parse_ports(spec: &PortSpec) -> Result<Vec<(u16, u16)>, String> {
    let one = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(format!("port {:?} is not a number in 1..=65535", t.trim())),
        }
    };
    match spec {
        PortSpec::Number(n) => Ok(vec![(one(&n.to_string())?, *n)]),
        PortSpec::Text(text) => {
            if text.trim().is_empty() {
                return Err(
                    "ports are empty (write e.g. \"80\", \"8000-9000\" or \"80,443\")".into(),
                );
            }
            text.split(',')
                .map(|part| {
                    let (lo, hi) = match part.split_once(['-', '/']) {
                        Some((lo, hi)) => (one(lo)?, one(hi)?),
                        None => {
                            let p = one(part)?;
                            (p, p)
                        }
                    };
                    if lo > hi {
                        return Err(format!("port range {:?} runs backwards", part.trim()));
                    }
                    Ok((lo, hi))
                })
                .collect()
        }
    }
}

/// Alibaba reserves the network address and the last three addresses of
/// every vSwitch (.0, .253, .254, .255 of a /24).
pub fn is_reserved(vswitch: &Ipv4Net, ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    ip == u32::from(vswitch.network()) || ip >= u32::from(vswitch.broadcast()).saturating_sub(2)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

// ---------------------------------------------------------------- the validator

/// Every problem in `r`, each with its YAML path and line.
pub fn validate(r: &Resolved, lines: &LineMap) -> Vec<Problem> {
    validate_with(r, lines, &[])
}

/// As `validate`, skipping checks that would read a value at one of the
/// `broken` paths (values the parser could not read and replaced by a
/// placeholder).
pub(crate) fn validate_with(r: &Resolved, lines: &LineMap, broken: &[String]) -> Vec<Problem> {
    let topo = &r.topo;
    let mut v = V {
        r,
        lines,
        broken,
        out: Vec::new(),
        kix: KubeIndex::of(topo),
        nodes: index(topo.nodes.iter().map(|n| n.name.clone())),
        externals: index(topo.externals.iter().map(|e| e.name.clone())),
        vswitches: index(topo.vpc.vswitches.iter().map(|s| s.id.clone())),
        sgs: index(topo.vpc.security_groups.iter().map(|s| s.id.clone())),
        lbs: index(topo.load_balancers.iter().map(|l| l.id.clone())),
        pods: index(r.pods.iter().map(pod_key)),
        services: index(r.services.iter().map(svc_key)),
        taken: Vec::new(),
    };
    v.top();
    v.cluster();
    v.vpc();
    v.security_groups();
    v.nodes();
    v.externals();
    v.load_balancers();
    v.pods();
    v.services();
    v.podnetworkings();
    v.expectations();
    v.faults();
    v.out
}

/// Things that are legal but almost certainly not what the author meant (a
/// customer's broken cluster may be exactly that, so they do not stop a run):
/// a Service whose selector matches no pod, and a named `targetPort` that no
/// selected container defines (kube-proxy then has no endpoint for it).
/// What kube-proxy of this version logs at start in this mode (the IPVS
/// deprecation from 1.35, the nftables feature gate before 1.31), at
/// `cluster.proxy`.
fn proxy_warnings(r: &Resolved, lines: &LineMap) -> Vec<Problem> {
    let c = &r.topo.cluster;
    let Ok(v) = KubeVersion::parse(&c.kubernetes) else {
        return Vec::new();
    };
    crate::plan::proxy::driver(c.proxy)
        .warnings(crate::plan::proxy::version::ProxyVersion(v))
        .into_iter()
        .map(|w| {
            Problem::at(
                lines,
                "cluster.proxy",
                format!(
                    "kube-proxy {} in {} mode: {w}",
                    c.kubernetes,
                    c.proxy.as_str()
                ),
            )
        })
        .collect()
}

/// Terway's rule 2048 changed in v1.4.2 (commit efd05996 dropped its
/// `iif <host veth>`), and with IPVS that decides which ENI a pod's Service
/// request leaves by (T6). Without `terway_version` the lab plans the older
/// layout; say so where it can change a verdict, at `cluster.cni`.
fn terway_version_warning(r: &Resolved, lines: &LineMap) -> Option<Problem> {
    let c = &r.topo.cluster;
    let veth_terway = matches!(c.cni, Cni::TerwayEniip | Cni::TerwayTrunking);
    (veth_terway && c.proxy == ProxyMode::Ipvs && c.terway_version.is_none()).then(|| {
        Problem::at(
            lines,
            "cluster.cni",
            format!(
                "{}: cluster.terway_version is not set, so rule 2048 is planned as Terway v1.1.0-v1.4.1 wrote it \
                 (`from <podIP> iif <host veth>`: IPVS's requests from pods leave by eth0, as in T6); Terway v1.4.2 \
                 and later have no iif and send them by the pod's own ENI. Set terway_version (for example \"1.17.5\") \
                 to model a newer cluster",
                c.cni.as_str()
            ),
        )
    })
}

/// ACK CCM annotations that configure the CLB listener's health check
/// (kubernetes/cloud-provider-alibaba-cloud, clbv1/listeners.go
/// `buildListenerFromServicePort`).
const CLB_HEALTH_CHECK_ANNOTATIONS: &[&str] = &[
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-health-check",
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-healthy-threshold",
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-unhealthy-threshold",
];

/// A CLB health-check annotation decides nothing in the lab: said at its
/// line, with what the mock does instead.
fn clb_health_check_warnings(r: &Resolved, lines: &LineMap, kix: &KubeIndex) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, svc) in r.services.iter().enumerate() {
        let path = kix
            .services
            .get(i)
            .map(|k| join_index("kubernetes", *k))
            .unwrap_or_else(|| "kubernetes".into());
        // One remark per Service, at its first health-check annotation.
        if let Some(key) = svc.metadata.annotations.keys().find(|k| {
            CLB_HEALTH_CHECK_ANNOTATIONS
                .iter()
                .any(|p| k.starts_with(p))
        }) {
            out.push(Problem::at(
                lines,
                &join_key(&format!("{path}.metadata.annotations"), key),
                "CLB health checks are not modelled: the SLB mock forwards to every backend the cloud controller attached (for a Local Service only the nodes with ready endpoints); to see what a check would get, probe the port with http_status",
            ));
        }
    }
    out
}

/// A `timeout` holds wherever the packet is dropped, a broken dataplane
/// included, unless its `path` says where it must stop.
fn timeout_without_path_warnings(r: &Resolved, lines: &LineMap) -> Vec<Problem> {
    r.topo
        .expect
        .iter()
        .enumerate()
        .filter(|(_, e)| e.result == Verdict::Timeout && e.path.is_none())
        .map(|(i, _)| {
            Problem::at(
                lines,
                &join_key(&join_index("expect", i), "result"),
                "a timeout without path holds wherever the packet is dropped, a broken lab included: \
                 add path: ending at the point where it must stop (path: [] when no packet may leave the client)",
            )
        })
        .collect()
}

pub fn advise(r: &Resolved, lines: &LineMap) -> Vec<Problem> {
    let kix = KubeIndex::of(&r.topo);
    let mut out = proxy_warnings(r, lines);
    out.extend(timeout_without_path_warnings(r, lines));
    out.extend(terway_version_warning(r, lines));
    out.extend(clb_health_check_warnings(r, lines, &kix));
    for (i, svc) in r.services.iter().enumerate() {
        let Some(selector) = svc.spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let path = kix
            .services
            .get(i)
            .map(|k| join_index("kubernetes", *k))
            .unwrap_or_else(|| "kubernetes".into());
        let selected: Vec<&Pod> = r
            .pods
            .iter()
            .filter(|p| {
                p.metadata.ns() == svc.metadata.ns()
                    && selector
                        .iter()
                        .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
            })
            .collect();
        if selected.is_empty() {
            let want: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(Problem::at(
                lines,
                &format!("{path}.spec.selector"),
                format!(
                    "service {}: selector {} matches no pod in namespace {}; it has no endpoints",
                    svc_key(svc),
                    want.join(","),
                    svc.metadata.ns()
                ),
            ));
            continue;
        }
        for (j, port) in svc.spec.ports.iter().enumerate() {
            let Some(serde_yaml_ng::Value::String(name)) = &port.target_port else {
                continue;
            };
            if name.parse::<u16>().is_ok() {
                continue;
            }
            let defined = selected.iter().any(|p| {
                p.spec
                    .containers
                    .iter()
                    .flat_map(|c| &c.ports)
                    .any(|cp| cp.name.as_deref() == Some(name.as_str()))
            });
            if !defined {
                out.push(Problem::at(
                    lines,
                    &format!("{path}.spec.ports[{j}].targetPort"),
                    format!(
                        "service {}: no container of the {} selected pod(s) defines a port named {name:?}; the port has no endpoints",
                        svc_key(svc),
                        selected.len()
                    ),
                ));
            }
        }
    }
    out
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.metadata.ns(), p.metadata.name)
}

fn svc_key(s: &Service) -> String {
    format!("{}/{}", s.metadata.ns(), s.metadata.name)
}

/// Name → index of its first occurrence.
fn index(names: impl Iterator<Item = String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (i, n) in names.enumerate() {
        m.entry(n).or_insert(i);
    }
    m
}

struct V<'a> {
    r: &'a Resolved,
    lines: &'a LineMap,
    broken: &'a [String],
    out: Vec<Problem>,
    kix: KubeIndex,
    nodes: HashMap<String, usize>,
    externals: HashMap<String, usize>,
    vswitches: HashMap<String, usize>,
    sgs: HashMap<String, usize>,
    lbs: HashMap<String, usize>,
    pods: HashMap<String, usize>,
    services: HashMap<String, usize>,
    /// Addresses handed out so far: (address, who, path).
    taken: Vec<(Ipv4Addr, String, String)>,
}

impl<'a> V<'a> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(Problem::at(self.lines, path, message));
    }

    /// Whether the value at `path` was read (not a placeholder).
    fn ok(&self, path: &str) -> bool {
        !self.broken.iter().any(|b| is_within(path, b))
    }

    /// `path` with its line, for "first at …" remarks.
    fn place(&self, path: &str) -> String {
        match self.lines.line(path) {
            Some(l) => format!("{path}, line {l}"),
            None => path.to_string(),
        }
    }

    fn pod_path(&self, i: usize) -> String {
        self.kix
            .pods
            .get(i)
            .map(|k| join_index("kubernetes", *k))
            .unwrap_or_else(|| "kubernetes".into())
    }

    fn svc_path(&self, i: usize) -> String {
        self.kix
            .services
            .get(i)
            .map(|k| join_index("kubernetes", *k))
            .unwrap_or_else(|| "kubernetes".into())
    }

    fn pn_path(&self, i: usize) -> String {
        self.kix
            .podnetworkings
            .get(i)
            .map(|k| join_index("kubernetes", *k))
            .unwrap_or_else(|| "kubernetes".into())
    }

    /// Reports empty and repeated names; `items` are (name, path of the name).
    fn unique(&mut self, what: &str, items: Vec<(String, String)>) {
        let mut first: HashMap<String, String> = HashMap::new();
        for (name, path) in items {
            if !self.ok(&path) {
                continue;
            }
            if name.is_empty() || name.ends_with('/') {
                self.err(&path, format!("the {what} name must not be empty"));
                continue;
            }
            match first.get(&name) {
                Some(at) => {
                    let at = self.place(at);
                    self.err(&path, format!("duplicate {what} {name:?} (first at {at})"));
                }
                None => {
                    first.insert(name, path);
                }
            }
        }
    }

    /// Whether some item of the list at `list` could not be read far enough
    /// to know its name (at `key` inside the item): references to names of
    /// that list cannot be checked then.
    fn incomplete(&self, list: &str, key: &[&str]) -> bool {
        let list = split(list);
        self.broken.iter().any(|b| {
            let b = split(b);
            if b.len() < list.len() || b[..list.len()] != list[..] {
                return false;
            }
            let rest = &b[list.len()..];
            match rest.split_first() {
                None => true,
                Some((Seg::Index(_), inner)) => {
                    inner.len() <= key.len()
                        && inner
                            .iter()
                            .zip(key)
                            .all(|(s, k)| matches!(s, Seg::Key(x) if x == k))
                }
                Some(_) => false,
            }
        })
    }

    fn need(&mut self, path: &str, what: &str, name: &str, known: bool) {
        let (list, key): (&str, &[&str]) = match what {
            "node" => ("nodes", &["name"]),
            "external" => ("externals", &["name"]),
            "vswitch" => ("vpc.vswitches", &["id"]),
            "security group" => ("vpc.security_groups", &["id"]),
            "load balancer" => ("load_balancers", &["id"]),
            _ => ("kubernetes", &["metadata", "name"]),
        };
        if !known && self.ok(path) && !self.incomplete(list, key) {
            self.err(path, format!("unknown {what} {name:?}"));
        }
    }

    fn need_node(&mut self, path: &str, name: &str) {
        let known = self.nodes.contains_key(name);
        self.need(path, "node", name, known);
    }
    fn need_pod(&mut self, path: &str, ns: &str, name: &str) {
        let key = format!("{ns}/{name}");
        let known = self.pods.contains_key(&key);
        self.need(path, "pod", &key, known);
    }
    fn need_external(&mut self, path: &str, name: &str) {
        let known = self.externals.contains_key(name);
        self.need(path, "external", name, known);
    }
    fn need_sgs(&mut self, path: &str, ids: &[String]) {
        for (j, id) in ids.iter().enumerate() {
            let known = self.sgs.contains_key(id);
            self.need(&join_index(path, j), "security group", id, known);
        }
    }

    /// Claims `ip` for `who`, reporting it when someone has it already.
    fn claim(&mut self, ip: Ipv4Addr, who: String, path: &str) {
        if let Some((_, owner, at)) = self.taken.iter().find(|(a, ..)| *a == ip) {
            let msg = format!("{ip} is already used by {owner} ({})", self.place(at));
            self.err(path, msg);
            return;
        }
        self.taken.push((ip, who, path.to_string()));
    }

    /// The vSwitch `id` with a readable CIDR.
    fn vswitch(&self, id: &str) -> Option<(usize, &'a VSwitch)> {
        let i = *self.vswitches.get(id)?;
        let r: &'a Resolved = self.r;
        let vsw = &r.topo.vpc.vswitches[i];
        self.ok(&format!("vpc.vswitches[{i}].cidr"))
            .then_some((i, vsw))
    }

    /// Checks that `ip` is a usable address of vSwitch `vsw`.
    fn in_vswitch(&mut self, path: &str, ip: Ipv4Addr, vsw: &VSwitch) -> bool {
        if !vsw.cidr.contains(&ip) {
            self.err(
                path,
                format!("{ip} is outside vswitch {} ({})", vsw.id, vsw.cidr),
            );
            false
        } else if is_reserved(&vsw.cidr, ip) {
            self.err(
                path,
                format!(
                    "{ip} is reserved in vswitch {} ({}): Alibaba Cloud reserves the first and the last three addresses",
                    vsw.id, vsw.cidr
                ),
            );
            false
        } else {
            true
        }
    }

    fn aligned(&mut self, path: &str, net: &Ipv4Net) {
        if net.trunc() != *net && self.ok(path) {
            self.err(
                path,
                format!("{net} has host bits set (did you mean {}?)", net.trunc()),
            );
        }
    }

    // ------------------------------------------------------------ sections

    fn top(&mut self) {
        if self.r.topo.name.trim().is_empty() && self.ok("name") {
            self.err(
                "name",
                "the topology needs a name (it also seeds namespace names)",
            );
        }
    }

    /// `cni_plugins` where it is read: `cni: plugins` needs a conflist for
    /// every node; the flannel variant takes `bin_dir` only (its conflist
    /// is flannel's, from subnet.env); other modes ignore none silently.
    fn cni_plugins(&mut self) {
        let topo = &self.r.topo;
        let c = &topo.cluster;
        let flannel = matches!(c.cni, Cni::Flannel | Cni::FlannelVxlan);
        match (&c.cni_plugins, c.cni) {
            (Some(p), _) if flannel && p.conflist.is_some() => self.err(
                "cluster.cni_plugins.conflist",
                "with cni flannel, cnlab plays flanneld and pods get flannel's own chain (bridge + host-local from subnet.env, portmap): give only bin_dir, or use cni: plugins",
            ),
            (Some(_), other) if !flannel && other != Cni::Plugins => self.err(
                "cluster.cni_plugins",
                format!("cni {} does not run CNI plugins (use cni: plugins, flannel or flannel-vxlan)", other.as_str()),
            ),
            _ => {}
        }
        for (i, n) in topo.nodes.iter().enumerate() {
            let path = format!("nodes[{i}].cni_plugins");
            match &n.cni_plugins {
                Some(_) if c.cni != Cni::Plugins => self.err(
                    &path,
                    "a node's own plugin chain needs cluster.cni: plugins",
                ),
                None if c.cni == Cni::Plugins && c.cni_plugins.is_none() && self.ok(&path) => {
                    self.err(
                        &path,
                        format!(
                            "cni plugins: node {} has no plugin chain (set cluster.cni_plugins or this node's cni_plugins)",
                            n.name
                        ),
                    )
                }
                _ => {}
            }
            let own = n.cni_plugins.as_ref().or(c.cni_plugins.as_ref());
            // A conflist that could not be read was reported by the parser.
            if let Some(p) = own.filter(|p| c.cni == Cni::Plugins && p.source.is_empty()) {
                let at = match n.cni_plugins {
                    Some(_) => path.clone(),
                    None => "cluster.cni_plugins".to_string(),
                };
                let missing = format!("{at}.conflist");
                if p.conflist.is_none()
                    && self.ok(&at)
                    && !self.out.iter().any(|e| e.path == missing)
                {
                    self.err(
                        &missing,
                        "cni plugins: missing required key `conflist` (a file or an inline conflist)",
                    );
                }
            }
        }
    }

    fn cluster(&mut self) {
        self.cni_plugins();
        let c = &self.r.topo.cluster;
        let vpc = self.r.topo.vpc.cidr;
        match KubeVersion::parse(&c.kubernetes) {
            Err(e) => {
                if self.ok("cluster.kubernetes") {
                    self.err("cluster.kubernetes", e);
                }
            }
            Ok(v) => {
                let v = crate::plan::proxy::version::ProxyVersion(v);
                if let Err(e) = crate::plan::proxy::driver(c.proxy).check_version(v) {
                    self.err("cluster.proxy", e);
                }
            }
        }
        if let Some(pod) = c.pod_cidr {
            self.aligned("cluster.pod_cidr", &pod);
            if let Some(vpc) = vpc.filter(|v| overlaps(v, &pod)) {
                self.err(
                    "cluster.pod_cidr",
                    format!("pod_cidr {pod} overlaps vpc.cidr {vpc}"),
                );
            }
            if let Some(svc) = c.service_cidr.filter(|s| overlaps(s, &pod)) {
                self.err(
                    "cluster.pod_cidr",
                    format!("pod_cidr {pod} overlaps service_cidr {svc}"),
                );
            }
            if let Some(p) = c.node_cidr_prefix {
                if p < pod.prefix_len() || p > 30 {
                    self.err(
                        "cluster.node_cidr_prefix",
                        format!(
                            "node_cidr_prefix /{p} must lie between the pod_cidr's /{} and /30",
                            pod.prefix_len()
                        ),
                    );
                }
            }
        } else if c.cni.uses_pod_cidr() && self.ok("cluster.pod_cidr") {
            self.err(
                "cluster.pod_cidr",
                format!(
                    "cni {} takes pod addresses from cluster.pod_cidr, which is missing",
                    c.cni.as_str()
                ),
            );
        }
        if let Some(svc) = c.service_cidr {
            self.aligned("cluster.service_cidr", &svc);
            if let Some(vpc) = vpc.filter(|v| overlaps(v, &svc)) {
                self.err(
                    "cluster.service_cidr",
                    format!("service_cidr {svc} overlaps vpc.cidr {vpc}"),
                );
            }
        } else if !self.r.services.is_empty() && self.ok("cluster.service_cidr") {
            self.err(
                "cluster.service_cidr",
                "the topology has Services but no cluster.service_cidr",
            );
        }
        for (i, net) in c.host_stack_cidrs.iter().enumerate() {
            self.aligned(&format!("cluster.host_stack_cidrs[{i}]"), net);
        }
        // Terway reads host_stack_cidrs in its IPVLAN and exclusive-ENI
        // datapaths only; elsewhere a pod's traffic reaches the host anyway.
        if !c.host_stack_cidrs.is_empty()
            && !matches!(c.cni, Cni::TerwayEniipIpvlan | Cni::TerwayEni)
        {
            self.err(
                "cluster.host_stack_cidrs",
                format!(
                    "host_stack_cidrs is read by terway-eniip-ipvlan and terway-eni only, not by cni {} \
                     (its pods reach the host stack through their veth anyway)",
                    c.cni.as_str()
                ),
            );
        }
        // The only version-dependent Terway behaviour the lab plans is the
        // veth modes' rule 2048.
        if c.terway_version.is_some() && !matches!(c.cni, Cni::TerwayEniip | Cni::TerwayTrunking) {
            self.err(
                "cluster.terway_version",
                format!(
                    "terway_version decides rule 2048 of terway-eniip and terway-trunking only, not of cni {}",
                    c.cni.as_str()
                ),
            );
        }
    }

    fn vpc(&mut self) {
        let vpc = &self.r.topo.vpc;
        match vpc.cidr {
            Some(c) => self.aligned("vpc.cidr", &c),
            None if !vpc.vswitches.is_empty() && self.ok("vpc.cidr") => {
                self.err("vpc.cidr", "missing vpc.cidr (the VPC's address range)")
            }
            None => {}
        }
        self.unique(
            "vswitch",
            vpc.vswitches
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), format!("vpc.vswitches[{i}].id")))
                .collect(),
        );
        for (i, vsw) in vpc.vswitches.iter().enumerate() {
            let path = format!("vpc.vswitches[{i}].cidr");
            if !self.ok(&path) {
                continue;
            }
            self.aligned(&path, &vsw.cidr);
            if vsw.cidr.prefix_len() > 29 {
                self.err(
                    &path,
                    format!(
                        "vswitch cidr {} is too small (Alibaba vSwitches are /16 to /29)",
                        vsw.cidr
                    ),
                );
            }
            if let Some(vc) = vpc.cidr {
                if !vc.contains(&vsw.cidr) {
                    self.err(
                        &path,
                        format!("vswitch cidr {} is outside vpc.cidr {vc}", vsw.cidr),
                    );
                }
            }
            for (j, other) in vpc.vswitches[..i].iter().enumerate() {
                if overlaps(&vsw.cidr, &other.cidr) && self.ok(&format!("vpc.vswitches[{j}].cidr"))
                {
                    self.err(
                        &path,
                        format!(
                            "vswitch cidr {} overlaps vswitch {} ({})",
                            vsw.cidr, other.id, other.cidr
                        ),
                    );
                }
            }
        }
        for (i, re) in vpc.route_entries.iter().enumerate() {
            let path = format!("vpc.route_entries[{i}].next_hop");
            self.aligned(&format!("vpc.route_entries[{i}].dest"), &re.dest);
            if re.action == RouteAction::Remove {
                if !re.next_hop.is_empty() {
                    self.err(
                        &path,
                        "a removed entry has no next hop (action: remove takes dest only)",
                    );
                }
                continue;
            }
            if !self.ok(&path) {
                continue;
            }
            match re.next_hop.parse::<Ipv4Addr>() {
                Ok(ip) => {
                    if let Some(vc) = vpc.cidr.filter(|c| !c.contains(&ip)) {
                        self.err(&path, format!("next hop {ip} is outside vpc.cidr {vc}"));
                    }
                }
                Err(_) if !self.nodes.contains_key(&re.next_hop) => self.err(
                    &path,
                    format!(
                        "unknown node {:?} (next_hop is a node name or an address in the VPC)",
                        re.next_hop
                    ),
                ),
                Err(_) => {}
            }
        }
    }

    fn security_groups(&mut self) {
        let sgs = &self.r.topo.vpc.security_groups;
        self.unique(
            "security group",
            sgs.iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), format!("vpc.security_groups[{i}].id")))
                .collect(),
        );
        for (i, sg) in sgs.iter().enumerate() {
            for (j, rule) in sg.rules.iter().enumerate() {
                let path = format!("vpc.security_groups[{i}].rules[{j}]");
                if let Some(p) = rule.priority.filter(|p| !(1..=100).contains(p)) {
                    self.err(
                        &join_key(&path, "priority"),
                        format!("priority {p} is outside 1..=100"),
                    );
                }
                if let Some(ports) = &rule.ports {
                    if let Err(e) = parse_ports(ports) {
                        self.err(&join_key(&path, "ports"), e);
                    }
                }
            }
        }
    }

    fn nodes(&mut self) {
        let nodes = &self.r.topo.nodes;
        self.unique(
            "node",
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), format!("nodes[{i}].name")))
                .collect(),
        );
        for (i, n) in nodes.iter().enumerate() {
            let path = format!("nodes[{i}]");
            let vsw_path = join_key(&path, "vswitch");
            let known = self.vswitches.contains_key(&n.vswitch);
            self.need(&vsw_path, "vswitch", &n.vswitch, known);
            self.need_sgs(&join_key(&path, "security_groups"), &n.security_groups);
            if let Some(e) = n.enis {
                if e.max < 1 {
                    self.err(
                        &format!("{path}.enis.max"),
                        "a node has at least 1 ENI (the primary)",
                    );
                }
                if e.ips_per_eni < 1 {
                    self.err(
                        &format!("{path}.enis.ips_per_eni"),
                        "an ENI has at least 1 IP (its primary)",
                    );
                }
                if let Some(total) = e.total.filter(|&t| t < e.max) {
                    self.err(
                        &format!("{path}.enis.total"),
                        format!(
                            "enis.total ({total}) counts every ENI, enis.max ({}) included, so it cannot be smaller",
                            e.max
                        ),
                    );
                }
            }
            let ip_path = join_key(&path, "ip");
            if let (Some(ip), true) = (n.ip, self.ok(&ip_path)) {
                let usable = match self.vswitch(&n.vswitch) {
                    Some((_, vsw)) => self.in_vswitch(&ip_path, ip, vsw),
                    None => true,
                };
                if usable {
                    self.claim(ip, format!("node {}", n.name), &ip_path);
                }
            }
            if let Some(t) = &n.trunk {
                self.trunk(&join_key(&path, "trunk"), n, t);
            }
        }
    }

    /// A declared trunk: only for `cni: plugins` (Terway's trunking makes
    /// its own), on an instance that allows one; member VLANs unique,
    /// member addresses in their vSwitch and nobody else's.
    fn trunk(&mut self, path: &str, n: &Node, t: &TrunkEnis) {
        if self.r.topo.cluster.cni != Cni::Plugins {
            self.err(
                path,
                format!(
                    "a declared trunk ENI needs cluster.cni: plugins (cni {} attaches its own ENIs)",
                    self.r.topo.cluster.cni.as_str()
                ),
            );
            return;
        }
        let limits = crate::plan::limits::node_limits(n).0;
        if !limits.trunk {
            self.err(
                path,
                format!(
                    "node {} cannot carry a trunk ENI: set enis.trunk: true or an instance_type that allows one",
                    n.name
                ),
            );
        }
        let members = join_key(path, "members");
        // (A total below max is reported at enis.total already.)
        let quota = limits
            .member_enis()
            .filter(|_| limits.trunk && limits.total >= Some(limits.max));
        if let Some(quota) = quota.filter(|&q| t.members.len() > q as usize) {
            let terms = limits.member_quota_terms();
            let message = match quota {
                0 => format!(
                    "node {} takes no member ENI ({terms} = 0; Terway turns trunking off there)",
                    n.name
                ),
                q => format!(
                    "node {} takes {q} member ENIs ({terms}); this is member {}",
                    n.name,
                    q + 1
                ),
            };
            self.err(&join_index(&members, quota as usize), message);
        }
        for (j, m) in t.members.iter().enumerate() {
            let at = join_index(&members, j);
            if let Some(k) = t.members[..j].iter().position(|o| o.vlan == m.vlan) {
                let first = self.place(&join_key(&join_index(&members, k), "vlan"));
                self.err(
                    &join_key(&at, "vlan"),
                    format!(
                        "VLAN {} is already taken by another member ({first})",
                        m.vlan
                    ),
                );
            }
            let vsw_id = m.vswitch.clone().unwrap_or_else(|| n.vswitch.clone());
            if m.vswitch.is_some() {
                let known = self.vswitches.contains_key(&vsw_id);
                self.need(&join_key(&at, "vswitch"), "vswitch", &vsw_id, known);
            }
            self.need_sgs(&join_key(&at, "security_groups"), &m.security_groups);
            let ip_path = join_key(&at, "ip");
            if self.ok(&ip_path) {
                let usable = match self.vswitch(&vsw_id) {
                    Some((_, vsw)) => self.in_vswitch(&ip_path, m.ip, vsw),
                    None => true,
                };
                if usable {
                    self.claim(
                        m.ip,
                        format!("member ENI (VLAN {}) of node {}", m.vlan, n.name),
                        &ip_path,
                    );
                }
            }
        }
    }

    fn externals(&mut self) {
        let exts = &self.r.topo.externals;
        let vpc = self.r.topo.vpc.cidr;
        self.unique(
            "external",
            exts.iter()
                .enumerate()
                .map(|(i, e)| (e.name.clone(), format!("externals[{i}].name")))
                .collect(),
        );
        for (i, e) in exts.iter().enumerate() {
            let path = format!("externals[{i}]");
            let vsw_path = join_key(&path, "vswitch");
            let ip_path = join_key(&path, "ip");
            self.need_sgs(&join_key(&path, "security_groups"), &e.security_groups);
            let ip_ok = self.ok(&ip_path);
            if e.internet {
                if e.vswitch.is_some() {
                    self.err(
                        &vsw_path,
                        "an internet host has no vswitch (drop it, or drop internet: true)",
                    );
                }
                if let Some(vc) = vpc.filter(|c| ip_ok && c.contains(&e.ip)) {
                    self.err(
                        &ip_path,
                        format!("internet host {} is inside vpc.cidr {vc}", e.ip),
                    );
                } else if ip_ok {
                    self.claim(e.ip, format!("external {}", e.name), &ip_path);
                }
                continue;
            }
            let Some(vsw_id) = &e.vswitch else {
                if self.ok(&vsw_path) {
                    self.err(
                        &vsw_path,
                        "a host in the VPC needs a vswitch (or internet: true)",
                    );
                }
                continue;
            };
            let known = self.vswitches.contains_key(vsw_id);
            self.need(&vsw_path, "vswitch", vsw_id, known);
            if ip_ok {
                let usable = match self.vswitch(vsw_id) {
                    Some((_, vsw)) => self.in_vswitch(&ip_path, e.ip, vsw),
                    None => true,
                };
                if usable {
                    self.claim(e.ip, format!("external {}", e.name), &ip_path);
                }
            }
        }
    }

    fn load_balancers(&mut self) {
        let lbs = &self.r.topo.load_balancers;
        self.unique(
            "load balancer",
            lbs.iter()
                .enumerate()
                .map(|(i, l)| (l.id.clone(), format!("load_balancers[{i}].id")))
                .collect(),
        );
        for (i, lb) in lbs.iter().enumerate() {
            let path = format!("load_balancers[{i}]");
            let ip_path = join_key(&path, "ip");
            if self.ok(&ip_path) {
                self.claim(lb.ip, format!("load balancer {}", lb.id), &ip_path);
            }
            for (j, l) in lb.listeners.iter().enumerate() {
                for (k, b) in l.backends.iter().enumerate() {
                    let bp = format!("{path}.listeners[{j}].backends[{k}]");
                    let named = [b.external.is_some(), b.node.is_some(), b.pod.is_some()];
                    if named.iter().filter(|x| **x).count() != 1 {
                        self.err(&bp, "a backend names exactly one of external, node, pod");
                        continue;
                    }
                    if let Some(x) = &b.external {
                        self.need_external(&join_key(&bp, "external"), x);
                    }
                    if let Some(n) = &b.node {
                        self.need_node(&join_key(&bp, "node"), n);
                    }
                    if let Some(p) = &b.pod {
                        let pp = join_key(&bp, "pod");
                        let bare = p.strip_prefix("pod/").unwrap_or(p);
                        match bare.split_once('/') {
                            Some((ns, name)) => self.need_pod(&pp, ns, name),
                            None => {
                                self.err(&pp, format!("{p:?}: write the pod as <namespace>/<name>"))
                            }
                        }
                    }
                }
            }
        }
    }

    fn pods(&mut self) {
        let r = self.r;
        let cni = r.topo.cluster.cni;
        self.unique(
            "pod",
            r.pods
                .iter()
                .enumerate()
                .map(|(i, p)| (pod_key(p), format!("{}.metadata.name", self.pod_path(i))))
                .collect(),
        );
        for (i, pod) in r.pods.iter().enumerate() {
            let path = self.pod_path(i);
            let node_path = format!("{path}.spec.nodeName");
            match &pod.spec.node_name {
                None => {
                    if self.ok(&node_path) {
                        self.err(
                            &node_path,
                            "a pod needs spec.nodeName (the lab does not schedule pods)",
                        );
                    }
                }
                Some(n) => self.need_node(&node_path, n),
            }
            for (c, container) in pod.spec.containers.iter().enumerate() {
                for (p, port) in container.ports.iter().enumerate() {
                    let pp = format!("{path}.spec.containers[{c}].ports[{p}].containerPort");
                    if port.container_port == 0 && self.ok(&pp) {
                        self.err(&pp, "containerPort must be 1..=65535");
                    }
                    // The pod's echo server answers on exactly these.
                    if let Some(proto) = port.protocol.as_deref() {
                        if proto != "TCP" && proto != "UDP" {
                            self.err(
                                &format!("{path}.spec.containers[{c}].ports[{p}].protocol"),
                                format!("unknown value {proto:?} (accepted: TCP, UDP; SCTP is not modelled)"),
                            );
                        }
                    }
                }
            }
            let ip_path = format!("{path}.status.podIP");
            let Some(ip) = pod.status.pod_ip else {
                continue;
            };
            if pod.spec.host_network || !self.ok(&ip_path) {
                continue;
            }
            let usable = if cni.uses_pod_cidr() {
                match r.topo.cluster.pod_cidr {
                    Some(pc) if !pc.contains(&ip) => {
                        self.err(
                            &ip_path,
                            format!("pod IP {ip} is outside cluster.pod_cidr {pc} (cni {} takes pod IPs from it)", cni.as_str()),
                        );
                        false
                    }
                    _ => true,
                }
            } else {
                let home = r.topo.vpc.vswitches.iter().enumerate().find(|(j, s)| {
                    s.cidr.contains(&ip) && self.ok(&format!("vpc.vswitches[{j}].cidr"))
                });
                match home {
                    Some((_, vsw)) => self.in_vswitch(&ip_path, ip, vsw),
                    None => {
                        self.err(
                            &ip_path,
                            format!("pod IP {ip} is in no vswitch (cni {} takes pod IPs from vSwitches)", cni.as_str()),
                        );
                        false
                    }
                }
            };
            if usable {
                self.claim(ip, format!("pod {}", pod_key(pod)), &ip_path);
            }
        }
    }

    fn services(&mut self) {
        let r = self.r;
        self.unique(
            "service",
            r.services
                .iter()
                .enumerate()
                .map(|(i, s)| (svc_key(s), format!("{}.metadata.name", self.svc_path(i))))
                .collect(),
        );
        let mut node_ports: HashMap<u16, String> = HashMap::new();
        for (i, svc) in r.services.iter().enumerate() {
            let path = self.svc_path(i);
            let spec = &svc.spec;
            let one_of = |v: &Option<String>, accepted: &[&str]| match v {
                Some(s) if !accepted.contains(&s.as_str()) => Some(format!(
                    "unknown value {s:?} (accepted: {})",
                    accepted.join(", ")
                )),
                _ => None,
            };
            let enums = [
                (
                    "type",
                    one_of(
                        &spec.type_,
                        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
                    ),
                ),
                (
                    "externalTrafficPolicy",
                    one_of(&spec.external_traffic_policy, &["Cluster", "Local"]),
                ),
                (
                    "internalTrafficPolicy",
                    one_of(&spec.internal_traffic_policy, &["Cluster", "Local"]),
                ),
                (
                    "sessionAffinity",
                    one_of(&spec.session_affinity, &["None", "ClientIP"]),
                ),
            ];
            for (key, problem) in enums {
                if let Some(m) = problem {
                    self.err(&format!("{path}.spec.{key}"), m);
                }
            }
            // The API server's checks (pkg/apis/core/validation
            // validateClientIPAffinityConfig).
            if let Some(cfg) = &spec.session_affinity_config {
                let cp = format!("{path}.spec.sessionAffinityConfig");
                if spec.session_affinity.as_deref() != Some("ClientIP") {
                    self.err(&cp, "must not be set when sessionAffinity is not ClientIP");
                } else if let Some(t) = cfg.client_ip.as_ref().and_then(|c| c.timeout_seconds) {
                    if t == 0 || t > MAX_AFFINITY_SECONDS {
                        self.err(
                            &format!("{cp}.clientIP.timeoutSeconds"),
                            format!("must be greater than 0 and less than or equal to {MAX_AFFINITY_SECONDS}"),
                        );
                    }
                }
            }
            if let Some(ip) = spec
                .cluster_ip
                .as_deref()
                .filter(|s| !s.is_empty() && *s != "None")
            {
                let cp = format!("{path}.spec.clusterIP");
                match (ip.parse::<Ipv4Addr>(), r.topo.cluster.service_cidr) {
                    (Err(_), _) => self.err(
                        &cp,
                        format!("clusterIP {ip:?} is not an IPv4 address or None"),
                    ),
                    (Ok(a), Some(sc)) if !sc.contains(&a) => self.err(
                        &cp,
                        format!("clusterIP {a} is outside cluster.service_cidr {sc}"),
                    ),
                    _ => {}
                }
            }
            for (j, port) in spec.ports.iter().enumerate() {
                let pp = format!("{path}.spec.ports[{j}]");
                if port.port == 0 && self.ok(&format!("{pp}.port")) {
                    self.err(&format!("{pp}.port"), "port must be 1..=65535");
                }
                if let Some(m) = one_of(&port.protocol, &["TCP", "UDP"]) {
                    self.err(&format!("{pp}.protocol"), m);
                }
                if let Some(np) = port.node_port {
                    let npp = format!("{pp}.nodePort");
                    match node_ports.get(&np) {
                        Some(first) => {
                            let at = self.place(first);
                            self.err(&npp, format!("nodePort {np} is already used ({at})"));
                        }
                        None => {
                            node_ports.insert(np, npp);
                        }
                    }
                }
            }
            for (j, cidr) in spec.load_balancer_source_ranges.iter().enumerate() {
                if cidr.trim().parse::<Ipv4Net>().is_err() {
                    self.err(
                        &format!("{path}.spec.loadBalancerSourceRanges[{j}]"),
                        format!("{cidr:?} is not an IPv4 CIDR (the lab is IPv4)"),
                    );
                }
            }
            if let Some(v) = svc.metadata.annotations.get(SOURCE_RANGES_ANNOTATION) {
                if let Some(bad) = v
                    .split(',')
                    .map(str::trim)
                    .find(|c| !c.is_empty() && c.parse::<Ipv4Net>().is_err())
                {
                    let ap = join_key(
                        &format!("{path}.metadata.annotations"),
                        SOURCE_RANGES_ANNOTATION,
                    );
                    self.err(&ap, format!("{bad:?} is not an IPv4 CIDR"));
                }
            }
            if let Some(hc) = spec.health_check_node_port {
                let hp = format!("{path}.spec.healthCheckNodePort");
                let local_lb = spec.type_.as_deref() == Some("LoadBalancer")
                    && spec.external_traffic_policy.as_deref() == Some("Local");
                if !local_lb {
                    // pkg/apis/core/validation: "may only be set when `type`
                    // is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'".
                    self.err(&hp, "may only be set when type is LoadBalancer and externalTrafficPolicy is Local");
                } else {
                    match node_ports.get(&hc) {
                        Some(first) => {
                            let at = self.place(first);
                            self.err(
                                &hp,
                                format!("healthCheckNodePort {hc} is already used ({at})"),
                            );
                        }
                        None => {
                            node_ports.insert(hc, hp);
                        }
                    }
                }
            }
            if let Some(id) = svc.metadata.annotations.get(LB_ID_ANNOTATION) {
                if !self.lbs.contains_key(id) {
                    let ap = join_key(&format!("{path}.metadata.annotations"), LB_ID_ANNOTATION);
                    self.err(
                        &ap,
                        format!("unknown load balancer {id:?} (not in load_balancers)"),
                    );
                }
            }
        }
    }

    fn podnetworkings(&mut self) {
        let r = self.r;
        self.unique(
            "PodNetworking",
            r.podnetworkings
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        p.metadata.name.clone(),
                        format!("{}.metadata.name", self.pn_path(i)),
                    )
                })
                .collect(),
        );
        for (i, pn) in r.podnetworkings.iter().enumerate() {
            let path = self.pn_path(i);
            for (j, id) in pn.spec.vswitch_options.iter().enumerate() {
                let known = self.vswitches.contains_key(id);
                self.need(
                    &format!("{path}.spec.vSwitchOptions[{j}]"),
                    "vswitch",
                    id,
                    known,
                );
            }
            for (j, id) in pn.spec.security_group_ids.iter().enumerate() {
                let known = self.sgs.contains_key(id);
                self.need(
                    &format!("{path}.spec.securityGroupIDs[{j}]"),
                    "security group",
                    id,
                    known,
                );
            }
        }
    }

    fn point(&mut self, path: &str, id: &str) {
        if !self.ok(path) {
            return;
        }
        // `eth0/n1|eni/secondary:n1/eth1`: any of these.
        if id.contains('|') {
            for alt in id.split('|') {
                self.point(path, alt.trim());
            }
            return;
        }
        // `trunk/<node>@vlan=1027`: the hop must carry that 802.1Q id.
        let id = match id.rsplit_once("@vlan=") {
            Some((point, vid)) => {
                if !vid.parse::<u16>().is_ok_and(|v| (1..=4094).contains(&v)) {
                    self.err(
                        path,
                        format!("{id:?}: @vlan= takes a VLAN id from 1 to 4094"),
                    );
                    return;
                }
                point
            }
            None => id,
        };
        // `eni/member:*`: every point whose id or alias starts with the
        // rest; its kind must be one, what follows cannot be checked.
        if let Some(prefix) = id.strip_suffix('*') {
            let kind = prefix.split_once('/').map(|(k, _)| k);
            if !kind.is_some_and(|k| crate::topology::point::POINT_KINDS.contains(&k)) {
                self.err(
                    path,
                    format!(
                        "{id:?}: a prefix must start with a point kind ({})",
                        crate::topology::point::POINT_FORMS
                    ),
                );
            }
            return;
        }
        match id.parse::<PointId>() {
            Err(e) => self.err(path, e),
            Ok(PointId::Pod { ns, name })
            | Ok(PointId::PodIf { ns, name, .. })
            | Ok(PointId::HostVeth { ns, name })
            | Ok(PointId::Eni(EniRef::Member { ns, name }))
            | Ok(PointId::Eni(EniRef::Pod { ns, name })) => self.need_pod(path, &ns, &name),
            // A node's interface may be created at run time (by a CNI
            // plugin): only the node is checked here.
            Ok(
                p @ (PointId::Node(_)
                | PointId::NodeIf { .. }
                | PointId::Eth0(_)
                | PointId::Trunk(_)
                | PointId::Hv(_)
                | PointId::Eni(EniRef::Primary(_))
                | PointId::Eni(EniRef::Secondary { .. })
                | PointId::Eni(EniRef::Vlan { .. })),
            ) => self.need_node(path, p.node_name().unwrap_or_default()),
            Ok(PointId::External(n)) | Ok(PointId::Eni(EniRef::External(n))) => {
                self.need_external(path, &n)
            }
            // ENI and SLB ids may be allocated at run time: free-form.
            Ok(PointId::Eni(EniRef::Id(_))) | Ok(PointId::Slb(_)) | Ok(PointId::Vpc) => {}
        }
    }

    fn expectations(&mut self) {
        let r = self.r;
        for (i, e) in r.topo.expect.iter().enumerate() {
            let path = format!("expect[{i}]");
            let at = |key: &str| join_key(&path, key);
            if e.name.trim().is_empty() && self.ok(&at("name")) {
                self.err(&at("name"), "the expectation needs a name");
            }
            if self.ok(&at("from")) {
                match parse_origin(&e.from) {
                    Err(m) => self.err(&at("from"), m),
                    Ok(Origin::Pod { ns, name }) => self.need_pod(&at("from"), &ns, &name),
                    Ok(Origin::Node(n)) => self.need_node(&at("from"), &n),
                    Ok(Origin::External(n)) => self.need_external(&at("from"), &n),
                }
            }
            if e.result == Verdict::Pending {
                self.pending_expectation(&path, e);
                continue;
            }
            if let Some(_reason) = &e.reason {
                self.err(&at("reason"), "reason belongs to result: pending");
            }
            if self.ok(&at("to")) {
                match parse_target(&e.to) {
                    Err(m) => self.err(&at("to"), m),
                    // A placeholder protocol cannot tell whether a port is needed.
                    Ok(t) => self.target(&at("to"), &t, e.proto, self.ok(&at("proto"))),
                }
            }
            if let Some(src) = &e.source {
                let sp = at("source");
                match parse_source(src) {
                    Err(m) => self.err(&sp, m),
                    Ok(s) => {
                        // `source` on a non-connected expectation is only
                        // documentation (TOPOLOGY.md's own example has one):
                        // nothing answered, so there is nothing to compare.
                        if e.result == Verdict::Connected && e.proto == Proto::Icmp {
                            self.err(&sp, "source cannot be checked for icmp (an echo reply does not report the peer address)");
                        }
                        if let SourceExpect::Node(n) = s {
                            self.need_node(&sp, &n);
                        }
                    }
                }
            }
            match e.served_by.as_deref() {
                Some([one]) => self.point(&at("served_by"), one),
                Some(list) => {
                    for (j, id) in list.iter().enumerate() {
                        self.point(&join_index(&at("served_by"), j), id);
                    }
                }
                None => {}
            }
            if e.repeat == Some(0) {
                self.err(&at("repeat"), "repeat must be at least 1");
            }
            if e.refused_by.is_some() && e.result != Verdict::Refused {
                self.err(
                    &at("refused_by"),
                    "refused_by applies only to result: refused",
                );
            }
            if e.path.as_ref().is_some_and(|p| p.is_empty()) && e.result != Verdict::Timeout {
                self.err(
                    &at("path"),
                    "path: [] (no packet leaves the client) only goes with result: timeout",
                );
            }
            for (key, ids) in [("path", &e.path), ("avoids", &e.avoids)] {
                for (j, id) in ids.iter().flatten().enumerate() {
                    self.point(&join_index(&at(key), j), id);
                }
            }
            if let Some(k) = e.when.as_ref().and_then(|w| w.kubernetes.as_ref()) {
                let wp = join_key(&at("when"), "kubernetes");
                if let Err(m) = VersionReq::parse(k) {
                    if self.ok(&wp) {
                        self.err(&wp, m);
                    }
                }
            }
            if e.timeout_ms == Some(0) {
                self.err(&at("timeout_ms"), "timeout_ms must be more than 0");
            }
        }
    }

    /// `result: pending`: `from` is a pod, and nothing of a probe is asked.
    fn pending_expectation(&mut self, path: &str, e: &Expectation) {
        let at = |key: &str| join_key(path, key);
        if self.ok(&at("from")) {
            match parse_origin(&e.from) {
                Ok(Origin::Pod { ns, name }) => self.need_pod(&at("from"), &ns, &name),
                Ok(_) => self.err(
                    &at("from"),
                    "result: pending is about a pod: from: pod/<ns>/<name>",
                ),
                Err(m) => self.err(&at("from"), m),
            }
        }
        let probe_keys = [
            ("to", !e.to.is_empty()),
            ("source", e.source.is_some()),
            ("served_by", e.served_by.is_some()),
            ("path", e.path.is_some()),
            ("avoids", e.avoids.is_some()),
            ("timeout_ms", e.timeout_ms.is_some()),
        ];
        for (key, present) in probe_keys {
            if present {
                self.err(
                    &at(key),
                    format!("{key} asks about a probe; a pending pod is not probed"),
                );
            }
        }
    }

    fn target(&mut self, path: &str, t: &Target, proto: Proto, proto_known: bool) {
        if proto_known
            && t.port().is_none()
            && proto != Proto::Icmp
            && !matches!(t, Target::NodePort { .. })
        {
            self.err(path, format!("{t} needs a port (only icmp probes omit it)"));
        }
        match t {
            Target::Pod { ns, name, .. } => self.need_pod(path, ns, name),
            Target::Service { ns, name, via, .. } => {
                let key = format!("{ns}/{name}");
                let Some(&i) = self.services.get(&key) else {
                    self.need(path, "service", &key, false);
                    return;
                };
                let svc = &self.r.services[i];
                match via {
                    ServiceVia::Lb if svc.spec.type_.as_deref() != Some("LoadBalancer") => self
                        .err(
                            path,
                            format!("@lb needs service {key} to be of type LoadBalancer"),
                        ),
                    ServiceVia::ExternalIp if svc.spec.external_ips.is_empty() => self.err(
                        path,
                        format!("@external-ip needs spec.externalIPs on service {key}"),
                    ),
                    _ => {}
                }
            }
            Target::NodePort { node, ns, name } => {
                self.need_node(path, node);
                let key = format!("{ns}/{name}");
                let known = self.services.contains_key(&key);
                self.need(path, "service", &key, known);
            }
            Target::Ip { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            KubeVersion::parse("1.24").unwrap(),
            KubeVersion::new(1, 24, 0)
        );
        assert_eq!(
            KubeVersion::parse("v1.30.2").unwrap(),
            KubeVersion::new(1, 30, 2)
        );
        assert_eq!(
            KubeVersion::parse("1.24.6-aliyun.1").unwrap(),
            KubeVersion::new(1, 24, 6)
        );
        assert!(KubeVersion::parse("1.22").unwrap() < KubeVersion::parse("1.24").unwrap());
        assert!(KubeVersion::parse("1.9").unwrap() < KubeVersion::parse("1.10").unwrap());
        for bad in ["", "1", "1.", "1.x", "1.2.3.4", "latest", "v", "1..2"] {
            assert!(
                KubeVersion::parse(bad)
                    .unwrap_err()
                    .contains("not a Kubernetes version"),
                "{bad}"
            );
        }
        assert!(KubeVersion::parse("2.0")
            .unwrap_err()
            .contains("only Kubernetes 1.x"));
    }

    #[test]
    fn ports() {
        let t = |s: &str| parse_ports(&PortSpec::Text(s.into()));
        assert_eq!(parse_ports(&PortSpec::Number(80)).unwrap(), vec![(80, 80)]);
        assert_eq!(t("80").unwrap(), vec![(80, 80)]);
        assert_eq!(t("8000-9000").unwrap(), vec![(8000, 9000)]);
        assert_eq!(t("80, 443").unwrap(), vec![(80, 80), (443, 443)]);
        assert_eq!(t("22/22").unwrap(), vec![(22, 22)]);
        assert!(parse_ports(&PortSpec::Number(0))
            .unwrap_err()
            .contains("1..=65535"));
        assert!(t("0").unwrap_err().contains("1..=65535"));
        assert!(t("70000").unwrap_err().contains("1..=65535"));
        assert!(t("9000-8000").unwrap_err().contains("backwards"));
        assert!(t("").unwrap_err().contains("empty"));
        assert!(t("80,").unwrap_err().contains("1..=65535"));
        assert!(t("http").unwrap_err().contains("\"http\""));
    }

    #[test]
    fn reserved_addresses() {
        let net: Ipv4Net = "10.0.4.0/24".parse().unwrap();
        for last in [0u8, 253, 254, 255] {
            assert!(is_reserved(&net, Ipv4Addr::new(10, 0, 4, last)), "{last}");
        }
        for last in [1u8, 2, 20, 252] {
            assert!(!is_reserved(&net, Ipv4Addr::new(10, 0, 4, last)), "{last}");
        }
    }
}
