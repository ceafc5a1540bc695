//! `LabPlan`: every kernel object a lab will create, decided up front.
//!
//! A plan names namespaces by their logical key (`node/n1`, `pod/shop/web`,
//! `eni/eni-1a2b3c4d5e`, `vpc`, `external/office`); the builder maps keys to
//! kernel names (`cnl-<lab id>-<short>`). Interface names are ≤ 15 chars and
//! unique inside their namespace. Nothing here touches the kernel, so plans
//! are unit-tested without root and printed by `cnlab plan`.

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

use crate::topology::model::{Cni, ProxyMode};
use crate::topology::PointId;

/// Index into `LabPlan::namespaces`.
pub type NsIdx = usize;

/// Which implementation the builder uses for kernel features that this
/// kernel may lack (`cnlab doctor` decides; plans are tested for both).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backends {
    /// 802.1Q sub-interfaces (true) or eBPF push/pop on clsact (false).
    pub vlan_devices: bool,
    /// ipvlan (true) or macvlan in bridge mode (false).
    pub ipvlan: bool,
    /// dummy (true) or a bridge with no ports (false).
    pub dummy: bool,
    /// IPVS (true) or nftables NAT with IPVS semantics (false).
    pub ipvs: bool,
    /// netem qdiscs for `impairments` (true), or the stand-in (false):
    /// nftables netdev egress rules for loss and duplication, tbf for the
    /// rate; delay, jitter and reordering need netem.
    #[serde(default)]
    pub netem: bool,
    /// br_netfilter is loaded (a fact, not a choice; cnlab never loads it
    /// on a host). Then nodes get `bridge-nf-call-iptables=1` as kubeadm
    /// requires, other namespaces with a bridge 0.
    #[serde(default)]
    pub br_netfilter: bool,
}

