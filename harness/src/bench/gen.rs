//! Benchmark topologies, generated in memory as YAML (the same path a user's
//! file takes) and their expectations, generated as values (thousands of
//! all-pairs expectations would only time the YAML parser).

use crate::topology::PointId;
use std::fmt::Write;

use crate::topology::model::{Expectation, Verdict};

/// Namespace every benchmark pod lives in.
pub const POD_NAMESPACE: &str = "bench";
/// Port every benchmark pod serves.
pub const POD_PORT: u16 = 80;

/// How the scale case wires its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleCni {
    /// Pods on each node's cni0 bridge, VPC routes between nodes.
    Flannel,
    /// Trunk pods: one member ENI per pod behind each node's trunk ENI.
    TerwayTrunking,
}

impl ScaleCni {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleCni::Flannel => "flannel",
            ScaleCni::TerwayTrunking => "terway-trunking",
        }
    }
}

impl std::str::FromStr for ScaleCni {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flannel" => Ok(ScaleCni::Flannel),
            "terway-trunking" => Ok(ScaleCni::TerwayTrunking),
            other => Err(format!(
                "unknown scale CNI {other:?} (flannel | terway-trunking)"
            )),
        }
    }
}

/// `bench/p007`-style pod names, zero-padded so they sort.
pub fn pod_name(node: usize, pod: usize) -> String {
    format!("n{node:02}-p{pod:03}")
}

fn node_name(node: usize) -> String {
    format!("cn-hangzhou.10.0.4.{}", 20 + node)
}

/// A cluster of `nodes` nodes with `pods_per_node` pods each, every pod
/// serving TCP on `POD_PORT`.
/// `EniQuantity` of a generated trunk node (ecs.g7.xlarge's); its
/// `enis.total` adds one member ENI per pod.
pub const TRUNK_NODE_ENIS: u32 = 4;

pub fn cluster_yaml(name: &str, cni: ScaleCni, nodes: usize, pods_per_node: usize) -> String {
    let mut y = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(y, "name: {name}");
    let _ = writeln!(
        y,
        "cluster: {{kubernetes: \"1.26\", cni: {}, proxy: ipvs, service_cidr: 192.168.0.0/16, pod_cidr: 172.16.0.0/16, node_cidr_prefix: 24}}",
        cni.as_str()
    );
    y.push_str("vpc:\n  cidr: 10.0.0.0/8\n  vswitches:\n");
    y.push_str("    - {id: vsw-bench00node, zone: cn-hangzhou-h, cidr: 10.0.4.0/24}\n");
    if cni == ScaleCni::TerwayTrunking {
        y.push_str("    - {id: vsw-bench000pod, zone: cn-hangzhou-h, cidr: 10.1.0.0/16}\n");
    }
    y.push_str(
        "  security_groups:\n    - id: sg-bench000001\n      rules:\n        \
         - {direction: ingress, action: accept, cidr: 10.0.0.0/8}\n        \
         - {direction: ingress, action: accept, cidr: 172.16.0.0/16}\n",
    );
    y.push_str("nodes:\n");
    for n in 0..nodes {
        let _ = write!(
            y,
            "  - {{name: {}, ip: 10.0.4.{}, vswitch: vsw-bench00node, security_groups: [sg-bench000001]",
            node_name(n),
            20 + n
        );
        if cni == ScaleCni::TerwayTrunking {
            // ecs.g7.xlarge's slots (eth0 and the trunk), with a member-ENI
            // quota (EniTotalQuantity − EniQuantity) of exactly the pods per
            // node: a density no real instance reaches (ecs.r6.8xlarge: 32),
            // measured for the datapath, never for the cloud's limits.
            let _ = write!(
                y,
                ", enis: {{max: {TRUNK_NODE_ENIS}, ips_per_eni: 15, trunk: true, total: {}}}",
                TRUNK_NODE_ENIS as usize + pods_per_node
            );
        }
        y.push_str("}\n");
    }
    y.push_str("kubernetes:\n");
    if cni == ScaleCni::TerwayTrunking {
        y.push_str(
            "  - apiVersion: network.alibabacloud.com/v1beta1\n    kind: PodNetworking\n    \
             metadata: {name: bench}\n    spec:\n      allocationType: {type: Elastic}\n      \
             selector: {podSelector: {matchLabels: {app: bench}}}\n      \
             vSwitchOptions: [vsw-bench000pod]\n      securityGroupIDs: [sg-bench000001]\n",
        );
    }
    for n in 0..nodes {
        for p in 0..pods_per_node {
            let _ = writeln!(
                y,
                "  - {{apiVersion: v1, kind: Pod, metadata: {{name: {}, namespace: {POD_NAMESPACE}, labels: {{app: bench}}}}, \
                 spec: {{nodeName: {}, containers: [{{name: echo, ports: [{{containerPort: {POD_PORT}}}]}}]}}}}",
                pod_name(n, p),
                node_name(n)
            );
        }
    }
    y
}

