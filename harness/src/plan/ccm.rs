//! The cloud controller (CCM): a CLB per LoadBalancer Service, or the
//! existing CLB named by the `…-loadbalancer-id` annotation with the
//! Service's listeners added to its own. Backends by
//! `service.beta.kubernetes.io/backend-type`: `eni` (pod IP + target port;
//! the default for terway-trunking and terway-eni) or `ecs` (the NodePort of
//! every node, only nodes with endpoints for Local).

use super::cloud::NodeCtx;
use super::proxy::services::BACKEND_TYPE_ANNOTATION;
use super::types::*;
use super::PlanError;
use crate::topology::k8s::Service;
use crate::topology::model::{Cni, Topology};
use crate::topology::PointId;

/// ACK's CCM: only nodes carrying every one of these labels (`k=v,k2=v2`)
/// become `ecs` backends.
pub const BACKEND_LABEL_ANNOTATION: &str =
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-backend-label";

/// First ct mark / routing table handed to SLBs on the VPC router.
pub const SLB_MARK_BASE: u32 = 0x100;
pub const SLB_TABLE_BASE: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendType {
    Eni,
    Ecs,
}

/// The mode's own choice (its `CniMode::slb_backend`).
pub fn default_backend_type(cni: Cni) -> BackendType {
    super::agent::slb_backend(cni)
}

/// Every CLB of the lab: the topology's own, then one per LoadBalancer
/// Service that reuses none.
pub fn plan_slbs(
    topo: &Topology,
    k8s_services: &[Service],
    services: &[ServicePlan],
    nodes: &[NodeCtx],
    endpoints: &[Endpoint],
) -> Result<Vec<SlbPlan>, PlanError> {
    let mut slbs: Vec<SlbPlan> = Vec::new();
    for lb in &topo.load_balancers {
        let mut listeners = Vec::new();
        for l in &lb.listeners {
            let mut backends = Vec::new();
            for b in &l.backends {
                let who = match (&b.external, &b.node, &b.pod) {
                    (Some(x), _, _) => PointId::external(x).to_string(),
                    (_, Some(n), _) => PointId::node(n).to_string(),
                    (_, _, Some(p)) => {
                        PointId::parse_pod(p).map_or_else(|_| p.clone(), |k| k.to_string())
                    }
                    _ => continue,
                };
                let ip = endpoints
                    .iter()
                    .find(|e| e.id == who)
                    .map(|e| e.ip)
                    .ok_or_else(|| PlanError::Service {
                        service: format!("load balancer {}", lb.id),
                        reason: format!(
                            "listener {}: backend {who} has no address in this lab",
                            l.port
                        ),
                    })?;
                backends.push(SlbBackend {
                    ip,
                    port: b.port,
                    who,
                });
            }
            listeners.push(SlbListener {
                port: l.port,
                proto: l.proto,
                service: None,
                backends,
            });
        }
        slbs.push(new_slb(slbs.len(), &lb.id, lb.ip, listeners));
    }
    for s in services
        .iter()
        .filter(|s| s.type_ == ServiceType::LoadBalancer)
    {
        let (Some(ip), Some(id)) = (s.lb_ip, &s.lb_id) else {
            continue;
        };
        let k8s = k8s_services
            .iter()
            .find(|k| k.metadata.ns() == s.ns && k.metadata.name == s.name);
        let backend_type = match k8s
            .and_then(|k| k.metadata.annotations.get(BACKEND_TYPE_ANNOTATION))
            .map(|v| v.as_str())
        {
            Some("eni") => BackendType::Eni,
            Some("ecs") => BackendType::Ecs,
            _ => default_backend_type(topo.cluster.cni),
        };
        let labelled = backend_nodes(topo, k8s, nodes);
        let listeners = service_listeners(s, backend_type, &labelled);
        match slbs.iter_mut().find(|l| &l.id == id) {
            Some(existing) => {
                for l in listeners {
                    if existing
                        .listeners
                        .iter()
                        .any(|e| e.port == l.port && e.proto == l.proto)
                    {
                        return Err(PlanError::Service {
                            service: s.key(),
                            reason: format!(
                                "load balancer {id} already has a listener on port {}",
                                l.port
                            ),
                        });
                    }
                    existing.listeners.push(l);
                }
            }
            None => {
                let k = slbs.len();
                slbs.push(new_slb(k, id, ip, listeners));
            }
        }
    }
    Ok(slbs)
}

/// The nodes the CCM may attach: those matching the backend-label
/// annotation, every node without one.
fn backend_nodes(topo: &Topology, k8s: Option<&Service>, nodes: &[NodeCtx]) -> Vec<NodeCtx> {
    let want: Vec<(&str, &str)> = k8s
        .and_then(|k| k.metadata.annotations.get(BACKEND_LABEL_ANNOTATION))
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.trim().split_once('='))
                .collect()
        })
        .unwrap_or_default();
    nodes
        .iter()
        .filter(|n| {
            let labels = topo
                .nodes
                .iter()
                .find(|t| t.name == n.name)
                .map(|t| &t.labels);
            want.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(*k)).map(|x| x.as_str()) == Some(*v))
        })
        .cloned()
        .collect()
}

fn new_slb(k: usize, id: &str, ip: std::net::Ipv4Addr, listeners: Vec<SlbListener>) -> SlbPlan {
    SlbPlan {
        id: id.into(),
        ip,
        vpc_link: format!("slb{k}"),
        mark: SLB_MARK_BASE + k as u32,
        table: SLB_TABLE_BASE + k as u32,
        listeners,
    }
}

/// One listener per Service port.
pub fn service_listeners(
    s: &ServicePlan,
    backend: BackendType,
    nodes: &[NodeCtx],
) -> Vec<SlbListener> {
    s.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let backends = match backend {
                // The cloud controller attaches ready endpoints only.
                BackendType::Eni => s
                    .endpoints
                    .iter()
                    .filter(|e| e.ready)
                    .filter_map(|e| {
                        e.target_ports
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|port| SlbBackend {
                                ip: e.ip,
                                port,
                                who: e.pod.clone(),
                            })
                    })
                    .collect(),
                BackendType::Ecs => nodes
                    .iter()
                    .filter(|n| {
                        s.external_policy == TrafficPolicy::Cluster
                            || s.endpoints.iter().any(|e| e.ready && e.node == n.name)
                    })
                    .filter_map(|n| {
                        p.node_port.map(|np| SlbBackend {
                            ip: n.ip,
                            port: np,
                            who: PointId::node(&n.name).to_string(),
                        })
                    })
                    .collect(),
            };
            SlbListener {
                port: p.port,
                proto: p.protocol,
                service: Some(s.key()),
                backends,
            }
        })
        .collect()
}
