//! Which probes a topology can form for the connectivity matrix: the
//! sources (an ECS outside the cluster, a node, a pod) and, per source, one
//! target per column (pod IP, ClusterIP, NodePort, LoadBalancer; eTP Cluster
//! and Local; the backend on the source's node or on another). Everything is
//! picked from what the topology defines; nothing is added.

use crate::plan::{EndpointKind, LabPlan, NsKind, ServicePlan, ServiceType, TrafficPolicy};
use crate::topology::model::Proto;

/// A row: where probes start.
#[derive(Debug, Clone)]
pub struct Source {
    /// `ecs`, `node`, `pod`.
    pub role: &'static str,
    /// `external/<n>`, `node/<n>`, `pod/<ns>/<n>` (as in `expect: from`).
    pub id: String,
    /// The node whose "same node" the columns mean: the pod's node, the node
    /// itself, and for the ECS the node row's node (its NodePort is the one
    /// addressed).
    pub anchor: String,
    /// A word on how it was picked (shown under the table).
    pub note: String,
    /// Stand-ins of the same role, `(id, anchor)`, tried in order for a cell
    /// the row's own source cannot form (a pod on another node, another
    /// node's NodePort).
    pub others: Vec<(String, String)>,
}

impl Source {
    /// The cell in `col`: from this source if it can form it, else from the
    /// first stand-in that can (`from` then names it).
    pub fn cell(&self, plan: &LabPlan, col: Column) -> Cell {
        // An ECS is on no node: only a NodePort (which node's port it
        // addresses) splits by where the backend runs. The other targets get
        // one probe, in the "same node" column, to any backend.
        if self.role == "ecs" && !matches!(col.kind, Kind::NodePort(_)) {
            if !col.same_node {
                return Cell::Cannot(
                    "an ECS runs on no node: this target is one probe, in the \"same node\" column"
                        .into(),
                );
            }
            return cell(plan, &self.id, None, col);
        }
        let first = cell(plan, &self.id, Some(&self.anchor), col);
        if matches!(first, Cell::Probe { .. }) {
            return first;
        }
        self.others
            .iter()
            .map(|(id, anchor)| cell(plan, id, Some(anchor), col))
            .find(|c| matches!(c, Cell::Probe { .. }))
            .unwrap_or(first)
    }
}

/// What a column aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PodIp,
    ClusterIp,
    NodePort(TrafficPolicy),
    Lb(TrafficPolicy),
}

/// A column: kind of target and where its backend runs.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub kind: Kind,
    /// The backend runs on the row's anchor node.
    pub same_node: bool,
}

impl Column {
    pub fn all() -> Vec<Column> {
        let kinds = [
            Kind::PodIp,
            Kind::ClusterIp,
            Kind::NodePort(TrafficPolicy::Cluster),
            Kind::NodePort(TrafficPolicy::Local),
            Kind::Lb(TrafficPolicy::Cluster),
            Kind::Lb(TrafficPolicy::Local),
        ];
        kinds
            .iter()
            .flat_map(|&kind| [true, false].map(|same_node| Column { kind, same_node }))
            .collect()
    }

    /// Stable id used in JSON and saved matrices: `nodeport-local-same`.
    pub fn id(&self) -> String {
        let k = match self.kind {
            Kind::PodIp => "pod-ip".to_string(),
            Kind::ClusterIp => "cluster-ip".to_string(),
            Kind::NodePort(p) => format!("nodeport-{}", policy_word(p)),
            Kind::Lb(p) => format!("lb-{}", policy_word(p)),
        };
        format!("{k}-{}", if self.same_node { "same" } else { "other" })
    }

    pub fn label(&self) -> String {
        let k = match self.kind {
            Kind::PodIp => "pod IP".to_string(),
            Kind::ClusterIp => "ClusterIP".to_string(),
            Kind::NodePort(p) => format!("NodePort eTP {p:?}"),
            Kind::Lb(p) => format!("LB eTP {p:?}"),
        };
        format!(
            "{k}, {}",
            if self.same_node {
                "backend same node"
            } else {
                "backend other node"
            }
        )
    }
}

fn policy_word(p: TrafficPolicy) -> &'static str {
    match p {
        TrafficPolicy::Cluster => "cluster",
        TrafficPolicy::Local => "local",
    }
}

/// One cell's probe, or why the topology cannot form it.
#[derive(Debug, Clone)]
pub enum Cell {
    Probe {
        /// As in `expect: from`: the row's source or a stand-in of its role.
        from: String,
        /// The node "same node" refers to for this probe.
        anchor: String,
        /// As in `expect: to`.
        to: String,
        /// The pod or service it reaches (shown in the legend).
        via: String,
    },
    Cannot(String),
}

