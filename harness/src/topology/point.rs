//! Observation-point ids: the names of hops (`pod/…`, `host-veth/…`,
//! `eth0/<node>`, `eni/member:…`, `vpc`, …) and of the namespaces and
//! endpoints they live in. One type, built by constructors, printed by
//! `Display`, read by `FromStr` (the `path:`/`avoids:`/`served_by:` parser),
//! serialized as the same string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The aliases an `eni/…` observation point can use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EniRef {
    /// `eni/<id>`
    Id(String),
    /// `eni/primary:<node>`
    Primary(String),
    /// `eni/member:<ns>/<pod>` (trunking member ENI)
    Member { ns: String, name: String },
    /// `eni/pod:<ns>/<pod>` (exclusive ENI)
    Pod { ns: String, name: String },
    /// `eni/external:<name>` (the ENI of an ECS outside the cluster)
    External(String),
    /// `eni/secondary:<node>/<link>` (a secondary ENI, e.g. `eth1`, of a node)
    Secondary { node: String, link: String },
    /// `eni/vlan:<node>/<vlan>` (a member ENI a topology declares on a
    /// node's trunk, by its VLAN id)
    Vlan { node: String, vlan: u16 },
}

/// An observation point id (`path`, `avoids`, `served_by`), also the key of
/// the namespace or endpoint it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    /// `pod/<ns>/<name>`
    Pod {
        ns: String,
        name: String,
    },
    /// `pod/<ns>/<name>:<ifname>`: one interface in a pod (found after a
    /// CNI plugin made it).
    PodIf {
        ns: String,
        name: String,
        ifname: String,
    },
    /// `host-veth/<ns>/<name>`: the node side of a pod's link.
    HostVeth {
        ns: String,
        name: String,
    },
    /// `node/<name>`
    Node(String),
    /// `node/<name>:<ifname>`: one interface of a node (e.g. one a CNI
    /// plugin created, found after the plugin ran).
    NodeIf {
        node: String,
        ifname: String,
    },
    /// `eth0/<node>`
    Eth0(String),
    /// `trunk/<node>`
    Trunk(String),
    /// `hv/<node>`: the hypervisor side of a node's trunk ENI.
    Hv(String),
    Eni(EniRef),
    /// `vpc`
    Vpc,
    /// `slb/<id>`
    Slb(String),
    /// `external/<name>`
    External(String),
}

