//! The topology YAML model: the keys of `spec/TOPOLOGY.md`, one struct per
//! section. Everything here is plain data; parsing with line numbers lives in
//! `parse`, checks in `validate`.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Topology {
    /// Unique name; also seeds namespace and interface names.
    pub name: String,
    pub description: Option<String>,
    pub cluster: Cluster,
    pub vpc: Vpc,
    pub nodes: Vec<Node>,
    pub externals: Vec<External>,
    pub load_balancers: Vec<LoadBalancer>,
    /// Kubernetes objects exactly as `kubectl get -o yaml` prints them.
    /// Kept raw here; `k8s::objects()` turns them into typed objects.
    pub kubernetes: Vec<serde_yaml_ng::Value>,
    pub expect: Vec<Expectation>,
    /// netem impairments on links, in place from bring-up.
    pub impairments: Vec<Impairment>,
    /// Faults that happen one after another while the lab runs; an
    /// expectation with `after: <event>` is probed once that event (and
    /// every one before it) has happened.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Cluster {
    /// Any 1.x, as a string ("1.24", "v1.30.2").
    pub kubernetes: String,
    pub cni: Cni,
    pub proxy: ProxyMode,
    pub service_cidr: Option<Ipv4Net>,
    /// flannel, flannel-vxlan and terway-vpc only.
    pub pod_cidr: Option<Ipv4Net>,
    /// Size of each node's slice of `pod_cidr` (flannel `SubnetLen`), default 24.
    pub node_cidr_prefix: Option<u8>,
    /// `cni: plugins`: the CNI plugin chain every node runs (a node may
    /// override it). With `cni: flannel`/`flannel-vxlan` and no conflist:
    /// cnlab plays flanneld and pods are plumbed by the real plugins.
    pub cni_plugins: Option<CniPlugins>,
    /// Terway's eni-config `host_stack_cidrs`: destinations a pod reaches
    /// through the node's own stack (terway-eniip-ipvlan: more CIDRs in the
    /// tc redirect to ipvl_N; terway-eni: more routes via veth1).
    pub host_stack_cidrs: Vec<Ipv4Net>,
    /// The node-local-dns add-on's address (169.254.20.10): every node binds
    /// it on a `nodelocaldns` dummy interface and answers on port 53.
    pub node_local_dns: Option<Ipv4Addr>,
    /// Terway's version (terway-eniip, terway-trunking): from v1.4.2 rule
    /// 2048 is `from <podIP> lookup <table>` (commit efd05996 "cni: remove
    /// iif in ip rule"); before, and when absent, `from <podIP> iif <host
    /// veth> lookup <table>`. Checked to be a version when parsed.
    pub terway_version: Option<String>,
}

/// A CNI plugin chain: where the binaries are and the network config list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct CniPlugins {
    /// `CNI_PATH`.
    pub bin_dir: std::path::PathBuf,
    /// The conflist, read at load time (from the file or inline YAML).
    /// `None`: the flannel variant derives it from the node's subnet.env.
    pub conflist: Option<serde_json::Value>,
    /// The file it came from (resolved against the topology's directory),
    /// or `inline`.
    pub source: String,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            kubernetes: "1.24".into(),
            cni: Cni::Flannel,
            proxy: ProxyMode::Ipvs,
            service_cidr: None,
            pod_cidr: None,
            node_cidr_prefix: None,
            cni_plugins: None,
            host_stack_cidrs: Vec::new(),
            node_local_dns: None,
            terway_version: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Cni {
    Flannel,
    FlannelVxlan,
    TerwayVpc,
    TerwayEni,
    TerwayEniip,
    TerwayEniipIpvlan,
    TerwayTrunking,
    /// The lab as a CNI runtime: pods plumbed by `cluster.cni_plugins`.
    Plugins,
}

impl Cni {
    pub fn as_str(self) -> &'static str {
        match self {
            Cni::Flannel => "flannel",
            Cni::FlannelVxlan => "flannel-vxlan",
            Cni::TerwayVpc => "terway-vpc",
            Cni::TerwayEni => "terway-eni",
            Cni::TerwayEniip => "terway-eniip",
            Cni::TerwayEniipIpvlan => "terway-eniip-ipvlan",
            Cni::TerwayTrunking => "terway-trunking",
            Cni::Plugins => "plugins",
        }
    }
    /// CNIs whose pods take addresses from `cluster.pod_cidr` (not the VPC).
    pub fn uses_pod_cidr(self) -> bool {
        matches!(self, Cni::Flannel | Cni::FlannelVxlan | Cni::TerwayVpc)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Ipvs,
    Iptables,
    Nftables,
}