/// A pod is a server on `port`s: its echo servers.
fn pod_tcp_ports(plan: &LabPlan, pod: &impl std::fmt::Display) -> Vec<u16> {
    let pod = pod.to_string();
    let Some(ep) = plan.endpoint(&pod) else {
        return vec![];
    };
    plan.namespaces[ep.ns]
        .servers
        .iter()
        .filter(|s| s.identity == pod && s.tcp)
        .map(|s| s.port)
        .collect()
}

fn is_host_network(plan: &LabPlan, pod: &impl std::fmt::Display) -> bool {
    plan.endpoint(pod)
        .is_some_and(|e| plan.namespaces[e.ns].kind == Some(NsKind::Node))
}

fn ready_endpoints(s: &ServicePlan) -> impl Iterator<Item = &crate::plan::SvcEndpoint> {
    s.endpoints.iter().filter(|e| e.ready)
}

fn tcp_port(s: &ServicePlan) -> Option<&crate::plan::ServicePortPlan> {
    s.ports.iter().find(|p| p.protocol == Proto::Tcp)
}

/// The cell for `source` (anchored on `anchor`) in `col`.
/// `anchor: None`: the backend may run anywhere.
fn cell(plan: &LabPlan, source: &str, anchor: Option<&str>, col: Column) -> Cell {
    let where_ = match anchor {
        None => "anywhere".to_string(),
        Some(a) if col.same_node => format!("on {a}"),
        Some(a) => format!("off {a}"),
    };
    let on_side = |node: &str| anchor.is_none_or(|a| (node == a) == col.same_node);
    let anchor = anchor.unwrap_or("");
    match col.kind {
        Kind::PodIp => {
            let pod = plan.endpoints.iter().find(|e| {
                e.kind == EndpointKind::Pod
                    && e.id != source
                    && !is_host_network(plan, &e.id)
                    && e.node.as_deref().is_some_and(on_side)
                    && !pod_tcp_ports(plan, &e.id).is_empty()
            });
            match pod {
                Some(p) => {
                    let port = pod_tcp_ports(plan, &p.id)[0];
                    Cell::Probe {
                        from: source.to_string(),
                        anchor: anchor.to_string(),
                        to: format!("{}:{port}", p.id),
                        via: p.id.to_string(),
                    }
                }
                None => Cell::Cannot(format!(
                    "no pod {where_} serving a TCP containerPort (other than the source)"
                )),
            }
        }
        kind => {
            let (type_ok, policy, what): (fn(&ServicePlan) -> bool, _, _) = match kind {
                Kind::ClusterIp => (
                    |s| s.cluster_ip.is_some(),
                    None,
                    "Service with a ClusterIP".to_string(),
                ),
                Kind::NodePort(p) => (
                    |s| tcp_port(s).is_some_and(|p| p.node_port.is_some()),
                    Some(p),
                    format!("Service with a node port and externalTrafficPolicy {p:?}"),
                ),
                Kind::Lb(p) => (
                    |s| s.type_ == ServiceType::LoadBalancer && s.lb_ip.is_some(),
                    Some(p),
                    format!("LoadBalancer Service with externalTrafficPolicy {p:?}"),
                ),
                Kind::PodIp => unreachable!("handled above"),
            };
            // The plainest service of the kind first: a ClusterIP column
            // prefers type ClusterIP, a NodePort column type NodePort.
            let rank = |s: &ServicePlan| match (kind, s.type_) {
                (Kind::ClusterIp, ServiceType::ClusterIP) => 0,
                (Kind::NodePort(_), ServiceType::NodePort) => 0,
                _ => 1,
            };
            let mut candidates: Vec<&ServicePlan> = plan
                .services
                .iter()
                .filter(|s| type_ok(s) && tcp_port(s).is_some())
                .filter(|s| policy.is_none_or(|p| s.external_policy == p))
                .collect();
            if candidates.is_empty() {
                return Cell::Cannot(format!("the topology has no {what}"));
            }
            candidates.retain(|s| {
                let eps: Vec<_> = ready_endpoints(s).collect();
                !eps.is_empty()
                    && eps.iter().all(|e| on_side(&e.node))
                    // A pod probing its own service is the hairpin case, not this cell.
                    && eps.iter().all(|e| e.pod != source)
            });
            candidates.sort_by_key(|s| rank(s));
            let Some(s) = candidates.first() else {
                return Cell::Cannot(format!(
                    "no {what} has all its ready endpoints {where_} (and none is the source)"
                ));
            };
            let port = tcp_port(s).map(|p| p.port).unwrap_or(0);
            let key = s.key();
            let to = match kind {
                Kind::ClusterIp => format!("service/{key}:{port}"),
                Kind::NodePort(_) => format!("nodeport/{anchor}/{key}"),
                _ => format!("service/{key}:{port}@lb"),
            };
            Cell::Probe {
                from: source.to_string(),
                anchor: anchor.to_string(),
                to,
                via: format!("service/{key}"),
            }
        }
    }
}

