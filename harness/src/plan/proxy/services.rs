//! Services as the API server and the endpoints controller make them: a
//! cluster IP (given or allocated), node ports (given or allocated), the
//! load balancer address, and endpoints from the pods the selector matches.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::plan::cloud::NodeCtx;
use crate::plan::ipam::Placement;
use crate::plan::names::sha1_hex;
use crate::plan::types::*;
use crate::plan::PlanError;
use crate::topology::k8s::{EndpointSlice, Pod, Service};
use crate::topology::model::{LoadBalancer, Proto};
use crate::topology::validate::LB_ID_ANNOTATION;
use crate::topology::PointId;

pub const LB_HOSTNAME_ANNOTATION: &str =
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-hostname";
pub const BACKEND_TYPE_ANNOTATION: &str = "service.beta.kubernetes.io/backend-type";
/// ACK's default service CIDR, used when `cluster.service_cidr` is absent.
pub const DEFAULT_SERVICE_CIDR: &str = "172.21.0.0/20";
pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;
/// Where the cloud controller takes public SLB addresses from when the
/// Service names none (a documentation range).
pub const LB_POOL: &str = "198.51.100.0/24";

/// Turns every Service into a `ServicePlan`. Deterministic: allocations
/// derive from sha1 of the Service's key, collisions probe forward.
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    services: &[Service],
    pods: &[Pod],
    slices: &[EndpointSlice],
    placement: &Placement,
    nodes: &[NodeCtx],
    service_cidr: Ipv4Net,
    load_balancers: &[LoadBalancer],
    notes: &mut Vec<String>,
) -> Result<Vec<ServicePlan>, PlanError> {
    let mut used_ips: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut used_ports: BTreeSet<u16> = BTreeSet::new();
    let mut used_lb: BTreeSet<Ipv4Addr> = load_balancers.iter().map(|l| l.ip).collect();
    for s in services {
        if let Some(ip) = s.spec.cluster_ip.as_deref().and_then(|c| c.parse().ok()) {
            used_ips.insert(ip);
        }
        used_ports.extend(s.spec.ports.iter().filter_map(|p| p.node_port));
        used_ports.extend(s.spec.health_check_node_port);
        used_lb.extend(s.status.load_balancer.ingress.iter().filter_map(|i| i.ip));
    }
    let mut out = Vec::new();
    for s in services {
        let key = format!("{}/{}", s.metadata.ns(), s.metadata.name);
        let type_ = match s.spec.type_.as_deref().unwrap_or("ClusterIP") {
            "ClusterIP" => ServiceType::ClusterIP,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            other => {
                notes.push(format!(
                    "service {key}: type {other} is not modelled, skipped"
                ));
                continue;
            }
        };
        let cluster_ip = match s.spec.cluster_ip.as_deref() {
            Some("None") => None,
            Some(ip) if !ip.is_empty() => Some(ip.parse().map_err(|_| PlanError::Service {
                service: key.clone(),
                reason: format!("spec.clusterIP {ip:?} is not an IPv4 address"),
            })?),
            _ => Some(
                allocate_ip(&key, service_cidr, &mut used_ips).ok_or_else(|| {
                    PlanError::Service {
                        service: key.clone(),
                        reason: format!("no free cluster IP left in {service_cidr}"),
                    }
                })?,
            ),
        };
        let mut ports = Vec::new();
        for (i, p) in s.spec.ports.iter().enumerate() {
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "UDP" => Proto::Udp,
                _ => Proto::Tcp,
            };
            let node_port = match (type_, p.node_port) {
                (ServiceType::ClusterIP, _) => None,
                (_, Some(np)) => Some(np),
                (_, None) => Some(
                    allocate_node_port(&format!("{key}/{i}"), &mut used_ports).ok_or_else(
                        || PlanError::Service {
                            service: key.clone(),
                            reason: "no free node port left in 30000-32767".into(),
                        },
                    )?,
                ),
            };
            ports.push(ServicePortPlan {
                name: p.name.clone(),
                port: p.port,
                target: target_text(p.target_port.as_ref()).unwrap_or_else(|| p.port.to_string()),
                node_port,
                protocol,
            });
        }
        let annotations = &s.metadata.annotations;
        let lb_hostname = annotations.contains_key(LB_HOSTNAME_ANNOTATION);
        let (lb_ip, lb_id) = if type_ == ServiceType::LoadBalancer {
            let reused = annotations
                .get(LB_ID_ANNOTATION)
                .and_then(|id| load_balancers.iter().find(|l| &l.id == id));
            let status_ip = s.status.load_balancer.ingress.iter().find_map(|i| i.ip);
            match (reused, status_ip) {
                (Some(lb), _) => (Some(lb.ip), Some(lb.id.clone())),
                (None, Some(ip)) => (Some(ip), Some(lb_id_for(&key))),
                (None, None) => {
                    let ip =
                        allocate_lb_ip(&key, &mut used_lb).ok_or_else(|| PlanError::Service {
                            service: key.clone(),
                            reason: format!("no free load balancer address left in {LB_POOL}"),
                        })?;
                    (Some(ip), Some(lb_id_for(&key)))
                }
            }
        } else {
            (None, None)
        };
        let policy = |p: &Option<String>| match p.as_deref() {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        };
        // The API server allocates it for a Local LoadBalancer (from the
        // NodePort range) when the Service names none.
        let health_check_node_port = match (type_, policy(&s.spec.external_traffic_policy)) {
            (ServiceType::LoadBalancer, TrafficPolicy::Local) => {
                Some(match s.spec.health_check_node_port {
                    Some(p) => p,
                    None => allocate_node_port(&format!("{key}/health"), &mut used_ports)
                        .ok_or_else(|| PlanError::Service {
                            service: key.clone(),
                            reason: "no free node port left in 30000-32767 for healthCheckNodePort"
                                .into(),
                        })?,
                })
            }
            _ => None,
        };
        let own: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|es| {
                es.service()
                    .is_some_and(|(ns, name)| ns == s.metadata.ns() && name == s.metadata.name)
            })
            .collect();
        let endpoints = if own.is_empty() {
            endpoints_of(s, &ports, pods, placement, nodes)
        } else {
            notes.push(format!(
                "service {key}: endpoints taken from {} pasted EndpointSlice(s) as they are, not from its selector",
                own.len()
            ));
            endpoints_of_slices(&own, &ports, placement, nodes)
        };
        if s.spec.selector.is_none() && own.is_empty() {
            notes.push(format!(
                "service {key}: no selector; manual Endpoints are not modelled, it has none"
            ));
        }
        out.push(ServicePlan {
            ns: s.metadata.ns().into(),
            name: s.metadata.name.clone(),
            type_,
            cluster_ip,
            ports,
            external_ips: s.spec.external_ips.clone(),
            lb_ip,
            lb_id,
            lb_hostname,
            lb_ip_mode_proxy: s
                .status
                .load_balancer
                .ingress
                .iter()
                .any(|i| i.ip.is_some() && i.ip == lb_ip && i.ip_mode.as_deref() == Some("Proxy")),
            external_policy: policy(&s.spec.external_traffic_policy),
            internal_policy: policy(&s.spec.internal_traffic_policy),
            affinity_timeout: s.spec.affinity_timeout(),
            health_check_node_port,
            source_ranges: s
                .source_ranges()
                .iter()
                .filter_map(|c| c.trim().parse().ok())
                .collect(),
            endpoints,
        });
    }
    Ok(out)
}

