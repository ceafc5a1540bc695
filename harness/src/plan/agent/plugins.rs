//! `cni: plugins`: the lab is the CNI runtime (as containerd and kubelet are
//! to a plugin). Nodes, ENIs, the VPC, security groups, the SLB and
//! kube-proxy stay cnlab's; each pod gets an empty namespace, and the plan
//! records what the runtime runs there at bring-up: the node's plugin
//! chain, the pod's CNI_ARGS and capability args. Pod addresses come from
//! the plugins' results (`CniAdds`), so the lab plans twice: before ADD
//! (pods pending "waiting for CNI ADD") and after (pods placed at the
//! address their result gave, or pending with the plugin's error).
//!
//! The flannel variant (`cni: flannel` + `cni_plugins: {bin_dir}`): cnlab
//! plays flanneld (subnet lease, VPC route entries or vxlan peers, ip-masq,
//! subnet.env) and the flannel CNI plugin's delegation (the bridge +
//! host-local config it derives from subnet.env), and the real `bridge`,
//! `host-local` and `portmap` plumb the pods.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::{pod_ns, CniCtx, CniOutput, PodWire};
use crate::plan::cloud::NodeCtx;
use crate::plan::draft::Draft;
use crate::plan::ipam::{PlacedPod, Placement};
use crate::plan::types::{NsIdx, ObsPoint, PendingPod};
use crate::topology::k8s::Pod;
use crate::topology::model::CniPlugins;
use crate::topology::PointId;
use crate::topology::Resolved;

/// The mode in the registry. Its pods are planned by `plan::plan_cni`
/// (twice: before ADD and with the results), not through `program`.
pub struct Plugins;

impl super::CniMode for Plugins {
    fn cni(&self) -> crate::topology::model::Cni {
        crate::topology::model::Cni::Plugins
    }
    /// The VPC reaches plugin-made pod addresses through the topology's
    /// route entries (or, for addresses in a vSwitch, not at all: the VPC
    /// only knows ENI addresses).
    fn addressing(&self) -> super::Addressing {
        super::Addressing::PodCidr
    }
    fn program(
        &self,
        _d: &mut Draft,
        _cx: super::ModeCtx<'_, '_>,
    ) -> Result<CniOutput, crate::plan::PlanError> {
        Err(super::wrong_ctx(self.cni()))
    }
}

/// What the runtime does at bring-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CniRuntimePlan {
    /// One chain per node, in node order.
    pub chains: Vec<ChainPlan>,
    pub pods: Vec<CniPodPlan>,
}

/// A node's plugin chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainPlan {
    pub node: String,
    pub node_ns: NsIdx,
    pub bin_dir: PathBuf,
    pub conflist: Value,
    /// Where the conflist came from (a file, `inline`, or flannel's).
    pub source: String,
    /// Flannel variant: the `subnet.env` flanneld writes for this node.
    pub subnet_env: Option<String>,
}

/// A pod the runtime runs ADD for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniPodPlan {
    /// `pod/<ns>/<name>`
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Index into `chains`.
    pub chain: usize,
    pub ns: NsIdx,
    /// `runtimeConfig` values by capability (`portMappings`, `bandwidth`).
    pub runtime: Map<String, Value>,
    /// `status.podIP` as written: passed as `IP=` in CNI_ARGS (host-local
    /// and static honour it), so a customer's pod keeps its address.
    pub ip_arg: Option<Ipv4Addr>,
}

/// What ADD gave for a pod, as the plan's input on the second pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PodAdd {
    Added {
        ip: Ipv4Addr,
        /// The node-side interface the pod's eth0 is linked to (its veth
        /// peer, or the macvlan/ipvlan parent), found in the kernel.
        host_if: Option<String>,
    },
    Failed {
        error: String,
    },
}

/// A pod's pending reason before its ADD ran.
pub const WAITING_FOR_ADD: &str = "waiting for CNI ADD";

/// How a pod whose chain failed is reported pending.
pub const CNI_ADD_FAILED: &str = "CNI ADD failed: ";

/// What the runtime found after ADD: each pod's outcome (by pod key), and
/// the interfaces each node and each added pod has then (by node name and
/// pod key, `lo` left out), listed over netlink — taps observe what the
/// plugins made without knowing how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CniAdds {
    pub pods: BTreeMap<String, PodAdd>,
    pub node_links: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub pod_links: BTreeMap<String, Vec<String>>,
}