impl ProxyMode {
    /// The name `cluster.proxy` and `when.proxy` use.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Ipvs => "ipvs",
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Vpc {
    pub cidr: Option<Ipv4Net>,
    pub vswitches: Vec<VSwitch>,
    pub route_entries: Vec<RouteEntry>,
    pub security_groups: Vec<SecurityGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VSwitch {
    pub id: String,
    #[serde(default)]
    pub zone: Option<String>,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteEntry {
    pub dest: Ipv4Net,
    /// A node name or an IPv4 address in the VPC (empty for `remove`).
    pub next_hop: String,
    /// What the entry does to the route table the cloud controller keeps.
    #[serde(default)]
    pub action: RouteAction,
}

/// A customer's route table as it really is: an extra entry, an entry in
/// place of the one the cloud controller creates for a node's pod CIDR (a
/// wrong next hop), or the controller's entry missing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    #[default]
    Add,
    Replace,
    Remove,
}

impl RouteAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteAction::Add => "add",
            RouteAction::Replace => "replace",
            RouteAction::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    /// Same-group traffic: accept (the default for a normal SG) or drop.
    #[serde(default)]
    pub inner_access: Option<Action>,
    #[serde(default)]
    pub rules: Vec<SgRule>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Drop,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    #[default]
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SgRule {
    pub direction: Direction,
    pub action: Action,
    #[serde(default)]
    pub proto: Proto,
    /// "80", "8000-9000", "80,443"; absent = all ports.
    #[serde(default)]
    pub ports: Option<PortSpec>,
    /// Peer CIDR (source for ingress, destination for egress); absent = 0.0.0.0/0.
    #[serde(default)]
    pub cidr: Option<Ipv4Net>,
    /// 1..=100, lower first; drop wins ties. Default 1.
    #[serde(default)]
    pub priority: Option<u8>,
}

/// Ports as written: a number or a string of ranges ("80", "8000-9000", "80,443").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PortSpec {
    Number(u16),
    Text(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node {
    pub name: String,
    /// Primary ENI address; allocated from the vSwitch when absent.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    pub vswitch: String,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub enis: Option<EniLimits>,
    /// A built-in ECS instance type (e.g. ecs.g7.large) giving ENI limits.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Node labels (for PodNetworking/Service selection, nodeSelector).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Echo servers the node itself runs (TCP and UDP), like a host daemon.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `cni: plugins`: this node's own plugin chain (overrides the cluster's).
    #[serde(default)]
    pub cni_plugins: Option<CniPlugins>,
    /// `cni: plugins`: a trunk ENI the cloud attaches to this node (its
    /// `eth1`) and the member ENIs riding it, each on its own VLAN — what
    /// Terway's trunking would create, declared for a plugin to use.
    #[serde(default)]
    pub trunk: Option<TrunkEnis>,
}

/// A trunk ENI and its member ENIs, as a topology declares them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct TrunkEnis {
    pub members: Vec<MemberEni>,
}

/// A member ENI: the VPC terminates its VLAN on the trunk and delivers
/// its address there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberEni {
    pub vlan: u16,
    pub ip: Ipv4Addr,
    /// Absent: the node's vSwitch.
    #[serde(default)]
    pub vswitch: Option<String>,
    /// Absent: the node's security groups.
    #[serde(default)]
    pub security_groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EniLimits {
    /// ENIs per instance, the primary included.
    pub max: u32,
    /// Private IPs per ENI, the primary IP included.
    pub ips_per_eni: u32,
    /// Instance can carry a trunk ENI.
    pub trunk: bool,
    /// Every ENI the instance takes, member ENIs included (the ECS API's
    /// `EniTotalQuantity`); `None`: not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
}

impl Default for EniLimits {
    fn default() -> Self {
        EniLimits {
            max: 3,
            ips_per_eni: 10,
            trunk: false,
            total: None,
        }
    }
}

impl EniLimits {
    /// Member ENIs the instance can carry on its trunk, Terway's
    /// `MemberAdapterLimit` (`pkg/aliyun/client/limit.go`):
    /// `EniTotalQuantity − EniQuantity`, and 0 without trunk support. The
    /// node advertises it as the extended resource `aliyun/member-eni`.
    /// `None`: the total is not known, so neither is the quota.
    pub fn member_enis(&self) -> Option<u32> {
        if !self.trunk {
            return Some(0);
        }
        self.total.map(|t| t.saturating_sub(self.max))
    }

    /// `EniTotalQuantity 6 − EniQuantity 4`, as reasons and errors say it.
    pub fn member_quota_terms(&self) -> String {
        format!(
            "EniTotalQuantity {} − EniQuantity {}",
            self.total.unwrap_or_default(),
            self.max
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct External {
    pub name: String,
    pub ip: Ipv4Addr,
    /// vSwitch for an ECS in the VPC; absent when `internet: true`.
    #[serde(default)]
    pub vswitch: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Echo server ports (TCP and UDP).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// A host on the public side: reaches SLBs only.
    #[serde(default)]
    pub internet: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadBalancer {
    pub id: String,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Listener {
    pub port: u16,
    #[serde(default = "default_tcp")]
    pub proto: Proto,
    #[serde(default)]
    pub backends: Vec<LbBackend>,
}

fn default_tcp() -> Proto {
    Proto::Tcp
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LbBackend {
    #[serde(default)]
    pub external: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    /// `<ns>/<name>` (`pod/<ns>/<name>` is accepted too).
    #[serde(default)]
    pub pod: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Connected,
    Refused,
    Timeout,
    /// `from` is a pod the CNI cannot start (no probe runs).
    Pending,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Connected => "connected",
            Verdict::Refused => "refused",
            Verdict::Timeout => "timeout",
            Verdict::Pending => "pending",
        }
    }
}

/// How a refused connection was refused, as the client's kernel saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RefusedBy {
    /// A TCP reset (a local stack with no listener).
    Rst,
    /// ICMP destination-unreachable/port-unreachable.
    Icmp,
}

impl RefusedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedBy::Rst => "rst",
            RefusedBy::Icmp => "icmp",
        }
    }
}

/// `served_by: pod/a/x` or `served_by: [pod/a/x, pod/a/y]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

/// Probes an expectation sends when it asserts spreading or affinity.
pub const DEFAULT_REPEAT: u32 = 8;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Expectation {
    pub name: String,
    /// `pod/<ns>/<name>` | `node/<name>` | `external/<name>`
    pub from: String,
    /// `pod/<ns>/<name>:<port>` | `service/<ns>/<name>:<port>[@external-ip|@lb]`
    /// | `nodeport/<node>/<ns>/<name>` | `ip/<addr>:<port>` (ICMP: port omitted)
    pub to: String,
    #[serde(default = "default_tcp")]
    pub proto: Proto,
    pub result: Verdict,
    /// `client` | `node/<name>` | `ip/<addr>`
    #[serde(default)]
    pub source: Option<String>,
    /// Who must answer: one identity, or a list that repeated probes must
    /// reach every one of, and nothing else.
    #[serde(default, deserialize_with = "one_or_many")]
    pub served_by: Option<Vec<String>>,
    /// How many probes to send (default 1; with a `served_by` list or
    /// `sticky`, `DEFAULT_REPEAT`).
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Every repeated probe answered by the same backend (session affinity).
    #[serde(default)]
    pub sticky: Option<bool>,
    /// `refused` only: how the client was refused (a TCP RST, or ICMP
    /// port-unreachable as IPVS sends for a virtual server without real servers).
    #[serde(default)]
    pub refused_by: Option<RefusedBy>,
    /// Send an HTTP GET instead of the echo request and expect this status
    /// (kube-proxy's health check node port answers 200 or 503).
    #[serde(default)]
    pub http_status: Option<u16>,
    #[serde(default)]
    pub path: Option<Vec<String>>,
    #[serde(default)]
    pub avoids: Option<Vec<String>>,
    /// Probe deadline in milliseconds (default 1500).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Applies only to labs matching this (absent: always).
    #[serde(default)]
    pub when: Option<When>,
    /// With `result: pending`: text the pod's pending reason must contain.
    #[serde(default)]
    pub reason: Option<String>,
    /// The event (`events[].name`) after which this is probed; absent:
    /// before the first event.
    #[serde(default)]
    pub after: Option<String>,
}

impl Expectation {
    /// An expectation with only its ends and verdict set (TCP, one probe,
    /// no source, path or repeat asserted): what the library's probe
    /// builder and generated benchmarks start from.
    pub fn new(
        name: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        result: Verdict,
    ) -> Self {
        Expectation {
            name: name.into(),
            from: from.into(),
            to: to.into(),
            proto: Proto::Tcp,
            result,
            source: None,
            served_by: None,
            repeat: None,
            sticky: None,
            refused_by: None,
            http_status: None,
            path: None,
            avoids: None,
            timeout_ms: None,
            when: None,
            reason: None,
            after: None,
        }
    }
}

// ---------------------------------------------------------------- faults

/// A netem impairment on the link (veth pair) at an observation point, in
/// both directions, as a bad cable or a congested hop would be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Impairment {
    /// An observation point with an interface: `eth0/<node>`,
    /// `host-veth/<ns>/<pod>`, `pod/<ns>/<pod>` (its eth0), `trunk/<node>`.
    pub link: String,
    pub netem: Netem,
}

/// What `tc qdisc … netem` does to every packet leaving each end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Netem {
    pub delay_ms: Option<u32>,
    pub jitter_ms: Option<u32>,
    /// Percent of packets dropped (0..=100).
    pub loss: Option<u32>,
    /// Percent of packets sent twice.
    pub duplicate: Option<u32>,
    /// Percent of packets sent at once while the others wait `delay_ms`.
    pub reorder: Option<u32>,
    /// Rate limit as tc writes it: `100kbit`, `10mbit`, `1gbit`.
    pub rate: Option<String>,
}