/// `lb-` + 10 hex digits of sha1 of the Service key.
pub fn lb_id_for(key: &str) -> String {
    format!("lb-{}", &sha1_hex(&format!("lb/{key}"))[..10])
}

fn target_text(v: Option<&serde_yaml_ng::Value>) -> Option<String> {
    match v? {
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn hash_u32(input: &str) -> u32 {
    let h = sha1_hex(input);
    u32::from_str_radix(&h[..8], 16).unwrap_or(0)
}

/// A deterministic address of `cidr` for `key`, skipping the network
/// address, `.1` (the `kubernetes` Service) and the broadcast address.
pub fn allocate_ip(key: &str, cidr: Ipv4Net, used: &mut BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let size = 1u64 << (32 - u32::from(cidr.prefix_len()));
    if size < 8 {
        return None;
    }
    let usable = size - 3;
    let start = u64::from(hash_u32(&format!("svc/{key}"))) % usable;
    let base = u32::from(cidr.network());
    (0..usable)
        .map(|i| Ipv4Addr::from(base + 2 + ((start + i) % usable) as u32))
        .find(|ip| used.insert(*ip))
}

/// A deterministic node port in 30000–32767 for `key` (`<ns>/<name>/<port index>`).
pub fn allocate_node_port(key: &str, used: &mut BTreeSet<u16>) -> Option<u16> {
    let span = u32::from(NODE_PORT_MAX - NODE_PORT_MIN) + 1;
    let start = hash_u32(&format!("nodeport/{key}")) % span;
    (0..span)
        .map(|i| NODE_PORT_MIN + ((start + i) % span) as u16)
        .find(|p| used.insert(*p))
}

fn allocate_lb_ip(key: &str, used: &mut BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let pool: Ipv4Net = LB_POOL.parse().ok()?;
    let base = u32::from(pool.network());
    let start = hash_u32(&format!("lb/{key}")) % 250;
    (0..250)
        .map(|i| Ipv4Addr::from(base + 2 + (start + i) % 250))
        .find(|ip| used.insert(*ip))
}

/// Pods of the Service's namespace whose labels carry the selector, with the
/// conditions the EndpointSlice controller gives them
/// (pkg/controller/util/endpointslice `podToEndpoint`): serving = Ready,
/// terminating = deletionTimestamp, ready = serving && !terminating.
/// Succeeded and Failed pods are left out.
fn endpoints_of(
    s: &Service,
    ports: &[ServicePortPlan],
    pods: &[Pod],
    placement: &Placement,
    nodes: &[NodeCtx],
) -> Vec<SvcEndpoint> {
    let Some(selector) = &s.spec.selector else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in &placement.placed {
        let Some(pod) = pods.get(p.pod) else { continue };
        if p.ns != s.metadata.ns() || !matches(selector, &pod.metadata.labels) || pod.is_finished()
        {
            continue;
        }
        let Some(node) = nodes.get(p.node) else {
            continue;
        };
        let target_ports = ports
            .iter()
            .map(|sp| target_port(pod, &sp.target))
            .collect();
        out.push(SvcEndpoint {
            pod: p.key().to_string(),
            ip: p.ip.unwrap_or(node.ip),
            node: node.name.clone(),
            host_network: p.ip.is_none(),
            target_ports,
            ready: pod.is_ready() && !pod.is_terminating(),
            serving: pod.is_ready(),
            terminating: pod.is_terminating(),
        });
    }
    out
}

/// Endpoints exactly as pasted EndpointSlices list them: addresses, ports
/// by name, conditions (nil ready = true, nil serving = ready, nil
/// terminating = false). An address no pod has any more stays: probes to
/// it find nobody, as with a stale slice in a real cluster.
fn endpoints_of_slices(
    slices: &[&EndpointSlice],
    ports: &[ServicePortPlan],
    placement: &Placement,
    nodes: &[NodeCtx],
) -> Vec<SvcEndpoint> {
    let mut out = Vec::new();
    for es in slices {
        let target_ports: Vec<Option<u16>> = ports
            .iter()
            .map(|sp| {
                es.ports
                    .iter()
                    .find(|p| p.name == sp.name || (es.ports.len() == 1 && ports.len() == 1))
                    .and_then(|p| p.port)
            })
            .collect();
        for ep in &es.endpoints {
            let ready = ep.conditions.ready.unwrap_or(true);
            let serving = ep.conditions.serving.unwrap_or(ready);
            let terminating = ep.conditions.terminating.unwrap_or(false);
            for ip in &ep.addresses {
                let placed = placement.placed.iter().find(|p| p.ip == Some(*ip));
                let pod = match (&ep.target_ref, placed) {
                    (Some(r), _)
                        if r.kind.as_deref().unwrap_or("Pod") == "Pod" && r.name.is_some() =>
                    {
                        PointId::pod(
                            r.namespace.as_deref().unwrap_or(es.metadata.ns()),
                            r.name.as_deref().unwrap_or_default(),
                        )
                        .to_string()
                    }
                    (_, Some(p)) => p.key().to_string(),
                    _ => format!("ip/{ip}"),
                };
                let node = ep
                    .node_name
                    .clone()
                    .or_else(|| {
                        placed
                            .and_then(|p| nodes.get(p.node))
                            .map(|n| n.name.clone())
                    })
                    .or_else(|| nodes.iter().find(|n| n.ip == *ip).map(|n| n.name.clone()))
                    .unwrap_or_default();
                out.push(SvcEndpoint {
                    pod,
                    ip: *ip,
                    host_network: nodes.iter().any(|n| n.ip == *ip),
                    node,
                    target_ports: target_ports.clone(),
                    ready,
                    serving,
                    terminating,
                });
            }
        }
    }
    out
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A number, or the pod's container port of that name.
fn target_port(pod: &Pod, target: &str) -> Option<u16> {
    if let Ok(n) = target.parse() {
        return Some(n);
    }
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .find(|cp| cp.name.as_deref() == Some(target))
        .map(|cp| cp.container_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_deterministic_and_unique() {
        let cidr: Ipv4Net = "172.21.0.0/20".parse().unwrap();
        let mut a = BTreeSet::new();
        let mut b = BTreeSet::new();
        let x1 = allocate_ip("default/web", cidr, &mut a).unwrap();
        let x2 = allocate_ip("default/web", cidr, &mut b).unwrap();
        assert_eq!(x1, x2);
        assert!(cidr.contains(&x1) && x1 != Ipv4Addr::new(172, 21, 0, 1));
        let again = allocate_ip("default/web", cidr, &mut a).unwrap();
        assert_ne!(again, x1, "a taken address is never handed out twice");
        let mut ports = BTreeSet::new();
        let p1 = allocate_node_port("default/web/0", &mut ports).unwrap();
        assert!((NODE_PORT_MIN..=NODE_PORT_MAX).contains(&p1));
        assert_eq!(
            p1,
            allocate_node_port("default/web/0", &mut BTreeSet::new()).unwrap()
        );
        assert_ne!(p1, allocate_node_port("default/web/0", &mut ports).unwrap());
    }

    #[test]
    fn tiny_service_cidr_has_no_room() {
        let cidr: Ipv4Net = "10.0.0.0/30".parse().unwrap();
        assert_eq!(allocate_ip("a/b", cidr, &mut BTreeSet::new()), None);
    }
}