impl PointId {
    pub fn pod(ns: impl Into<String>, name: impl Into<String>) -> Self {
        PointId::Pod {
            ns: ns.into(),
            name: name.into(),
        }
    }
    pub fn pod_if(
        ns: impl Into<String>,
        name: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Self {
        PointId::PodIf {
            ns: ns.into(),
            name: name.into(),
            ifname: ifname.into(),
        }
    }
    pub fn host_veth(ns: impl Into<String>, name: impl Into<String>) -> Self {
        PointId::HostVeth {
            ns: ns.into(),
            name: name.into(),
        }
    }
    pub fn node(name: impl Into<String>) -> Self {
        PointId::Node(name.into())
    }
    pub fn node_if(node: impl Into<String>, ifname: impl Into<String>) -> Self {
        PointId::NodeIf {
            node: node.into(),
            ifname: ifname.into(),
        }
    }
    pub fn eth0(node: impl Into<String>) -> Self {
        PointId::Eth0(node.into())
    }
    pub fn trunk(node: impl Into<String>) -> Self {
        PointId::Trunk(node.into())
    }
    pub fn hv(node: impl Into<String>) -> Self {
        PointId::Hv(node.into())
    }
    pub fn slb(id: impl Into<String>) -> Self {
        PointId::Slb(id.into())
    }
    pub fn external(name: impl Into<String>) -> Self {
        PointId::External(name.into())
    }
    /// `eni/<id>`
    pub fn eni(id: impl Into<String>) -> Self {
        PointId::Eni(EniRef::Id(id.into()))
    }
    pub fn eni_primary(node: impl Into<String>) -> Self {
        PointId::Eni(EniRef::Primary(node.into()))
    }
    pub fn eni_member(ns: impl Into<String>, name: impl Into<String>) -> Self {
        PointId::Eni(EniRef::Member {
            ns: ns.into(),
            name: name.into(),
        })
    }
    pub fn eni_pod(ns: impl Into<String>, name: impl Into<String>) -> Self {
        PointId::Eni(EniRef::Pod {
            ns: ns.into(),
            name: name.into(),
        })
    }
    pub fn eni_external(name: impl Into<String>) -> Self {
        PointId::Eni(EniRef::External(name.into()))
    }
    pub fn eni_vlan(node: impl Into<String>, vlan: u16) -> Self {
        PointId::Eni(EniRef::Vlan {
            node: node.into(),
            vlan,
        })
    }
    pub fn eni_secondary(node: impl Into<String>, link: impl Into<String>) -> Self {
        PointId::Eni(EniRef::Secondary {
            node: node.into(),
            link: link.into(),
        })
    }

    /// A pod as a user names it: `pod/<ns>/<name>` or `<ns>/<name>`.
    pub fn parse_pod(s: &str) -> Result<PointId, String> {
        let rest = s.strip_prefix("pod/").unwrap_or(s);
        ns_name(rest, s).map(|(ns, name)| PointId::Pod { ns, name })
    }

    /// A node as a user names it: `node/<name>` or `<name>`.
    pub fn parse_node(s: &str) -> Result<PointId, String> {
        let rest = s.strip_prefix("node/").unwrap_or(s);
        name(rest, "node", s).map(PointId::Node)
    }

    /// The node this id is on or is, where it names one directly.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            PointId::Node(n)
            | PointId::NodeIf { node: n, .. }
            | PointId::Eth0(n)
            | PointId::Trunk(n)
            | PointId::Hv(n)
            | PointId::Eni(EniRef::Primary(n))
            | PointId::Eni(EniRef::Secondary { node: n, .. })
            | PointId::Eni(EniRef::Vlan { node: n, .. }) => Some(n),
            _ => None,
        }
    }
}

/// The kinds an observation point id starts with (`<kind>/…`; `vpc` alone).
pub(crate) const POINT_KINDS: [&str; 9] = [
    "pod",
    "host-veth",
    "node",
    "eth0",
    "trunk",
    "hv",
    "eni",
    "slb",
    "external",
];

pub(crate) const POINT_FORMS: &str =
    "pod/, pod/<ns>/<name>:<ifname>, host-veth/, node/, node/<n>:<ifname>, eth0/, trunk/, hv/, eni/, vpc, slb/, external/";

/// One name inside an id: non-empty, no separators or blanks.
pub(crate) fn name(part: &str, what: &str, whole: &str) -> Result<String, String> {
    if part.is_empty() {
        return Err(format!("{whole:?}: the {what} is empty"));
    }
    if let Some(c) = part
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | ':' | '@'))
    {
        return Err(format!("{whole:?}: the {what} {part:?} contains {c:?}"));
    }
    Ok(part.to_string())
}

/// `<ns>/<name>` with nothing else.
pub(crate) fn ns_name(rest: &str, whole: &str) -> Result<(String, String), String> {
    match rest.split_once('/') {
        Some((ns, n)) => Ok((name(ns, "namespace", whole)?, name(n, "name", whole)?)),
        None => Err(format!(
            "{whole:?}: expected <namespace>/<name> after the prefix"
        )),
    }
}