/// One timed fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Named by `expect[].after`.
    pub name: String,
    pub action: EventAction,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// The interface at this observation point goes down; its peer loses carrier.
    LinkDown(String),
    LinkUp(String),
    /// Every pod on this node is restarted (new sandbox, same address).
    PodsRestarted(String),
    /// This pod (`pod/<ns>/<name>`) is being deleted: its endpoints are
    /// terminating (not ready, still serving) and kube-proxy reacts.
    EndpointTerminating(String),
    /// The VPC route entry for this destination is deleted.
    RouteEntryRemoved(Ipv4Net),
    /// A new impairment replaces whatever the link had.
    Impair(Impairment),
}

impl EventAction {
    /// The key it is written with.
    pub fn key(&self) -> &'static str {
        match self {
            EventAction::LinkDown(_) => "link_down",
            EventAction::LinkUp(_) => "link_up",
            EventAction::PodsRestarted(_) => "pods_restarted",
            EventAction::EndpointTerminating(_) => "endpoint_terminating",
            EventAction::RouteEntryRemoved(_) => "route_entry_removed",
            EventAction::Impair(_) => "impair",
        }
    }
}

// ---------------------------------------------------------------- expect[].when

/// `when: {kubernetes: ">=1.24", cni: [flannel, terway-eniip], proxy: [iptables, nftables]}`:
/// an expectation that holds only for some clusters; the others report it
/// as not applicable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct When {
    /// `">=1.24"`, `"<1.24"`, `"1.22"` (= any 1.22.x), `">1.21"`, `"<=1.23"`.
    pub kubernetes: Option<String>,
    /// Any of these CNIs (empty: any).
    pub cni: Vec<Cni>,
    /// Any of these proxy modes (empty: any); one mode or a list.
    #[serde(deserialize_with = "one_mode_or_many")]
    pub proxy: Vec<ProxyMode>,
}