fn formed(plan: &LabPlan, source: &impl std::fmt::Display, anchor: &str) -> usize {
    let source = source.to_string();
    Column::all()
        .into_iter()
        .filter(|c| matches!(cell(plan, &source, Some(anchor), *c), Cell::Probe { .. }))
        .count()
}

fn is_endpoint_of_any_service(plan: &LabPlan, pod: &impl std::fmt::Display) -> bool {
    let pod = pod.to_string();
    plan.services
        .iter()
        .any(|s| s.endpoints.iter().any(|e| e.pod == pod))
}

/// The three rows, or why a row cannot be formed.
pub fn sources(plan: &LabPlan) -> (Vec<Source>, Vec<String>) {
    let mut rows = Vec::new();
    let mut missing = Vec::new();

    // The pod that forms the most cells; among equals one that serves no
    // Service (a client), then the first written.
    let pod = plan
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Pod && !is_host_network(plan, &e.id))
        .filter_map(|e| Some((e, e.node.clone()?)))
        .max_by_key(|(e, n)| {
            (
                formed(plan, &e.id, n),
                !is_endpoint_of_any_service(plan, &e.id),
                std::cmp::Reverse(plan.endpoints.iter().position(|x| x.id == e.id)),
            )
        });
    // Stand-in pods: clients (pods no Service selects) first.
    let mut own_pods: Vec<(String, String)> = plan
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Pod && !is_host_network(plan, &e.id))
        .filter_map(|e| Some((e.id.to_string(), e.node.clone()?)))
        .collect();
    own_pods.sort_by_key(|(id, _)| is_endpoint_of_any_service(plan, id));
    let nodes: Vec<_> = plan
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Node)
        .collect();
    let node = match &pod {
        Some((_, n)) => nodes.iter().find(|e| e.id == format!("node/{n}")).copied(),
        None => nodes.iter().copied().max_by_key(|e| {
            let id = e.id.to_string();
            let n = id.trim_start_matches("node/");
            (formed(plan, &e.id, n), std::cmp::Reverse(id.clone()))
        }),
    };
    let anchor = node.map(|n| n.id.to_string().trim_start_matches("node/").to_string());
    // An ECS in the VPC first; an internet host only when there is none.
    let externals: Vec<_> = plan
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::External)
        .collect();
    let in_vpc = |e: &&crate::plan::Endpoint| {
        let id = e.id.to_string();
        let name = id.trim_start_matches("external/");
        plan.enis.iter().any(|r| r.instance == name)
    };
    let ecs = externals
        .iter()
        .find(|e| in_vpc(e))
        .map(|e| (*e, "an ECS in the VPC, outside the cluster"))
        .or_else(|| {
            externals.first().map(|e| {
                (
                    *e,
                    "the topology has no ECS in the VPC: an internet host stands in",
                )
            })
        });
    let node_names: Vec<String> = nodes
        .iter()
        .map(|e| e.id.to_string().trim_start_matches("node/").to_string())
        .collect();
    let others_than = |id: &str, v: Vec<(String, String)>| -> Vec<(String, String)> {
        v.into_iter().filter(|(i, _)| i != id).collect()
    };
    match (ecs, &anchor) {
        (Some((e, note)), Some(a)) => rows.push(Source {
            role: "ecs",
            id: e.id.to_string(),
            anchor: a.clone(),
            note: format!("{note}; \"same node\": the backend runs on the node whose NodePort it addresses ({a}, or another node where only that forms the cell)"),
            others: node_names
                .iter()
                .filter(|n| *n != a)
                .map(|n| (e.id.to_string(), n.clone()))
                .collect(),
        }),
        (None, _) => missing.push("ECS outside the cluster: the topology has no externals".into()),
        (Some(_), None) => missing.push("ECS outside the cluster: the topology has no node".into()),
    }
    match (node, &anchor) {
        (Some(n), Some(a)) => rows.push(Source {
            role: "node",
            id: n.id.to_string(),
            anchor: a.clone(),
            note: "the pod row's node (or the node that forms the most cells)".into(),
            others: others_than(
                &n.id.to_string(),
                node_names
                    .iter()
                    .map(|m| (format!("node/{m}"), m.clone()))
                    .collect(),
            ),
        }),
        _ => missing.push("node: the topology has no node".into()),
    }
    match pod {
        Some((p, n)) => rows.push(Source {
            role: "pod",
            id: p.id.to_string(),
            anchor: n.clone(),
            note: "the running pod that forms the most cells".into(),
            others: others_than(&p.id.to_string(), own_pods.clone()),
        }),
        None => missing.push("pod: the topology has no running pod with its own network".into()),
    }

    (rows, missing)
}