impl FromStr for PointId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "vpc" {
            return Ok(PointId::Vpc);
        }
        let (kind, rest) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an observation point (expected {POINT_FORMS})"))?;
        match kind {
            "pod" => match rest.split_once(':') {
                Some((pod, ifname)) => {
                    let (ns, name) = ns_name(pod, s)?;
                    Ok(PointId::PodIf {
                        ns,
                        name,
                        ifname: self::name(ifname, "interface name", s)?,
                    })
                }
                None => ns_name(rest, s).map(|(ns, name)| PointId::Pod { ns, name }),
            },
            "host-veth" => ns_name(rest, s).map(|(ns, name)| PointId::HostVeth { ns, name }),
            "node" => match rest.split_once(':') {
                Some((n, ifname)) => Ok(PointId::NodeIf {
                    node: name(n, "node", s)?,
                    ifname: name(ifname, "interface name", s)?,
                }),
                None => Ok(PointId::Node(name(rest, "node", s)?)),
            },
            "eth0" => Ok(PointId::Eth0(name(rest, "node", s)?)),
            "trunk" => Ok(PointId::Trunk(name(rest, "node", s)?)),
            "hv" => Ok(PointId::Hv(name(rest, "node", s)?)),
            "external" => Ok(PointId::External(name(rest, "external", s)?)),
            "slb" => Ok(PointId::Slb(name(rest, "load balancer id", s)?)),
            "eni" => parse_eni(rest, s).map(PointId::Eni),
            other => Err(format!(
                "{s:?}: unknown observation point kind {other:?} (expected {POINT_FORMS})"
            )),
        }
    }
}

fn parse_eni(rest: &str, s: &str) -> Result<EniRef, String> {
    match rest.split_once(':') {
        Some(("primary", n)) => Ok(EniRef::Primary(name(n, "node", s)?)),
        Some(("member", p)) => ns_name(p, s).map(|(ns, name)| EniRef::Member { ns, name }),
        Some(("pod", p)) => ns_name(p, s).map(|(ns, name)| EniRef::Pod { ns, name }),
        Some(("external", n)) => Ok(EniRef::External(name(n, "external", s)?)),
        Some(("vlan", p)) => match p.rsplit_once('/') {
            Some((node, vlan)) => Ok(EniRef::Vlan {
                node: name(node, "node", s)?,
                vlan: vlan
                    .parse()
                    .map_err(|_| format!("{s:?}: the VLAN id {vlan:?} is not a number"))?,
            }),
            None => Err(format!(
                "{s:?}: expected eni/vlan:<node>/<vlan id>, e.g. eni/vlan:n1/100"
            )),
        },
        Some(("secondary", p)) => match p.rsplit_once('/') {
            Some((node, link)) if !node.is_empty() && !link.is_empty() => Ok(EniRef::Secondary {
                node: node.to_string(),
                link: link.to_string(),
            }),
            _ => Err(format!(
                "{s:?}: expected eni/secondary:<node>/<link>, e.g. eni/secondary:n1/eth1"
            )),
        },
        Some((alias, _)) => Err(format!(
            "{s:?}: unknown ENI alias {alias:?} (expected eni/<id>, eni/primary:<node>, \
             eni/member:<ns>/<pod>, eni/pod:<ns>/<pod>, eni/external:<name>, \
             eni/secondary:<node>/<link> or eni/vlan:<node>/<vlan id>)"
        )),
        None => Ok(EniRef::Id(name(rest, "ENI id", s)?)),
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Pod { ns, name } => write!(f, "pod/{ns}/{name}"),
            PointId::PodIf { ns, name, ifname } => write!(f, "pod/{ns}/{name}:{ifname}"),
            PointId::HostVeth { ns, name } => write!(f, "host-veth/{ns}/{name}"),
            PointId::Node(n) => write!(f, "node/{n}"),
            PointId::NodeIf { node, ifname } => write!(f, "node/{node}:{ifname}"),
            PointId::Eth0(n) => write!(f, "eth0/{n}"),
            PointId::Trunk(n) => write!(f, "trunk/{n}"),
            PointId::Hv(n) => write!(f, "hv/{n}"),
            PointId::Eni(EniRef::Id(id)) => write!(f, "eni/{id}"),
            PointId::Eni(EniRef::Primary(n)) => write!(f, "eni/primary:{n}"),
            PointId::Eni(EniRef::Member { ns, name }) => write!(f, "eni/member:{ns}/{name}"),
            PointId::Eni(EniRef::Pod { ns, name }) => write!(f, "eni/pod:{ns}/{name}"),
            PointId::Eni(EniRef::External(n)) => write!(f, "eni/external:{n}"),
            PointId::Eni(EniRef::Secondary { node, link }) => {
                write!(f, "eni/secondary:{node}/{link}")
            }
            PointId::Eni(EniRef::Vlan { node, vlan }) => write!(f, "eni/vlan:{node}/{vlan}"),
            PointId::Vpc => write!(f, "vpc"),
            PointId::Slb(id) => write!(f, "slb/{id}"),
            PointId::External(n) => write!(f, "external/{n}"),
        }
    }
}