/// `ipvs` or `[iptables, nftables]`.
fn one_mode_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

impl When {
    /// Whether a cluster matches; `Err` names a malformed version.
    pub fn matches(&self, cluster: &Cluster) -> Result<bool, String> {
        if !self.cni.is_empty() && !self.cni.contains(&cluster.cni) {
            return Ok(false);
        }
        if !self.proxy.is_empty() && !self.proxy.contains(&cluster.proxy) {
            return Ok(false);
        }
        match &self.kubernetes {
            None => Ok(true),
            Some(req) => {
                let req = crate::topology::validate::VersionReq::parse(req)?;
                let v = crate::topology::validate::KubeVersion::parse(&cluster.kubernetes)?;
                Ok(req.matches(v))
            }
        }
    }

    /// Short text for reports: `kubernetes >=1.24, cni flannel`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = &self.kubernetes {
            parts.push(format!("kubernetes {k}"));
        }
        if !self.cni.is_empty() {
            let c: Vec<&str> = self.cni.iter().map(|c| c.as_str()).collect();
            parts.push(format!("cni {}", c.join("|")));
        }
        if !self.proxy.is_empty() {
            let p: Vec<&str> = self.proxy.iter().map(|p| p.as_str()).collect();
            parts.push(format!("proxy {}", p.join("|")));
        }
        parts.join(", ")
    }
}