impl Backends {
    /// Every feature native (a GitHub runner's kernel).
    pub const NATIVE: Backends = Backends {
        vlan_devices: true,
        ipvlan: true,
        dummy: true,
        ipvs: true,
        netem: true,
        br_netfilter: false,
    };
    /// Every feature through its portable stand-in.
    pub const PORTABLE: Backends = Backends {
        vlan_devices: false,
        ipvlan: false,
        dummy: false,
        ipvs: false,
        netem: false,
        br_netfilter: false,
    };
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabPlan {
    /// Topology name.
    pub name: String,
    pub cni: Cni,
    pub proxy: ProxyMode,
    pub backends: Backends,
    pub namespaces: Vec<NsPlan>,
    /// veth pairs; each end lives in its own namespace.
    pub veths: Vec<VethPlan>,
    /// Who can be probed and from where.
    pub endpoints: Vec<Endpoint>,
    /// Observation points for taps: which (namespace, interface) is which hop id.
    pub points: Vec<ObsPoint>,
    /// VPC route entries as the mock cloud holds them (also programmed in `vpc`).
    pub route_entries: Vec<RouteEntryPlan>,
    /// Every ENI of the mock cloud (primary, secondary, trunk, member, external).
    pub enis: Vec<EniRecord>,
    /// Pods the CNI could not place, with the reason.
    pub pending: Vec<PendingPod>,
    /// Non-fatal notes for the user (defaults taken, fields ignored).
    pub notes: Vec<String>,
    // -- services (kube-proxy, cloud controller, SLB) --
    /// `cluster.kubernetes` as written.
    #[serde(default)]
    pub kubernetes: String,
    #[serde(default)]
    pub services: Vec<ServicePlan>,
    /// kube-proxy's virtual servers per node.
    #[serde(default)]
    pub proxy_nodes: Vec<ProxyNodePlan>,
    #[serde(default)]
    pub slbs: Vec<SlbPlan>,
    /// `cni: plugins` (and the flannel variant): what the CNI runtime runs.
    #[serde(default)]
    pub cni_runtime: Option<crate::plan::agent::plugins::CniRuntimePlan>,
    /// netem qdiscs in place from bring-up (`impairments:`).
    #[serde(default)]
    pub impairments: Vec<NetemPlan>,
    /// `events:`, in order, each as the kernel changes it makes.
    #[serde(default)]
    pub events: Vec<crate::plan::faults::EventPlan>,
}

/// A netem qdisc as the root of one interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetemPlan {
    pub ns: NsIdx,
    pub ifname: String,
    /// The kernel has no netem: nftables netdev egress rules and tbf
    /// instead (`Backends::netem`).
    #[serde(default)]
    pub stand_in: bool,
    /// All `None`: no impairment (the root qdisc goes back to the default).
    pub netem: crate::topology::model::Netem,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Vpc,
    Eni,
    Hypervisor,
    Node,
    Pod,
    External,
    Slb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct NsPlan {
    /// Logical key: `vpc`, `eni/<id>`, `hv/<node>`, `node/<name>`,
    /// `pod/<ns>/<name>`, `external/<name>`, `slb/<id>`.
    pub key: String,
    /// Suffix of the kernel name `cnl-<id>-<short>` (filesystem-safe).
    pub short: String,
    pub kind: Option<NsKind>,
    /// Links created inside this namespace (veths are in `LabPlan::veths`).
    pub links: Vec<LinkPlan>,
    /// Settings applied to links after all links exist (veth ends included):
    /// master, mtu, up. Every link used must appear here with `up: true`.
    pub link_settings: Vec<LinkSetting>,
    pub addrs: Vec<AddrPlan>,
    pub routes: Vec<RoutePlan>,
    pub rules: Vec<RulePlan>,
    pub neighs: Vec<NeighPlan>,
    pub fdbs: Vec<FdbPlan>,
    /// `(path under /proc/sys, value)`, e.g. `("net/ipv4/ip_forward", "1")`.
    /// Link-level sysctls name the link (`net/ipv4/conf/eth0/rp_filter`) and
    /// are applied after the links exist.
    pub sysctls: Vec<(String, String)>,
    /// A complete nft script applied atomically (one libnftables transaction, as `nft -f`) in this namespace.
    pub nft: Option<String>,
    /// `iptables-restore` input (kube-proxy's iptables mode), applied with
    /// iptables-nft in this namespace after `nft`.
    #[serde(default)]
    pub iptables: Option<String>,
    /// Echo servers the lab runs in this namespace.
    pub servers: Vec<ServerPlan>,
    /// tc programs `lab::tc` attaches after the build (eBPF VLAN backend).
    #[serde(default)]
    pub tc: Vec<TcPlan>,
    /// Links whose parent lives in another namespace (a pod's ipvlan eth0
    /// on the node's ENI link), created from there straight into this one.
    #[serde(default)]
    pub adopted_links: Vec<AdoptedLink>,
    /// Virtual services programmed into this namespace's IPVS table through
    /// the kernel's IPVS generic-netlink family (`kernel::ipvs`), after the
    /// nft ruleset. Planned only on the native IPVS backend
    /// (`Backends::ipvs`); the nftables emulation leaves it empty.
    #[serde(default)]
    pub ipvs: Vec<IpvsService>,
    /// Lookups by name into `sysctls` and `link_settings`; not part of the plan.
    #[serde(skip)]
    pub index: NsIndex,
}

/// Where each sysctl path and link setting sits in its list, so that the
/// first-value-wins and find-or-create lookups cost O(1): the VPC router of
/// a 10,000-pod trunking lab has 10,000 links and 20,000 sysctls, and a scan
/// per insertion made planning quadratic (seconds of CPU). Never serialized
/// and always equal; rebuilt when out of step with the lists (a plan read
/// back from disk, or lists built directly).
#[derive(Debug, Clone, Default)]
pub struct NsIndex {
    sysctls: std::collections::HashSet<String>,
    settings: std::collections::HashMap<String, usize>,
}

impl PartialEq for NsIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkPlan {
    pub name: String,
    pub kind: LinkKind,
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum LinkKind {
    Bridge,
    /// `kube-ipvs0`-style address holder: dummy, or a bridge with no ports.
    Dummy,
    Macvlan {
        parent: String,
        mode: MacvlanMode,
    },
    /// ipvlan L2, or macvlan bridge where the kernel has no ipvlan.
    Ipvlan {
        parent: String,
    },
    Vxlan {
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        dev: Option<String>,
        learning: bool,
    },
    /// 802.1Q sub-interface (only planned when `Backends::vlan_devices`).
    Vlan {
        parent: String,
        id: u16,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VethEnd {
    pub ns: NsIdx,
    pub name: String,
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VethPlan {
    pub a: VethEnd,
    pub b: VethEnd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkSetting {
    pub name: String,
    pub master: Option<String>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// Bridge port hairpin mode (`bridge link set dev X hairpin on`): the
    /// bridge may send a frame back out of the port it came in on. The CNI
    /// bridge plugin sets it with `hairpinMode: true`.
    #[serde(default)]
    pub hairpin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddrPlan {
    pub dev: String,
    /// Address with its prefix length (`10.0.4.20/24`).
    pub addr: IpNet,
    /// `scope host` / `scope link` where Terway sets them; global otherwise.
    pub scope: Scope,
    /// Do not install the prefix route (`noprefixroute`).
    pub noprefixroute: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Global,
    Link,
    Host,
}

pub const TABLE_MAIN: u32 = 254;
pub const TABLE_LOCAL: u32 = 255;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    #[default]
    Unicast,
    Local,
    Blackhole,
    Unreachable,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoutePlan {
    pub dst: IpNet,
    pub via: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub table: u32,
    pub onlink: bool,
    pub scope: Scope,
    pub src: Option<Ipv4Addr>,
    pub kind: RouteType,
    pub metric: Option<u32>,
}

impl RoutePlan {
    /// `dst dev <dev> scope link` in the main table.
    pub fn link(dst: IpNet, dev: &str) -> Self {
        RoutePlan {
            dst,
            via: None,
            dev: Some(dev.into()),
            table: TABLE_MAIN,
            onlink: false,
            scope: Scope::Link,
            src: None,
            kind: RouteType::Unicast,
            metric: None,
        }
    }
    /// `dst via <gw> dev <dev> [onlink]` in the main table.
    pub fn via(dst: IpNet, gw: Ipv4Addr, dev: &str, onlink: bool) -> Self {
        RoutePlan {
            dst,
            via: Some(gw),
            dev: Some(dev.into()),
            table: TABLE_MAIN,
            onlink,
            scope: Scope::Global,
            src: None,
            kind: RouteType::Unicast,
            metric: None,
        }
    }
    pub fn in_table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RulePlan {
    pub priority: u32,
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// `(mark, mask)`
    pub fwmark: Option<(u32, u32)>,
    pub table: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NeighPlan {
    pub dev: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// A bridge FDB entry on a vxlan device: `mac` is reached at `dst`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdbPlan {
    pub dev: String,
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerPlan {
    /// Who answers: `pod/<ns>/<name>`, `node/<name>`, `external/<name>`.
    pub identity: String,
    pub port: u16,
    pub tcp: bool,
    pub udp: bool,
    /// Listen on this address only (default: every address).
    #[serde(default)]
    pub bind: Option<Ipv4Addr>,
    /// An HTTP server (kube-proxy's health servers) instead of the echo
    /// protocol.
    #[serde(default)]
    pub http: Option<HttpServe>,
}

/// What an HTTP server answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum HttpServe {
    /// The same response to every request (kube-proxy's service health
    /// server on a healthCheckNodePort).
    Fixed(HttpReply),
    /// kube-proxy's own health server (`--healthz-bind-address`, port
    /// 10256): made when each request arrives, its timestamps the time of
    /// the request (`plan::proxy::healthcheck::proxier_reply`).
    ProxierHealth(ProxierHealth),
}

/// What decides kube-proxy's `/healthz` and `/livez` answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxierHealth {
    /// The node is neither being deleted nor tainted
    /// `ToBeDeletedByClusterAutoscaler`.
    pub node_eligible: bool,
    /// kube-proxy of this version has `/livez` and `nodeEligible`
    /// (≥ 1.28, kubernetes PR 116470, KEP-3836).
    pub livez: bool,
}

/// A fixed HTTP response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub reason: String,
    /// Header lines (`Name: value`), in order.
    pub headers: Vec<String>,
    pub body: String,
}

impl HttpReply {
    /// The bytes on the wire (HTTP/1.1, connection closed after it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for h in &self.headers {
            s += h;
            s += "\r\n";
        }
        s += &format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.body.len(),
            self.body
        );
        s.into_bytes()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Pod,
    Node,
    External,
}

/// Something a probe can start from or aim at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// `pod/<ns>/<name>`, `node/<name>`, `external/<name>`.
    pub id: PointId,
    pub kind: EndpointKind,
    /// Namespace the endpoint's sockets live in (a hostNetwork pod: its node's).
    pub ns: NsIdx,
    /// Its address (pod IP, node primary IP, external IP).
    pub ip: Ipv4Addr,
    /// The node it runs on (pods) or is (nodes).
    pub node: Option<String>,
}

/// Observation point: packets seen on `ifname` in namespace `ns` are hop `id`.
/// `ifname: None` means any interface of that namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObsPoint {
    pub id: PointId,
    /// Other ids that name the same point (`eni/primary:<node>` for `eni/<id>`).
    pub aliases: Vec<PointId>,
    pub ns: NsIdx,
    pub ifname: Option<String>,
    /// A member ENI's VLAN id: its frames are also those on its hv's trunk
    /// that carry this tag (the hypervisor holds every member ENI of a
    /// trunk in one namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteEntryPlan {
    pub dest: Ipv4Net,
    /// Node name or IP as written.
    pub next_hop: String,
    /// The ENI the route points at (its link in the `vpc` namespace).
    pub eni: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EniRole {
    Primary,
    Secondary,
    Trunk,
    Member,
    /// An exclusive ENI moved into a pod (terway-eni).
    Pod,
    /// The ENI of an ECS outside the cluster.
    External,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EniRecord {
    pub id: String,
    pub role: EniRole,
    pub mac: [u8; 6],
    pub vswitch: String,
    /// First is the primary private IP.
    pub ips: Vec<Ipv4Addr>,
    pub security_groups: Vec<String>,
    /// Node (instance) it is attached to, or external name.
    pub instance: String,
    /// Member ENIs: VLAN id and trunk ENI id.
    pub vlan: Option<u16>,
    pub trunk: Option<String>,
    /// Pod (`<ns>/<name>`) for member and exclusive ENIs.
    pub pod: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingPod {
    /// `<ns>/<name>`
    pub pod: String,
    pub node: Option<String>,
    pub reason: String,
}

impl NsPlan {
    /// A lab namespace as every one starts: `lo` up, IPv4 only (the lab
    /// models IPv4 clusters; without IPv6 no link runs duplicate address
    /// detection, router solicitations or MLD reports: less kernel work per
    /// link and no noise in captures).
    pub fn new(key: &str, short: &str, kind: NsKind) -> NsPlan {
        let mut p = NsPlan {
            key: key.into(),
            short: short.into(),
            kind: Some(kind),
            ..Default::default()
        };
        p.up("lo");
        p.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
        p.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
        p
    }

    /// Brings `name` up (creating its setting if needed).
    pub fn up(&mut self, name: &str) {
        self.setting(name).up = true;
    }

    /// The setting of `name`, created `up` if absent.
    pub fn setting(&mut self, name: &str) -> &mut LinkSetting {
        let idx = &mut self.index.settings;
        let stale = idx.len() != self.link_settings.len()
            || idx
                .get(name)
                .is_some_and(|&i| self.link_settings.get(i).is_none_or(|s| s.name != name));
        if stale {
            *idx = self
                .link_settings
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), i))
                .collect();
        }
        let pos = match idx.get(name) {
            Some(&i) => i,
            None => {
                self.link_settings.push(LinkSetting {
                    name: name.into(),
                    master: None,
                    mtu: None,
                    up: true,
                    hairpin: false,
                });
                let i = self.link_settings.len() - 1;
                idx.insert(name.into(), i);
                i
            }
        };
        &mut self.link_settings[pos]
    }

    /// `path` is under /proc/sys; the first value set wins.
    pub fn sysctl(&mut self, path: &str, value: &str) {
        let seen = &mut self.index.sysctls;
        if seen.len() != self.sysctls.len() {
            *seen = self.sysctls.iter().map(|(p, _)| p.clone()).collect();
        }
        if seen.insert(path.into()) {
            self.sysctls.push((path.into(), value.into()));
        }
    }

    /// `ip_forward=1` and `rp_filter=0` on all, default and each of `links`:
    /// the effective rp_filter is max(all, link), and links created before
    /// `default` was set keep the value inherited from the host.
    pub fn router_sysctls<'a>(&mut self, links: impl IntoIterator<Item = &'a str>) {
        self.sysctl("net/ipv4/ip_forward", "1");
        self.sysctl("net/ipv4/conf/all/rp_filter", "0");
        self.sysctl("net/ipv4/conf/default/rp_filter", "0");
        for name in links {
            self.sysctl(&format!("net/ipv4/conf/{name}/rp_filter"), "0");
        }
    }
}

impl LabPlan {
    /// A plan with nothing in it yet.
    pub fn empty(
        name: &str,
        cni: Cni,
        proxy: ProxyMode,
        kubernetes: &str,
        backends: Backends,
    ) -> LabPlan {
        LabPlan {
            name: name.into(),
            cni,
            proxy,
            backends,
            namespaces: vec![],
            veths: vec![],
            endpoints: vec![],
            points: vec![],
            route_entries: vec![],
            enis: vec![],
            pending: vec![],
            notes: vec![],
            kubernetes: kubernetes.into(),
            services: vec![],
            proxy_nodes: vec![],
            slbs: vec![],
            cni_runtime: None,
            impairments: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The namespace keyed `key` (a [`PointId`] or its text).
    pub fn ns_index<K: fmt::Display + ?Sized>(&self, key: &K) -> Option<NsIdx> {
        let key = key.to_string();
        self.namespaces.iter().position(|n| n.key == key)
    }
    /// The endpoint `id` (a [`PointId`] or its text).
    pub fn endpoint<K: fmt::Display + ?Sized>(&self, id: &K) -> Option<&Endpoint> {
        let id = id.to_string();
        self.endpoints.iter().find(|e| e.id == id)
    }
    pub fn eni(&self, id: &str) -> Option<&EniRecord> {
        self.enis.iter().find(|e| e.id == id)
    }
}

// ---------------------------------------------------------------- terway (ENI, ENIIP, trunking)

/// A tc attachment `lab::tc` makes after the kernel build, when VLANs are
/// carried by eBPF (`Backends::vlan_devices == false`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum TcPlan {
    /// Node side of a trunk ENI: egress pushes the VLAN id of the pod whose
    /// address is the IPv4 source (or ARP sender); ingress pops 802.1Q.
    Trunk {
        link: String,
        pods: Vec<(Ipv4Addr, u16)>,
    },
    /// Cloud side (`hv/<node>`): ingress on `trunk_link` pops the tag of a
    /// known VLAN and puts its id in the mark (hv's rules route it out of
    /// that member's link; a tagged ARP request is answered as the vSwitch
    /// does); egress on `trunk_link` tags what arrived on a member's link
    /// with that member's VLAN id. `members`: (member link, VLAN id).
    Hv {
        trunk_link: String,
        members: Vec<(String, u16)>,
    },
    /// Terway IPVLAN: clsact egress of `link` redirects IPv4 to any of
    /// `cidrs` into the ingress of `to` (u32 + mirred, priority 40000), so
    /// pods on `link`'s children reach the host stack for those ranges.
    RedirectToHost {
        link: String,
        cidrs: Vec<ipnet::Ipv4Net>,
        to: String,
    },
}

impl TcPlan {
    /// The links this plan hooks (each gets a clsact qdisc).
    pub fn links(&self) -> Vec<&str> {
        match self {
            TcPlan::Trunk { link, .. } | TcPlan::RedirectToHost { link, .. } => vec![link],
            // Both hv programs sit on the trunk link; member links are map
            // entries only.
            TcPlan::Hv { trunk_link, .. } => vec![trunk_link],
        }
    }
}

/// A link planned in this namespace whose parent (`LinkKind::Ipvlan`,
/// `Macvlan`, `Vlan`) lives in `parent_ns`. The builder creates it from the
/// parent's namespace straight into this one (`ip link add link eth1 name
/// eth0 netns <this> type ipvlan`: IFLA_LINK resolved where the parent
/// is, IFLA_NET_NS_FD = this namespace) before it configures this one; its
/// settings, addresses and routes are planned here like any own link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdoptedLink {
    pub parent_ns: NsIdx,
    pub link: LinkPlan,
}

// ---------------------------------------------------------------- services
// kube-proxy, the cloud controller and the SLB mock (plan/proxy, ccm, slb).

/// `spec.type` of a Service the lab models (ExternalName is not).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// A Service as kube-proxy and the cloud controller see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServicePlan {
    pub ns: String,
    pub name: String,
    pub type_: ServiceType,
    /// `None`: headless (no virtual IP).
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePortPlan>,
    pub external_ips: Vec<Ipv4Addr>,
    /// The load balancer address (status ingress IP, the reused CLB's, or allocated).
    pub lb_ip: Option<Ipv4Addr>,
    /// The CLB serving it (`slb/<id>`).
    pub lb_id: Option<String>,
    /// `…-loadbalancer-hostname` annotation: kube-proxy does not bind `lb_ip`.
    pub lb_hostname: bool,
    /// `status.loadBalancer.ingress[].ipMode: Proxy` on `lb_ip`.
    #[serde(default)]
    pub lb_ip_mode_proxy: bool,
    pub external_policy: TrafficPolicy,
    pub internal_policy: TrafficPolicy,
    /// `sessionAffinity: ClientIP`: stickiness in seconds
    /// (`sessionAffinityConfig.clientIP.timeoutSeconds`, default 10800).
    #[serde(default)]
    pub affinity_timeout: Option<u32>,
    /// LoadBalancer + externalTrafficPolicy Local: kube-proxy's health check
    /// port (given, or allocated as the API server does).
    #[serde(default)]
    pub health_check_node_port: Option<u16>,
    /// `loadBalancerSourceRanges` (or its annotation): who may reach the LB IP.
    #[serde(default)]
    pub source_ranges: Vec<ipnet::Ipv4Net>,
    /// Endpoints of the pods matching the selector (or of pasted
    /// EndpointSlices), each with its conditions; pending pods excluded.
    pub endpoints: Vec<SvcEndpoint>,
}

impl ServicePlan {
    /// `<ns>/<name>`
    pub fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServicePortPlan {
    pub name: Option<String>,
    pub port: u16,
    /// `targetPort` as written (a number or a container port name).
    pub target: String,
    pub node_port: Option<u16>,
    pub protocol: crate::topology::model::Proto,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SvcEndpoint {
    /// `pod/<ns>/<name>`
    pub pod: String,
    pub ip: Ipv4Addr,
    pub node: String,
    pub host_network: bool,
    /// The target port per service port (same order as `ServicePlan::ports`);
    /// `None` where a named targetPort does not exist on this pod.
    pub target_ports: Vec<Option<u16>>,
    /// EndpointSlice conditions (discovery.k8s.io/v1): ready = serving and
    /// not terminating; serving = the pod's Ready condition; terminating =
    /// deletionTimestamp set. kube-proxy uses ready endpoints, and serving
    /// terminating ones only as the version's fallback allows.
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default = "yes")]
    pub serving: bool,
    #[serde(default)]
    pub terminating: bool,
}

fn yes() -> bool {
    true
}

/// Where a virtual server's address comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VipKind {
    ClusterIp,
    ExternalIp,
    LoadBalancer,
    NodePort,
}