// Ids are compared with what users and tests write.
impl PartialEq<str> for PointId {
    fn eq(&self, other: &str) -> bool {
        self.to_string() == other
    }
}
impl PartialEq<&str> for PointId {
    fn eq(&self, other: &&str) -> bool {
        self.to_string() == *other
    }
}
impl PartialEq<String> for PointId {
    fn eq(&self, other: &String) -> bool {
        self.to_string() == *other
    }
}
impl PartialEq<PointId> for str {
    fn eq(&self, other: &PointId) -> bool {
        other == self
    }
}
impl PartialEq<PointId> for String {
    fn eq(&self, other: &PointId) -> bool {
        other == self
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_and_print_back() {
        for s in [
            "pod/ns/p",
            "host-veth/ns/p",
            "node/n",
            "node/n:cni0",
            "eth0/n",
            "trunk/n",
            "hv/n",
            "eni/eni-123",
            "eni/primary:n",
            "eni/member:ns/p",
            "eni/pod:ns/p",
            "eni/external:x",
            "eni/secondary:n/eth1",
            "eni/vlan:n/100",
            "pod/ns/p:eth0",
            "vpc",
            "slb/lb-1",
            "external/x",
        ] {
            let p: PointId = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(p, s);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("{s:?}"));
            assert_eq!(serde_json::from_str::<PointId>(&json).unwrap(), p);
        }
        let bad = |s: &str| s.parse::<PointId>().unwrap_err();
        assert!(bad("veth/x").contains("unknown observation point kind"));
        assert!(bad("eni/secondary:n").contains("eni/secondary:<node>/<link>"));
        assert!(bad("eni/tertiary:n").contains("unknown ENI alias"));
        assert!(bad("node/n:").contains("interface name is empty"));
        assert!(bad("pod/a/b:").contains("interface name is empty"));
        assert!(bad("eni/vlan:n/x").contains("not a number"));
        assert_eq!(
            PointId::pod_if("a", "b", "net1").to_string(),
            "pod/a/b:net1"
        );
        assert_eq!(PointId::parse_pod("a/b").unwrap(), "pod/a/b");
        assert_eq!(PointId::parse_pod("pod/a/b").unwrap(), "pod/a/b");
        assert!(PointId::parse_pod("a").is_err());
        assert_eq!(PointId::parse_node("n1").unwrap(), "node/n1");
        assert_eq!(PointId::parse_node("node/n1").unwrap(), "node/n1");
    }

    #[test]
    fn constructors_print_the_ids_scenarios_assert() {
        assert_eq!(
            PointId::pod("default", "web").to_string(),
            "pod/default/web"
        );
        assert_eq!(PointId::eni_member("t", "c").to_string(), "eni/member:t/c");
        assert_eq!(PointId::node_if("n1", "cni0").to_string(), "node/n1:cni0");
        assert_eq!(
            PointId::eni_secondary("n", "eth1").to_string(),
            "eni/secondary:n/eth1"
        );
        assert_eq!(PointId::Vpc.to_string(), "vpc");
    }
}