/// Observation points for the interfaces found in the nodes after ADD:
/// one the plan already taps (the node's `eth0`, a pod's host veth) gets
/// `node/<node>:<ifname>` as its alias (shown in paths, accepted in
/// `path:`); any other (a bridge such as `cni0`, a vxlan device, an ifb)
/// becomes the point `node/<node>:<ifname>`. Each interface of a pod
/// (`eth0`, a second network's `net1`) becomes the point
/// `pod/<ns>/<name>:<ifname>`; `pod/<ns>/<name>` in `path:` covers them all.
pub fn discovered_points(d: &mut Draft, nodes: &[NodeCtx], adds: &CniAdds) {
    for (key, links) in &adds.pod_links {
        let Ok(PointId::Pod { ns, name }) = key.parse::<PointId>() else {
            continue;
        };
        let Some(pod_ns) = d.plan.ns_index(&PointId::pod(&ns, &name)) else {
            continue;
        };
        for link in links {
            d.plan.points.push(ObsPoint {
                id: PointId::pod_if(&ns, &name, link),
                aliases: vec![],
                ns: pod_ns,
                ifname: Some(link.clone()),
                vlan: None,
            });
        }
    }
    for ctx in nodes {
        let Some(links) = adds.node_links.get(&ctx.name) else {
            continue;
        };
        for link in links {
            let id = PointId::node_if(&ctx.name, link);
            let known = d
                .plan
                .points
                .iter_mut()
                .find(|p| p.ns == ctx.ns && p.ifname.as_deref() == Some(link.as_str()));
            match known {
                Some(p) => {
                    if p.id != id && !p.aliases.contains(&id) {
                        p.aliases.insert(0, id);
                    }
                }
                None => d.plan.points.push(ObsPoint {
                    id,
                    aliases: vec![],
                    ns: ctx.ns,
                    ifname: Some(link.clone()),
                    vlan: None,
                }),
            }
        }
    }
}