/// Where kube-proxy masquerades a virtual server's traffic.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Masquerade {
    /// Cluster policy on external addresses: always.
    Always,
    /// Local policy: never.
    Never,
    /// ClusterIP: only traffic the node itself originates.
    NodeOrigin,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RealServer {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `pod/<ns>/<name>`
    pub pod: String,
}

/// One IPVS-style virtual server on one node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VirtualServer {
    /// `<ns>/<name>`
    pub service: String,
    pub kind: VipKind,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: crate::topology::model::Proto,
    /// Empty: the virtual server answers ICMP port-unreachable.
    pub real_servers: Vec<RealServer>,
    pub masquerade: Masquerade,
    /// `sessionAffinity: ClientIP`: persistent for this many seconds
    /// (kube-proxy sets `FlagPersistent` and `Timeout`).
    #[serde(default)]
    pub persistence: Option<u32>,
    /// LoadBalancer IPs only: `loadBalancerSourceRanges` (empty: anyone).
    #[serde(default)]
    pub source_ranges: Vec<Ipv4Net>,
}

/// kube-proxy's view from one node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProxyNodePlan {
    pub node: String,
    /// Addresses bound on `kube-ipvs0` (IPVS mode only).
    pub bound: Vec<Ipv4Addr>,
    pub virtual_servers: Vec<VirtualServer>,
}