/// The flat case: one node, `n` pods on its bridge.
pub fn flat_yaml(n: usize) -> String {
    cluster_yaml(&format!("bench-flat-{n}"), ScaleCni::Flannel, 1, n)
}

fn tcp_expect(from: &str, to: &str) -> Expectation {
    Expectation {
        // Pod to pod on one bridge: no NAT, the server sees the client.
        source: Some("client".into()),
        ..Expectation::new(
            format!("{from} -> {to}"),
            PointId::pod(POD_NAMESPACE, from).to_string(),
            format!("{}:{POD_PORT}", PointId::pod(POD_NAMESPACE, to)),
            Verdict::Connected,
        )
    }
}

/// Every ordered pair of distinct pods: n·(n−1) expectations.
pub fn all_pairs(pods: &[String]) -> Vec<Expectation> {
    let mut v = Vec::with_capacity(pods.len() * pods.len().saturating_sub(1));
    for a in pods {
        for b in pods {
            if a != b {
                v.push(tcp_expect(a, b));
            }
        }
    }
    v
}

/// `count` random ordered pairs of distinct pods, reproducible from `seed`.
pub fn random_pairs(pods: &[String], count: usize, seed: u64) -> Vec<Expectation> {
    if pods.len() < 2 {
        return Vec::new();
    }
    // xorshift64*: enough randomness to spread probes over nodes.
    let mut s = seed.max(1);
    let mut next = |bound: usize| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound as u64) as usize
    };
    (0..count)
        .map(|_| {
            let a = next(pods.len());
            let b = (a + 1 + next(pods.len() - 1)) % pods.len();
            tcp_expect(&pods[a], &pods[b])
        })
        .collect()
}

/// Pod names of a generated cluster.
pub fn pod_names(nodes: usize, pods_per_node: usize) -> Vec<String> {
    (0..nodes)
        .flat_map(|n| (0..pods_per_node).map(move |p| pod_name(n, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_topology_loads_and_validates() {
        let loaded = crate::topology::load_str(&flat_yaml(3), "flat").unwrap();
        assert_eq!(loaded.resolved.pods.len(), 3);
    }

    #[test]
    fn scale_topology_loads_with_every_pod() {
        let loaded =
            crate::topology::load_str(&cluster_yaml("s", ScaleCni::Flannel, 4, 5), "s").unwrap();
        assert_eq!(loaded.resolved.pods.len(), 20);
        assert_eq!(loaded.resolved.topo.nodes.len(), 4);
    }

    #[test]
    fn all_pairs_has_every_ordered_pair_once() {
        let pods = pod_names(1, 4);
        let e = all_pairs(&pods);
        assert_eq!(e.len(), 12);
        let mut names: Vec<_> = e.iter().map(|x| x.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 12);
        assert!(e.iter().all(|x| !x.to.starts_with(&format!("{}:", x.from))));
    }

    #[test]
    fn random_pairs_never_probe_self_and_are_reproducible() {
        let pods = pod_names(3, 4);
        let a = random_pairs(&pods, 200, 7);
        let b = random_pairs(&pods, 200, 7);
        assert_eq!(a.len(), 200);
        assert_eq!(
            a.iter().map(|e| &e.name).collect::<Vec<_>>(),
            b.iter().map(|e| &e.name).collect::<Vec<_>>()
        );
        assert!(a.iter().all(|e| e.to != format!("{}:{POD_PORT}", e.from)));
    }
}