/// Plans the pods of `cni: plugins` (and the flannel variant, with
/// `flannel` giving the cluster's pod CIDR and node slices).
pub fn program(
    d: &mut Draft,
    r: &Resolved,
    nodes: &[NodeCtx],
    adds: &CniAdds,
    flannel: Option<(&CniCtx<'_>, bool)>,
) -> (Placement, CniOutput, CniRuntimePlan) {
    let topo = &r.topo;
    let mut rt = CniRuntimePlan::default();
    let mut out = match flannel {
        Some((ctx, vxlan)) => super::flannel::flanneld(d, ctx, vxlan),
        None => CniOutput::default(),
    };
    for (i, (n, ctx)) in topo.nodes.iter().zip(nodes).enumerate() {
        let own: Option<&CniPlugins> = n.cni_plugins.as_ref().or(topo.cluster.cni_plugins.as_ref());
        let bin_dir = own.map(|p| p.bin_dir.clone()).unwrap_or_default();
        let chain = match flannel {
            Some((f, vxlan)) => {
                let env = super::flannel::subnet_env(f.pod_cidr, f.slices[i], vxlan);
                ChainPlan {
                    node: n.name.clone(),
                    node_ns: ctx.ns,
                    bin_dir,
                    conflist: flannel_delegate(f.pod_cidr, f.slices[i], vxlan),
                    source: "flannel (delegate derived from subnet.env)".into(),
                    subnet_env: Some(env),
                }
            }
            None => ChainPlan {
                node: n.name.clone(),
                node_ns: ctx.ns,
                bin_dir,
                conflist: own.and_then(|p| p.conflist.clone()).unwrap_or(Value::Null),
                source: own.map(|p| p.source.clone()).unwrap_or_default(),
                subnet_env: None,
            },
        };
        rt.chains.push(chain);
    }
    let mut placement = Placement::default();
    for (i, p) in r.pods.iter().enumerate() {
        let (ns, name) = (p.metadata.ns().to_string(), p.metadata.name.clone());
        let who = format!("{ns}/{name}");
        let node_name = p.spec.node_name.clone();
        let Some(node) = node_name
            .as_ref()
            .and_then(|n| topo.nodes.iter().position(|x| &x.name == n))
        else {
            let reason = match &node_name {
                Some(n) => format!("node {n} is not in nodes"),
                None => "spec.nodeName is not set".to_string(),
            };
            placement.pending.push(PendingPod {
                pod: who,
                node: node_name,
                reason,
            });
            continue;
        };
        let mut placed = PlacedPod {
            pod: i,
            ns: ns.clone(),
            name: name.clone(),
            node,
            ip: None,
        };
        if p.spec.host_network {
            placement.placed.push(placed);
            continue;
        }
        let key = placed.key();
        let pod_ns_idx = pod_ns(d, &placed);
        rt.pods.push(CniPodPlan {
            key: key.to_string(),
            namespace: ns.clone(),
            name: name.clone(),
            uid: crate::plan::names::sha1_hex(&key.to_string())[..32].to_string(),
            chain: node,
            ns: pod_ns_idx,
            runtime: runtime_args(p),
            ip_arg: p.status.pod_ip,
        });
        let pending = |reason: String| PendingPod {
            pod: who.clone(),
            node: node_name.clone(),
            reason,
        };
        match adds.pods.get(&key.to_string()) {
            Some(PodAdd::Added { ip, host_if }) => {
                placed.ip = Some(*ip);
                out.pods.push(PodWire {
                    key,
                    ns: pod_ns_idx,
                    host_veth: host_if.clone().unwrap_or_default(),
                });
                placement.placed.push(placed);
            }
            Some(PodAdd::Failed { error }) => placement
                .pending
                .push(pending(format!("{CNI_ADD_FAILED}{error}"))),
            None => placement
                .pending
                .push(pending("waiting for CNI ADD".into())),
        }
    }
    (placement, out, rt)
}

/// Capability args as kubelet/containerd fill them: `portMappings` from
/// each container port's `hostPort`; `bandwidth` from the
/// `kubernetes.io/{ingress,egress}-bandwidth` annotations (rate in bit/s,
/// burst unlimited, as containerd's CRI plugin passes it).
pub fn runtime_args(p: &Pod) -> Map<String, Value> {
    let mut m = Map::new();
    let maps: Vec<Value> = p
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|port| {
            let host = port.host_port?;
            let proto = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            Some(json!({"hostPort": host, "containerPort": port.container_port, "protocol": proto, "hostIP": ""}))
        })
        .collect();
    if !maps.is_empty() {
        m.insert("portMappings".into(), Value::Array(maps));
    }
    let rate = |k: &str| {
        p.metadata
            .annotations
            .get(k)
            .and_then(|v| parse_quantity(v))
    };
    let (ingress, egress) = (
        rate("kubernetes.io/ingress-bandwidth"),
        rate("kubernetes.io/egress-bandwidth"),
    );
    if ingress.is_some() || egress.is_some() {
        let mut bw = Map::new();
        if let Some(r) = ingress {
            bw.insert("ingressRate".into(), json!(r));
            bw.insert("ingressBurst".into(), json!(u32::MAX));
        }
        if let Some(r) = egress {
            bw.insert("egressRate".into(), json!(r));
            bw.insert("egressBurst".into(), json!(u32::MAX));
        }
        m.insert("bandwidth".into(), Value::Object(bw));
    }
    m
}

/// A Kubernetes quantity like `10M`, `1Gi`, `500k` as a number.
fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// kube-flannel's `10-flannel.conflist` (flannel delegating with
/// `hairpinMode` and `isDefaultGateway`, then portmap) after the flannel
/// plugin's delegation step (flannel-io/cni-plugin `doCmdAdd`): type
/// bridge, `ipMasq: !FLANNEL_IPMASQ`, `mtu: FLANNEL_MTU`, `isGateway`,
/// host-local over FLANNEL_SUBNET with a route to FLANNEL_NETWORK.
pub fn flannel_delegate(pod_cidr: Ipv4Net, slice: Ipv4Net, vxlan: bool) -> Value {
    let mtu = if vxlan {
        super::flannel::VXLAN_MTU
    } else {
        1500
    };
    json!({
        "cniVersion": "1.0.0",
        "name": "cbr0",
        "plugins": [
            {
                "type": "bridge",
                "bridge": super::flannel::BRIDGE,
                "hairpinMode": true,
                "isDefaultGateway": true,
                "isGateway": true,
                "ipMasq": false,
                "mtu": mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": slice.to_string()}]],
                    "routes": [{"dst": pod_cidr.to_string()}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("x"), None);
    }

    #[test]
    fn flannel_delegate_is_a_valid_conflist_with_the_nodes_subnet() {
        let v = flannel_delegate(
            "172.16.0.0/16".parse().unwrap(),
            "172.16.1.0/24".parse().unwrap(),
            true,
        );
        let c = crate::cni::Conflist::from_value(&v).unwrap();
        assert_eq!(c.plugin_type(0), "bridge");
        assert_eq!(
            c.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "172.16.1.0/24"
        );
        assert_eq!(c.plugins[0]["mtu"], 1450);
    }
}