/// A CLB of the mock cloud: namespace `slb/<id>` behind the VPC router.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlbPlan {
    pub id: String,
    pub ip: Ipv4Addr,
    /// Its link in the `vpc` namespace.
    pub vpc_link: String,
    /// ct mark / fwmark the VPC router gives its backend flows.
    pub mark: u32,
    /// VPC routing table sending those flows' replies back to the SLB.
    pub table: u32,
    pub listeners: Vec<SlbListener>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlbListener {
    pub port: u16,
    pub proto: crate::topology::model::Proto,
    /// `<ns>/<name>` when the cloud controller made it for a Service.
    pub service: Option<String>,
    pub backends: Vec<SlbBackend>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlbBackend {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `node/<n>`, `pod/<ns>/<name>`, `external/<name>`.
    pub who: String,
}

impl LabPlan {
    /// Every veth end, by namespace, in plan order: one pass instead of a
    /// scan of all veths per namespace (quadratic at 10,000 pods).
    pub fn veth_ends_by_ns(&self) -> Vec<Vec<&VethEnd>> {
        let mut out = vec![Vec::new(); self.namespaces.len()];
        for v in &self.veths {
            for end in [&v.a, &v.b] {
                if let Some(ends) = out.get_mut(end.ns) {
                    ends.push(end);
                }
            }
        }
        out
    }

    /// Every veth pair, by the namespaces of its ends (once where both ends
    /// share one), in plan order.
    pub fn veths_by_ns(&self) -> Vec<Vec<&VethPlan>> {
        let mut out: Vec<Vec<&VethPlan>> = vec![Vec::new(); self.namespaces.len()];
        for v in &self.veths {
            let ends = if v.a.ns == v.b.ns {
                &[v.a.ns][..]
            } else {
                &[v.a.ns, v.b.ns][..]
            };
            for &ns in ends {
                if let Some(list) = out.get_mut(ns) {
                    list.push(v);
                }
            }
        }
        out
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.ns == ns && s.name == name)
    }
}

// ---------------------------------------------------------------- native IPVS
// What kube-proxy's IPVS proxier hands to the kernel (pkg/proxy/ipvs/util:
// `VirtualServer` / `RealServer`), in the kernel's own terms
// (include/uapi/linux/ip_vs.h). `kernel::ipvs` programs and reads it back.

/// `IPVS_SVC_ATTR_PROTOCOL` (an IP protocol number).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum IpvsProto {
    Tcp,
    Udp,
    Sctp,
}

impl IpvsProto {
    pub fn number(self) -> u16 {
        match self {
            IpvsProto::Tcp => 6,
            IpvsProto::Udp => 17,
            IpvsProto::Sctp => 132,
        }
    }
    pub fn from_number(n: u16) -> Option<IpvsProto> {
        match n {
            6 => Some(IpvsProto::Tcp),
            17 => Some(IpvsProto::Udp),
            132 => Some(IpvsProto::Sctp),
            _ => None,
        }
    }
    /// As `ipvsadm -Ln` prints it.
    pub fn label(self) -> &'static str {
        match self {
            IpvsProto::Tcp => "TCP",
            IpvsProto::Udp => "UDP",
            IpvsProto::Sctp => "SCTP",
        }
    }
}

/// The scheduler kube-proxy configures (`--ipvs-scheduler`, default `rr`).
pub const IPVS_SCHEDULER_RR: &str = "rr";

/// One IPVS virtual service (address, port, protocol) in a namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpvsService {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: IpvsProto,
    /// `IPVS_SVC_ATTR_SCHED_NAME`, e.g. `rr`.
    pub scheduler: String,
    /// `sessionAffinity: ClientIP`: the service is persistent
    /// (`IP_VS_SVC_F_PERSISTENT`) for this many seconds
    /// (`sessionAffinityConfig.clientIP.timeoutSeconds`, default 10800).
    pub persistence_timeout: Option<u32>,
    pub dests: Vec<IpvsDest>,
}

/// How IPVS forwards to a real server (`IP_VS_CONN_F_FWD_MASK`).
/// kube-proxy only ever uses masquerading (NAT).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IpvsForward {
    /// `IP_VS_CONN_F_MASQ` (0): destination NAT, replies un-NATed by IPVS.
    Masq,
}

/// One real server of a virtual service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpvsDest {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// kube-proxy gives every real server weight 1 (0 while terminating).
    pub weight: u32,
    pub forward: IpvsForward,
}
